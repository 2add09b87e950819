//! The control folder over the real laptop backend: every shell command of DESIGN.md's table
//! on a real FUSE mount, checked against the entries of the real command hypercore on disk.

mod common;

use std::ffi::CString;
use std::path::Path;

use common::*;
use dat_mirror::laptop::Laptop;
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;

async fn log(laptop: &Laptop) -> Vec<Command> {
    let core = laptop
        .inner
        .store
        .open_existing(&laptop.inner.key())
        .await
        .unwrap()
        .unwrap();
    let mut out = vec![];
    for i in 0..core.info().length {
        out.push(Command::decode(&core.get(i).await.unwrap().unwrap()).unwrap());
    }
    out
}

fn new_key() -> Key {
    Key(hypercore_engine::KeyPair::generate().unwrap().public_key)
}

fn getxattr(path: &Path, name: &str) -> Option<String> {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the stated length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| String::from_utf8_lossy(&buf[..len as usize]).into_owned())
}

/// Like `std::fs::write`, but reports the error of `close` (where the folder refuses a link
/// file without a link), which Rust's `File` drop ignores.
fn write_and_close(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    let fd = f.into_raw_fd();
    // SAFETY: we own fd (taken from the File) and close it exactly once.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_shell_command_of_the_table() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let laptop = start_laptop(&tmp.path().join("lap"), vec![]).await;
    let Some(mnt) = mount(
        &laptop,
        &tmp.path().join("mnt"),
        "every_shell_command_of_the_table",
    )
    .await
    else {
        return;
    };
    let m = mnt.path.clone();
    let (a, b, c, d) = (new_key(), new_key(), new_key(), new_key());

    let url_file = tmp.path().join("news.url");
    std::fs::write(
        &url_file,
        format!("[InternetShortcut]\nURL=dat://{}/\n", c.to_hex()),
    )
    .unwrap();
    let m2 = m.clone();
    let results = blocking(move || {
        let touch = |name: &str| {
            std::process::Command::new("touch")
                .arg(m2.join(name))
                .output()
                .unwrap()
        };
        let mut r = vec![];
        // touch <hex>, mkdir <z32>, echo link > alias, cp a .url file.
        r.push(touch(&a.to_hex()).status.success());
        r.push(std::fs::create_dir(m2.join(b.to_z32())).is_ok());
        std::fs::write(m2.join("blog"), format!("hyper://{}\n", d.to_z32())).unwrap();
        std::fs::copy(&url_file, m2.join("news.url")).unwrap();
        // touch on an existing entry appends nothing.
        r.push(touch(&a.to_hex()).status.success());
        r
    })
    .await;
    assert_eq!(results, vec![true, true, true]);
    assert_eq!(
        log(&laptop).await,
        vec![
            Command::Mirror {
                key: a,
                alias: None
            },
            Command::Mirror {
                key: b,
                alias: None
            },
            Command::Mirror {
                key: d,
                alias: Some("blog".into())
            },
            Command::Mirror {
                key: c,
                alias: Some("news".into())
            },
        ]
    );

    // Invalid names: EINVAL, nothing appended. Scratch names: work, never appended.
    let m2 = m.clone();
    blocking(move || {
        let err = std::fs::create_dir(m2.join("not-a-key")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        let out = std::process::Command::new("touch")
            .arg(m2.join("hello"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "touch of a non-key name must fail");
        let err = write_and_close(&m2.join("nolink"), b"no key in here").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        for scratch in [".blog.swp", "blog~", "4913", "._blog", ".hidden"] {
            std::fs::write(m2.join(scratch), b"editor data").unwrap();
            assert_eq!(std::fs::read(m2.join(scratch)).unwrap(), b"editor data");
            std::fs::remove_file(m2.join(scratch)).unwrap();
        }
    })
    .await;
    assert_eq!(log(&laptop).await.len(), 4);

    // ls: aliases and keys; cat: state; STATUS; xattrs; lookups by either spelling.
    let m2 = m.clone();
    blocking(move || {
        let mut names: Vec<String> = std::fs::read_dir(&m2)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut want = vec![
            a.to_hex(),
            b.to_hex(),
            "blog".into(),
            "news".into(),
            "STATUS".into(),
        ];
        want.sort();
        assert_eq!(names, want);
        assert_eq!(state_of(&m2, "blog").as_deref(), Some("queued"));
        assert_eq!(state_of(&m2, &d.to_hex()).as_deref(), Some("queued"));
        assert_eq!(state_of(&m2, &a.to_z32()).as_deref(), Some("queued"));
        let status = std::fs::read_to_string(m2.join("STATUS")).unwrap();
        assert!(status.contains(&d.to_hex()), "{status}");
        assert_eq!(
            getxattr(&m2.join("blog"), "user.dat-mirror.state").as_deref(),
            Some("queued")
        );
        assert_eq!(
            getxattr(&m2.join("blog"), "user.dat-mirror.key"),
            Some(d.to_hex())
        );
        assert_eq!(getxattr(&m2.join("blog"), "user.nope"), None);
        // rm by alias, rmdir by key.
        std::fs::remove_file(m2.join("blog")).unwrap();
        std::fs::remove_file(m2.join(b.to_hex())).unwrap();
    })
    .await;
    let log = log(&laptop).await;
    assert_eq!(
        log[4..],
        [Command::Unmirror { key: d }, Command::Unmirror { key: b }]
    );
    drop(mnt);
    laptop.shutdown().await;
}
