//! `touch` after `rm` when the mirror's acknowledgement of the removal lands in the middle
//! of the touch (issue 14, item 2). GNU touch is `open(O_WRONLY|O_CREAT)` then
//! `futimens(fd)`; the kernel turns that into lookup, create or open, then setattr(times).
//! These tests make the fake mirror acknowledge at each point between those callbacks and
//! check that the touch succeeds and the log ends with `Mirror`. Harness: `tests.rs`.

use std::fs::{File, FileTimes, OpenOptions};
use std::sync::Arc;
use std::time::SystemTime;

use super::ops::FolderOp;
use super::table::ROOT;
use super::tests::*;
use super::ControlFs;
use crate::model::command::Command;

/// What `touch` does: open for writing (creating), then set the times through the fd.
fn open_for_touch(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

fn set_times(f: &File) -> std::io::Result<()> {
    let now = SystemTime::now();
    f.set_times(FileTimes::new().set_accessed(now).set_modified(now))
}

/// `touch K`, acked; `rm K`: the log is [Mirror, Unmirror] and K shows `removing`.
fn touched_then_removed(m: &Mounted) {
    let hex = K1.to_hex();
    assert!(m.sh(&format!("touch {hex}")).status.success());
    m.backend.ack_all();
    std::fs::remove_file(m.path(&hex)).unwrap();
    assert_eq!(
        m.backend.commands(),
        [mirror(K1, None), Command::Unmirror { key: K1 }]
    );
}

#[test]
fn ack_between_open_and_setattr_keeps_the_touch() {
    let Some(m) = mounted("ack_between_open_and_setattr_keeps_the_touch") else {
        return;
    };
    touched_then_removed(&m);
    let path = m.path(&K1.to_hex());
    let f = open_for_touch(&path).expect("open of an entry being removed");
    // The mirror's Removed + Ack arrive: K1 leaves the view while the kernel holds it open.
    m.backend.ack_all();
    set_times(&f).expect("setting times on the file touch just opened");
    drop(f);
    assert_eq!(
        m.backend.commands().last(),
        Some(&mirror(K1, None)),
        "the touch re-mirrors"
    );
    assert_eq!(m.backend.commands().len(), 3);
    assert!(m.read(&K1.to_hex()).lines().any(|l| l == "state: queued"));
}

#[test]
fn ack_between_lookup_and_open_keeps_the_touch() {
    let Some(m) = mounted("ack_between_lookup_and_open_keeps_the_touch") else {
        return;
    };
    touched_then_removed(&m);
    let path = m.path(&K1.to_hex());
    // The kernel looks K1 up (removing) and caches the entry for a second ...
    std::fs::metadata(&path).expect("K1 is listed while removing");
    // ... the mirror acknowledges the removal ...
    m.backend.ack_all();
    // ... and touch opens the cached entry: FUSE open, not create.
    let f = open_for_touch(&path).expect("open of an entry the kernel still caches");
    set_times(&f).expect("setting times");
    drop(f);
    assert_eq!(m.backend.commands().last(), Some(&mirror(K1, None)));
    assert_eq!(m.backend.commands().len(), 3);
}

#[test]
fn create_of_a_removing_entry_mirrors_at_once() {
    // The kernel's lookup said "no such entry" but the name still resolves when `create`
    // runs (a removing entry): create decides, before any setattr.
    let backend = Arc::new(FakeBackend::default());
    let fs = ControlFs::new(backend.clone());
    let name = K1.to_hex();
    let flags = libc::O_WRONLY | libc::O_CREAT;
    FolderOp::begin(&fs)
        .create(ROOT, name.as_ref(), 0o644, flags)
        .unwrap();
    backend.ack_all();
    FolderOp::begin(&fs)
        .unlink(ROOT, name.as_ref(), false)
        .unwrap();
    let (attr, fh, _) = FolderOp::begin(&fs)
        .create(ROOT, name.as_ref(), 0o644, flags)
        .unwrap();
    assert_eq!(
        backend.commands(),
        [
            mirror(K1, None),
            Command::Unmirror { key: K1 },
            mirror(K1, None)
        ],
        "create appends Mirror for an entry being removed"
    );
    // The removal's ack lands late; the file stays, the handle works.
    backend.ack_all();
    let mut op = FolderOp::begin(&fs);
    assert_eq!(op.getattr(attr.ino.0).unwrap().ino, attr.ino);
    op.flush(fh).unwrap();
    op.release(fh);
}

#[test]
fn a_site_inode_never_vanishes_under_the_kernel() {
    let backend = Arc::new(FakeBackend::default());
    let fs = ControlFs::new(backend.clone());
    let name = K2.to_hex();
    let (attr, fh, _) = FolderOp::begin(&fs)
        .create(ROOT, name.as_ref(), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    backend.ack_all();
    FolderOp::begin(&fs)
        .unlink(ROOT, name.as_ref(), false)
        .unwrap();
    backend.ack_all();
    let ino = attr.ino.0;
    // Gone from the view, but the kernel holds the inode (open here): getattr answers,
    // and so does setattr through the fd, which re-mirrors (a touch).
    assert!(FolderOp::begin(&fs).getattr(ino).is_ok());
    let now = Some(fuser::TimeOrNow::Now);
    FolderOp::begin(&fs)
        .setattr(ino, None, None, now, now, Some(fh))
        .expect("setattr(times) on the open file");
    FolderOp::begin(&fs).release(fh);
    assert_eq!(backend.commands().last(), Some(&mirror(K2, None)));
    assert_eq!(backend.commands().len(), 3);
    // Removed and acknowledged again: the name no longer resolves, the inode still answers.
    FolderOp::begin(&fs)
        .unlink(ROOT, name.as_ref(), false)
        .unwrap();
    backend.ack_all();
    assert_eq!(
        FolderOp::begin(&fs)
            .lookup(ROOT, name.as_ref())
            .unwrap_err(),
        fuser::Errno::ENOENT
    );
    assert!(FolderOp::begin(&fs).getattr(ino).is_ok());
    assert_eq!(backend.commands().len(), 4, "looking appends nothing");
}
