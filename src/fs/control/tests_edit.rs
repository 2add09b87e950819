//! Mount tests of what editors, scripts and mistakes do in the control folder: scratch files
//! that must behave like files and never reach the log, save-by-rename, renames of entries,
//! refused names, a failing log, and many threads at once. Harness: `tests.rs`.

use std::os::unix::fs::PermissionsExt;

use super::ops::{mirror_command, AliasWish};
use super::tests::*;
use crate::model::command::Command;
use crate::model::keys::Key;
use crate::model::view::StatusView;

#[test]
fn scratch_files_are_real_files_that_never_reach_the_log() {
    let Some(m) = mounted("scratch_files_are_real_files_that_never_reach_the_log") else {
        return;
    };
    let link = format!("hyper://{}\n", K1.to_hex());
    for name in [
        ".blog.swp",
        "blog~",
        "4913",
        "._blog",
        "#blog#",
        ".#blog",
        "x.swx",
    ] {
        std::fs::write(m.path(name), &link).unwrap();
        assert_eq!(m.read(name), link, "{name}");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(m.path(name))
            .unwrap();
        f.set_len(3).unwrap();
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .unwrap();
        drop(f);
        let meta = std::fs::metadata(m.path(name)).unwrap();
        assert_eq!(
            (meta.len(), meta.permissions().mode() & 0o777),
            (3, 0o600),
            "{name}"
        );
    }
    std::fs::rename(m.path(".blog.swp"), m.path(".blog.swo")).unwrap();
    assert_eq!(m.read(".blog.swo"), "hyp");
    std::fs::remove_file(m.path("4913")).unwrap();
    std::fs::create_dir(m.path(".git")).unwrap();
    assert_eq!(errno(std::fs::write(m.path(".git/x"), "x")), libc::EACCES);
    std::fs::remove_dir(m.path(".git")).unwrap();
    assert_eq!(
        m.names(),
        [
            "#blog#",
            ".#blog",
            "._blog",
            ".blog.swo",
            "STATUS",
            "blog~",
            "x.swx"
        ]
    );
    assert!(m.backend.commands().is_empty());
}

#[test]
fn save_by_rename_mirrors_the_new_content() {
    let Some(m) = mounted("save_by_rename_mirrors_the_new_content") else {
        return;
    };
    std::fs::write(
        m.path(".blog.tmp"),
        format!("URL=hyper://{}\n", K1.to_hex()),
    )
    .unwrap();
    assert!(m.backend.commands().is_empty());
    std::fs::rename(m.path(".blog.tmp"), m.path("blog")).unwrap();
    assert_eq!(m.backend.commands(), [mirror(K1, Some("blog"))]);
    assert_eq!(m.names(), ["STATUS", "blog"]);
    // Again over the existing entry, with another site: the alias moves.
    std::fs::write(m.path(".blog.tmp"), format!("hyper://{}\n", K2.to_z32())).unwrap();
    std::fs::rename(m.path(".blog.tmp"), m.path("blog")).unwrap();
    assert_eq!(
        m.backend.commands()[1..],
        [mirror(K2, Some("blog")), mirror(K1, None)]
    );
    // Renaming to a key name requires that key (or nothing) inside.
    std::fs::write(m.path(".k"), format!("hyper://{}\n", K3.to_hex())).unwrap();
    assert_eq!(
        errno(std::fs::rename(m.path(".k"), m.path(&K1.to_hex()))),
        libc::EINVAL
    );
    std::fs::rename(m.path(".k"), m.path(&K3.to_hex())).unwrap();
    assert_eq!(m.backend.commands()[3], mirror(K3, None));
    // A scratch file without a link cannot become an entry.
    std::fs::write(m.path(".n"), "nothing").unwrap();
    assert_eq!(
        errno(std::fs::rename(m.path(".n"), m.path("notes"))),
        libc::EINVAL
    );
    assert_eq!(m.backend.commands().len(), 4);
}

#[test]
fn renaming_entries() {
    let Some(m) = mounted("renaming_entries") else {
        return;
    };
    write_and_close(
        &m.path("blog"),
        format!("hyper://{}", K1.to_hex()).as_bytes(),
    )
    .unwrap();
    std::fs::rename(m.path("blog"), m.path("myblog")).unwrap();
    assert_eq!(m.backend.commands()[1], mirror(K1, Some("myblog")));
    // An editor's backup rename keeps the site and makes a scratch copy of its screen.
    std::fs::rename(m.path("myblog"), m.path("myblog~")).unwrap();
    assert_eq!(m.backend.commands().len(), 2);
    assert!(Key::find_in_text(&m.read("myblog~")) == Some(K1));
    wait_until("the backup name is a scratch file", || {
        m.names() == ["STATUS", "myblog", "myblog~"]
    });
    // Renaming to another site's key is refused. (To its own key is the same inode: the
    // kernel makes that a no-op without asking.)
    assert_eq!(
        errno(std::fs::rename(m.path("myblog"), m.path(&K2.to_hex()))),
        libc::EINVAL
    );
    std::fs::rename(m.path("myblog"), m.path(&K1.to_z32())).unwrap();
    assert_eq!(m.backend.commands().len(), 2);
    assert_eq!(
        errno(std::fs::rename(m.path("STATUS"), m.path("s"))),
        libc::EPERM
    );
    assert_eq!(
        errno(std::fs::rename(m.path("myblog~"), m.path("STATUS"))),
        libc::EPERM
    );
}

#[test]
fn invalid_names_are_einval_and_append_nothing() {
    let Some(m) = mounted("invalid_names_are_einval_and_append_nothing") else {
        return;
    };
    assert_eq!(errno(std::fs::write(m.path("a\tb"), "x")), libc::EINVAL);
    assert_eq!(
        errno(std::fs::write(m.path(&"x".repeat(230)), "x")),
        libc::EINVAL
    );
    assert_eq!(
        errno(std::fs::create_dir(m.path("blog"))),
        libc::EINVAL,
        "mkdir needs a key"
    );
    assert_eq!(errno(std::fs::create_dir(m.path("a\nb"))), libc::EINVAL);
    std::fs::write(m.path(".s"), "x").unwrap();
    assert_eq!(
        errno(std::fs::rename(m.path(".s"), m.path("bad\u{1}"))),
        libc::EINVAL
    );
    assert_eq!(
        errno(std::fs::write(m.path("STATUS.url"), "x")),
        libc::EINVAL
    );
    assert!(m.backend.commands().is_empty());
    assert_eq!(m.names(), [".s", "STATUS"]);
}

#[test]
fn a_failing_log_is_eio_and_shows_nothing() {
    let Some(m) = mounted("a_failing_log_is_eio_and_shows_nothing") else {
        return;
    };
    m.backend
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(errno(std::fs::write(m.path(&K1.to_hex()), "")), libc::EIO);
    assert_eq!(
        errno(write_and_close(
            &m.path("blog"),
            format!("hyper://{}", K1.to_hex()).as_bytes()
        )),
        libc::EIO
    );
    assert!(m.backend.commands().is_empty());
    m.backend
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_until("nothing is listed", || m.names() == ["STATUS"]);
}

#[test]
fn many_threads_at_once() {
    let Some(m) = mounted("many_threads_at_once") else {
        return;
    };
    let keys: Vec<Key> = (0..24u8).map(|i| Key([i + 1; 32])).collect();
    std::thread::scope(|s| {
        for t in 0..6 {
            let (m, keys) = (&m, &keys);
            s.spawn(move || {
                for (i, k) in keys.iter().enumerate() {
                    match (i + t) % 3 {
                        0 => drop(std::fs::File::create(m.path(&k.to_hex()))),
                        1 => drop(std::fs::File::create(m.path(&k.to_z32()))),
                        _ => {
                            let _ = m.read("STATUS");
                            let _ = std::fs::read_dir(m.dir.path()).map(|d| d.count());
                        }
                    }
                }
                std::fs::write(m.path(&format!(".scratch{t}")), "x").unwrap();
            });
        }
    });
    let cmds = m.backend.commands();
    for k in &keys {
        let n = cmds.iter().filter(|c| c.key() == *k).count();
        assert_eq!(n, 1, "{k:?} appended {n} times: {cmds:?}");
    }
    assert_eq!(m.names().len(), 1 + 24 + 6);
}

#[test]
fn mirror_command_rules() {
    let view = |cmds: Vec<Command>| {
        let log: Vec<_> = cmds.into_iter().map(Ok).collect();
        crate::model::view::fold(ME, &log, &[], 0)
    };
    let empty = StatusView::default();
    assert_eq!(
        mirror_command(&empty, K1, AliasWish::Keep),
        Some(mirror(K1, None))
    );
    let v = view(vec![mirror(K1, Some("blog"))]);
    assert_eq!(mirror_command(&v, K1, AliasWish::Keep), None);
    assert_eq!(mirror_command(&v, K1, AliasWish::Set("blog".into())), None);
    assert_eq!(
        mirror_command(&v, K1, AliasWish::Set("x".into())),
        Some(mirror(K1, Some("x")))
    );
    assert_eq!(
        mirror_command(&v, K1, AliasWish::Clear),
        Some(mirror(K1, None))
    );
    // Removing (with a mirror still to ack): anything re-mirrors, Keep keeps the alias.
    let mut log = vec![
        Ok(mirror(K1, Some("blog"))),
        Ok(Command::Unmirror { key: K1 }),
    ];
    log.truncate(2);
    let input = crate::model::view::MirrorInput {
        mirror: MIRROR,
        status: vec![],
        online: false,
        last_seen_ms: None,
    };
    let v = crate::model::view::fold(ME, &log, &[input], 0);
    assert_eq!(
        mirror_command(&v, K1, AliasWish::Keep),
        Some(mirror(K1, Some("blog")))
    );
}
