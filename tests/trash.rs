//! Issue 14, item 1 (what the owner sees): site data the mirror moved aside at start — a
//! core no command asks for — is shown with its key, age and size on the status page, in
//! its JSON, by `dat-mirror trash` and by `dat-mirror status` on the mirror's folder (real
//! CLI processes asking the running mirror's control socket), and `dat-mirror trash empty`
//! deletes it. Emptying after `[serve] trash_days` is unit-tested in `mirror::leftovers`.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use dat_mirror::model::keys::Key;
use dat_mirror::store::CoreStore;

async fn cli(data: &Path, args: &[&str]) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dat-mirror"));
    c.arg("--data")
        .arg(data)
        .args(args)
        .env_remove("DAT_MIRROR_CONFIG");
    let out = blocking(move || c.output().expect("run dat-mirror")).await;
    assert!(
        out.status.success(),
        "dat-mirror {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trash_is_shown_to_the_owner_and_emptied_by_a_command() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pi_dir = tmp.path().join("pi");
    let listen = "127.0.0.1:0".parse().unwrap();
    let mirror = start_mirror(&pi_dir, listen, vec![]).await;
    mirror.shutdown().await;
    // A replica nobody asked for (as a lost command log would leave behind).
    let stray = Key(hypercore::generate_signing_key().verifying_key().to_bytes());
    {
        let store = CoreStore::new(&pi_dir).unwrap();
        store.open_or_create_replica(&stray).await.unwrap();
    }
    let mirror = start_mirror(&pi_dir, listen, vec![]).await;
    let hex = stray.to_hex();
    assert!(
        std::fs::read_dir(pi_dir.join("trash")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&hex)),
        "moved to the trash at start"
    );

    let base = http_base(&mirror);
    let (status, _, page) = http_get(&format!("{base}/")).await;
    let page = String::from_utf8_lossy(&page).into_owned();
    assert_eq!(status, 200);
    assert!(page.contains("Trash (1,"), "{page}");
    assert!(
        page.contains(&hex) && page.contains("dat-mirror trash empty"),
        "{page}"
    );
    let (_, _, json) = http_get(&format!("{base}/.well-known/dat-mirror")).await;
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["trash"][0]["key"], hex.as_str(), "{json}");
    assert!(json["trash"][0]["since_ms"].as_u64().is_some(), "{json}");
    assert_eq!(json["trash_days"], 7);

    let listed = text(&cli(&pi_dir, &["trash"]).await);
    assert!(
        listed.contains("trash: 1 entries") && listed.contains(&hex),
        "{listed}"
    );
    assert!(listed.contains("after 7 days"), "{listed}");
    let status = text(&cli(&pi_dir, &["status"]).await);
    assert!(
        status.contains("mirror data folder") && status.contains(&hex),
        "{status}"
    );

    let emptied = text(&cli(&pi_dir, &["trash", "empty"]).await);
    assert!(emptied.contains("deleted 1 trash entries"), "{emptied}");
    assert!(text(&cli(&pi_dir, &["trash"]).await).contains("trash: empty"));
    let (_, _, page) = http_get(&format!("{base}/")).await;
    assert!(!String::from_utf8_lossy(&page).contains("Trash ("));
    mirror.shutdown().await;
}
