//! The laptop's paired mirrors as saved in `DATA/mirrors.json` (a state file with a
//! last-good copy, see [`crate::host::state`]), and what the CLI does with them when no
//! daemon runs.

use anyhow::Context;

use crate::host::state::StateFile;
use crate::host::{DataDir, DataLock};
use crate::model::keys::Key;
use crate::net::endpoint::PeerAddr;

fn file(data: &DataDir) -> StateFile {
    StateFile::new(
        data.mirrors(),
        "this laptop must pair with its mirrors again",
        true,
    )
}

pub fn load_mirrors(data: &DataDir) -> anyhow::Result<Vec<PeerAddr>> {
    let list: Vec<String> = file(data).load()?;
    list.iter()
        .map(|s| {
            s.parse::<PeerAddr>().map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e}; fix the entry (ID or ID@IP:PORT) or delete it",
                    data.mirrors().display()
                )
            })
        })
        .collect()
}

pub fn save_mirrors(data: &DataDir, mirrors: &[PeerAddr]) -> anyhow::Result<()> {
    let list: Vec<String> = mirrors.iter().map(|m| m.to_string()).collect();
    file(data).save(&list)?;
    Ok(())
}

/// `dat-mirror unpair ID` with no laptop daemon running (takes the folder's lock).
pub fn unpair_offline(data: &DataDir, id: Key) -> anyhow::Result<()> {
    let _lock = DataLock::acquire(data.root())?;
    let mut list = load_mirrors(data)?;
    let before = list.len();
    list.retain(|m| m.id != id);
    if list.len() == before {
        anyhow::bail!("{id} is not a paired mirror of this laptop (`dat-mirror peers` lists them)");
    }
    save_mirrors(data, &list).context("cannot save the mirror list")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_length_mirror_list_is_recovered_or_named() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let m = PeerAddr::new(Key([7; 32]), "127.0.0.1:9".parse().unwrap());
        save_mirrors(&data, std::slice::from_ref(&m)).unwrap();
        save_mirrors(&data, std::slice::from_ref(&m)).unwrap();
        // A power loss left it empty: the last-good copy is used.
        std::fs::write(data.mirrors(), b"").unwrap();
        assert_eq!(load_mirrors(&data).unwrap(), vec![m]);
        // Without one, the message names the file and what to do.
        std::fs::remove_file(data.root().join("mirrors.json.last-good")).unwrap();
        let e = load_mirrors(&data).unwrap_err().to_string();
        assert!(
            e.contains("mirrors.json is unreadable (it is empty)"),
            "{e}"
        );
        assert!(e.contains("fix or delete it"), "{e}");
    }
}
