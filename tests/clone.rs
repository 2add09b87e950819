//! Seeding to readers: the laptop publishes two versions, the mirror mirrors them, the laptop
//! stops, and a third identity clones the site from the mirror with the `dat-mirror clone`
//! CLI. The files are byte-identical to the latest version, and the reader holds (verified)
//! every block of both cores, so the first version reads back too.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use dat_mirror::drive::{self, DirEntry};
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;
use dat_mirror::model::view::SiteState;
use dat_mirror::store::{CoreReader, CoreStore};

async fn clone_cli(reader: &Path, args: Vec<String>) -> Output {
    let reader = reader.to_path_buf();
    blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dat-mirror"))
            .arg("--data")
            .arg(&reader)
            .arg("clone")
            .args(&args)
            .env("XDG_CONFIG_HOME", &reader)
            .env_remove("DAT_MIRROR_CONFIG")
            .env("DAT_MIRROR_NETWORK_MDNS", "false")
            .env("DAT_MIRROR_NETWORK_DHT", "false")
            .env("DAT_MIRROR_NETWORK_HYPERSWARM", "false")
            .env("DAT_MIRROR_NETWORK_RELAY", "off")
            .output()
            .expect("run dat-mirror clone")
    })
    .await
}

fn read_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_clones_a_site_from_the_mirror_after_the_laptop_left() {
    let pair = Pair::start().await;
    make_site(&pair.site_dir, 300_000);
    let v1 = publish(&pair.laptop, &pair.site_dir, None).await;
    let v1_files = read_tree(&pair.site_dir);
    std::fs::write(pair.site_dir.join("index.html"), b"<h1>version two</h1>").unwrap();
    std::fs::write(pair.site_dir.join("new.txt"), b"added in v2").unwrap();
    let v2 = publish(&pair.laptop, &pair.site_dir, Some(v1.key)).await;
    let key = v1.key;
    pair.laptop
        .inner
        .append(Command::Mirror { key, alias: None })
        .await
        .unwrap();
    let inner = pair.laptop.inner.clone();
    let v2_version = v2.version;
    wait_until("site mirrored at v2", || {
        let inner = inner.clone();
        async move {
            inner.view().sites.iter().find_map(|s| {
                (s.key == key
                    && s.state
                        == SiteState::Mirrored {
                            version: v2_version,
                        })
                .then_some(())
            })
        }
    })
    .await;
    let Pair {
        tmp,
        mirror,
        laptop,
        ..
    } = pair;
    laptop.shutdown().await;

    let reader = tmp.path().join("reader");
    let out = tmp.path().join("out");
    let from = format!("{}@{}", mirror.key(), mirror.listen);
    let o = clone_cli(
        &reader,
        vec![
            key.to_link(),
            out.display().to_string(),
            "--from".into(),
            from.clone(),
        ],
    )
    .await;
    assert!(
        o.status.success(),
        "clone failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("version {}", v2.version)),
        "{stdout}"
    );
    assert_eq!(
        read_tree(&out),
        read_tree(&pair_site(&tmp)),
        "latest version byte-identical"
    );

    // The reader holds the whole history, verified: version 1 reads back as it was.
    let store = CoreStore::new(&reader).unwrap();
    let db = store
        .open_existing(&key)
        .await
        .unwrap()
        .expect("db core kept");
    let block0 = db.get(0).await.unwrap().unwrap();
    let blobs_key = Key(drive::decode_header(&block0).unwrap().content_feed.unwrap());
    let blobs = store.open_existing(&blobs_key).await.unwrap().unwrap();
    let (mdb, mblobs) = mirror.inner.site(&key).unwrap();
    assert_eq!(db.info().length, mdb.info().length);
    assert!(db.info().complete() && blobs.info().complete());
    assert_eq!(blobs.info().length, mblobs.unwrap().info().length);
    let mut dbr = CoreReader::new(db.clone());
    let mut blr = CoreReader::new(blobs.clone());
    let mut got_v1 = Vec::new();
    for e in drive::list(&mut dbr, v1.version, "/", true).await.unwrap() {
        if let DirEntry::File { path, entry } = e {
            let bytes = drive::read_file(&mut blr, entry.blob.as_ref().unwrap())
                .await
                .unwrap();
            got_v1.push((path.trim_start_matches('/').to_string(), bytes));
        }
    }
    got_v1.sort();
    assert_eq!(got_v1, v1_files, "version 1 from the reader's copy");
    // Close the store (the CLI below opens the folder in a process of its own).
    drop((dbr, blr, db, blobs, store));

    // Cloning into a folder that has files is refused, and the folder is left alone.
    let o = clone_cli(
        &reader,
        vec![
            key.to_hex(),
            out.display().to_string(),
            "--from".into(),
            from.clone(),
        ],
    )
    .await;
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"));

    // A key the mirror does not hold: nothing comes, a clear error after the timeout.
    let unknown = Key([42; 32]);
    let o = clone_cli(
        &reader,
        vec![
            unknown.to_hex(),
            tmp.path().join("none").display().to_string(),
            "--from".into(),
            from,
            "--timeout".into(),
            "3s".into(),
        ],
    )
    .await;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not complete after 3s"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!tmp.path().join("none").exists());
    mirror.shutdown().await;
}

fn pair_site(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    tmp.path().join("site")
}
