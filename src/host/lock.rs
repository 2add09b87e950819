//! The data folder's lock (`DATA/lock`, flock): two dat-mirror processes never open the same
//! hypercores. Released when dropped or when the process dies.

use std::path::Path;

use anyhow::Context;

use super::DataDir;

#[derive(Debug)]
pub struct DataLock {
    _file: std::fs::File,
}

impl DataLock {
    pub fn acquire(data_dir: &Path) -> anyhow::Result<DataLock> {
        use std::os::fd::AsRawFd;
        let data = DataDir::new(data_dir);
        data.create_private()?;
        let path = data.lock();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            anyhow::bail!(
                "another dat-mirror process is using {}; stop it first (or use another --data folder)",
                data_dir.display()
            );
        }
        Ok(DataLock { _file: file })
    }
}
