//! `dat-mirror status` end to end: the real binary against a laptop and a mirror running
//! in this process on loopback (the laptop's control socket is what the CLI talks to), then
//! against the same data folder with the laptop stopped.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use dat_mirror::model::command::Command;
use dat_mirror::model::view::{SiteState, StatusView};

/// Runs `dat-mirror --data DATA ARGS...` (bounded by `TIMEOUT`).
async fn cli(data: &Path, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_dat-mirror"));
    cmd.arg("--data")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("DAT_MIRROR_NETWORK_MDNS", "false")
        .env("DAT_MIRROR_NETWORK_DHT", "false")
        .env("DAT_MIRROR_NETWORK_HYPERSWARM", "false")
        .env("DAT_MIRROR_NETWORK_RELAY", "off")
        .kill_on_drop(true);
    tokio::time::timeout(TIMEOUT * 2, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("dat-mirror {args:?} did not finish"))
        .expect("dat-mirror runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_and_wait_with_and_without_the_daemon() {
    let p = Pair::start().await;
    make_site(&p.site_dir, 3 * 1024 * 1024);
    let site = publish(&p.laptop, &p.site_dir, None).await;
    let lap = p.lap_dir.clone();

    // The table, from the daemon.
    let o = cli(&lap, &["status"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(
        out.contains("SITES (0)") && out.contains(&p.mirror.key().to_hex()),
        "{}",
        show(&o)
    );
    assert!(
        !text(&o.stderr).contains("no `dat-mirror mount`"),
        "{}",
        show(&o)
    );

    // --wait on a name the folder does not have: exit 2, says what to do.
    let o = cli(&lap, &["status", "--wait", "blog", "--timeout", "5"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("touch"), "{}", show(&o));

    // Add the site under an alias and wait for it by alias: exit 0 once mirrored.
    p.laptop
        .inner
        .append(Command::Mirror {
            key: site.key,
            alias: Some("blog".into()),
        })
        .await
        .unwrap();
    let o = cli(&lap, &["status", "--wait", "blog", "--timeout", "120"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(
        out.starts_with("blog: mirrored v") && out.contains(&p.mirror.key().to_hex()),
        "{}",
        show(&o)
    );
    // Without a terminal, each new state was said on stderr, ending with mirrored.
    let err = text(&o.stderr);
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.contains("blog: mirrored v")),
        "{}",
        show(&o)
    );

    // JSON: the whole view, parseable, with the site mirrored and the mirror holding it.
    let o = cli(&lap, &["status", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let view: StatusView = serde_json::from_slice(&o.stdout).expect("status --json is a view");
    let s = view.site(&site.key).expect("site in the JSON view");
    assert!(matches!(s.state, SiteState::Mirrored { .. }), "{s:?}");
    assert_eq!(view.mirrors[0].sites_held, 1);
    assert!(view.mirrors[0].online);

    // The table shows it, with the mirror's sites held.
    let o = cli(&lap, &["status"]).await;
    let out = text(&o.stdout);
    let row = out
        .lines()
        .find(|l| l.starts_with(&p.mirror.key().to_hex()))
        .unwrap_or_else(|| panic!("no mirror row\n{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..4], ["yes", "now", "1"], "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("blog ") && l.contains("mirrored v")),
        "{out}"
    );

    // A core that is not a hyperdrive: the mirror reports an error; exit 2 with it. (Any 32
    // bytes can be a key since manifest-keyed cores: the error comes from the content.)
    let not_a_drive = p
        .laptop
        .inner
        .store
        .open_or_create_writable(&hypercore_engine::KeyPair::generate().unwrap())
        .await
        .unwrap();
    not_a_drive.append(b"not a hyperbee header").await.unwrap();
    let invalid = not_a_drive.key();
    drop(not_a_drive); // (it holds the laptop's store open; the CLI opens it below)
    p.laptop
        .inner
        .append(Command::Mirror {
            key: invalid,
            alias: None,
        })
        .await
        .unwrap();
    let o = cli(
        &lap,
        &["status", "--wait", &invalid.to_hex(), "--timeout", "60"],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("error: not a hyperdrive"),
        "{}",
        show(&o)
    );

    // A site nobody serves stays `delivered`: --timeout gives up with exit 3.
    let nobody = node_id(&p.tmp.path().join("nobody"));
    p.laptop
        .inner
        .append(Command::Mirror {
            key: nobody,
            alias: None,
        })
        .await
        .unwrap();
    let o = cli(
        &lap,
        &["status", "--wait", &nobody.to_link(), "--timeout", "2"],
    )
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(text(&o.stderr).contains("still "), "{}", show(&o));

    // An unmirrored site: exit 2 with the reason.
    p.laptop
        .inner
        .append(Command::Unmirror { key: nobody })
        .await
        .unwrap();
    let o = cli(
        &lap,
        &["status", "--wait", &nobody.to_hex(), "--timeout", "30"],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    // `removing` until the mirror acknowledges; once it has, the site has left the folder
    // (a busy machine can get there before the CLI's first look).
    let said = text(&o.stderr);
    assert!(
        said.contains("remov") || said.contains("no site"),
        "{}",
        show(&o)
    );

    // No daemon: the table from the data folder, mirrors offline, and a note saying so.
    let Pair {
        laptop,
        mirror,
        tmp: _tmp,
        ..
    } = p;
    laptop.shutdown().await;
    let o = cli(&lap, &["status"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("no `dat-mirror mount` is running"),
        "{}",
        show(&o)
    );
    let out = text(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("blog ") && l.contains("mirrored v")),
        "{}",
        show(&o)
    );
    let row = out
        .lines()
        .find(|l| l.starts_with(&mirror.key().to_hex()))
        .unwrap_or_else(|| panic!("no mirror row\n{out}"));
    assert_eq!(row.split_whitespace().nth(1), Some("no"), "{out}");
    // --wait needs the daemon.
    let o = cli(&lap, &["status", "--wait", "blog"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(text(&o.stderr).contains("--wait needs it"), "{}", show(&o));
    // A folder no laptop ran in: a clear error, and nothing created.
    let empty = _tmp.path().join("nothing-here");
    std::fs::create_dir_all(&empty).unwrap();
    let o = cli(&empty, &["status"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(text(&o.stderr).contains("holds no laptop"), "{}", show(&o));
    assert!(!empty.join("identity").exists());
    mirror.shutdown().await;
}
