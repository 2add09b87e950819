//! Pairing by invite, end to end: `dat-mirror invite` on a running mirror, `dat-mirror pair`
//! on a running laptop (both CLI processes talking to the daemons' control sockets), then the
//! mirror follows the laptop with no other flag. Expired, reused and forged invites are
//! refused with their reason and change nothing; `unpair` stops the following and keeps
//! what was mirrored, also across a restart.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use dat_mirror::mirror::invites::with_book;
use dat_mirror::model::command::Command;
use dat_mirror::model::invite::Invite;
use dat_mirror::model::keys::Key;
use dat_mirror::model::view::SiteState;

fn cli(data: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dat-mirror"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env("XDG_CONFIG_HOME", data)
        .env_remove("DAT_MIRROR_CONFIG")
        .env("DAT_MIRROR_NETWORK_MDNS", "false")
        .env("DAT_MIRROR_NETWORK_DHT", "false")
        .env("DAT_MIRROR_NETWORK_HYPERSWARM", "false")
        .env("DAT_MIRROR_NETWORK_RELAY", "off")
        .output()
        .expect("run dat-mirror")
}

async fn cli_async(data: &Path, args: &[&str]) -> Output {
    let data = data.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&data, &a)
    })
    .await
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn invite_code(pi_dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["invite"];
    all.extend_from_slice(args);
    let out = cli_async(pi_dir, &all).await;
    assert!(out.status.success(), "invite failed: {}", stderr(&out));
    let code = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(code.starts_with("dmi1"), "not a code: {code}");
    code
}

/// Waits until the laptop's view shows `site` in a state `pred` accepts.
async fn wait_site(
    laptop: &dat_mirror::laptop::Laptop,
    site: Key,
    what: &str,
    pred: fn(&SiteState) -> bool,
) {
    let inner = laptop.inner.clone();
    wait_until(what, || {
        let inner = inner.clone();
        async move {
            inner
                .view()
                .sites
                .iter()
                .find(|s| s.key == site && pred(&s.state))
                .map(|_| ())
        }
    })
    .await
}

fn mirrored(s: &SiteState) -> bool {
    matches!(s, SiteState::Mirrored { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invite_pair_mirror_unpair_and_refusals() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let (pi_dir, lap_dir, lap2_dir) = (
        tmp.path().join("pi"),
        tmp.path().join("lap"),
        tmp.path().join("lap2"),
    );
    // No --allow, no --mirror: pairing is all they get.
    let mirror = start_mirror(&pi_dir, "127.0.0.1:0".parse().unwrap(), vec![]).await;
    let laptop = start_laptop(&lap_dir, vec![]).await;
    let laptop2 = start_laptop(&lap2_dir, vec![]).await;

    // A forged code (right mirror and address, made-up secret) is refused by the mirror.
    let forged = Invite::new(mirror.key(), [0x5a; 16], u64::MAX / 2, vec![mirror.listen]).encode();
    let out = cli_async(&lap_dir, &["pair", &forged]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not know the invite"),
        "{}",
        stderr(&out)
    );
    assert!(
        mirror.inner.allowed().is_empty(),
        "a refused pairing changed nothing"
    );
    assert!(laptop.inner.mirrors().is_empty());

    // A damaged code is caught before any network.
    let code = invite_code(&pi_dir, &[]).await;
    let mut damaged = code.clone();
    damaged.pop();
    let out = cli_async(&lap_dir, &["pair", &damaged]).await;
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));

    // The real code pairs the running laptop (through its control socket).
    let out = cli_async(&lap_dir, &["pair", &code]).await;
    assert!(out.status.success(), "pair failed: {}", stderr(&out));
    assert_eq!(mirror.inner.allowed(), vec![laptop.inner.key()]);
    assert_eq!(laptop.inner.mirrors().len(), 1);
    assert_eq!(laptop.inner.mirrors()[0].id, mirror.key());

    // The same code again, from another laptop: refused as used.
    let out = cli_async(&lap2_dir, &["pair", &code]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already used"), "{}", stderr(&out));
    assert_eq!(mirror.inner.allowed(), vec![laptop.inner.key()]);

    // An expired code: the mirror's record says it expired (the laptop trusts the code's
    // own expiry, so age the record, as a clock running ahead on the mirror would).
    let code2 = invite_code(&pi_dir, &["--expires", "1h"]).await;
    with_book(&dat_mirror::host::DataDir::new(&pi_dir), |b| {
        b.invites.last_mut().unwrap().expires = 1;
        Ok(())
    })
    .unwrap();
    let out = cli_async(&lap2_dir, &["pair", &code2]).await;
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    assert_eq!(mirror.inner.allowed(), vec![laptop.inner.key()]);

    // Paired: a site published on the laptop and touched is mirrored, no flags involved.
    let site_a = tmp.path().join("a");
    make_site(&site_a, 50_000);
    let a = publish(&laptop, &site_a, None).await.key;
    laptop
        .inner
        .append(Command::Mirror {
            key: a,
            alias: Some("a".into()),
        })
        .await
        .unwrap();
    wait_site(&laptop, a, "site a mirrored", mirrored).await;

    // `peers` on both sides lists the other.
    let out = cli_async(&pi_dir, &["peers"]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains(&laptop.inner.key().to_hex()) && text.contains("paired"),
        "{text}"
    );
    let out = cli_async(&lap_dir, &["peers"]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(&mirror.key().to_hex()), "{text}");

    // Unpairing something that is not paired is a clear error.
    let out = cli_async(&pi_dir, &["unpair", &laptop2.inner.key().to_hex()]).await;
    assert!(
        stderr(&out).contains("not a paired laptop"),
        "{}",
        stderr(&out)
    );

    // Pair a second laptop, as a witness of when the mirror has read later commands.
    let code3 = invite_code(&pi_dir, &[]).await;
    let out = cli_async(&lap2_dir, &["pair", &code3]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Unpair the first laptop on the mirror.
    let out = cli_async(&pi_dir, &["unpair", &laptop.inner.key().to_hex()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mirror.inner.allowed(), vec![laptop2.inner.key()]);
    let log_len = mirror
        .inner
        .store
        .get_open(&laptop.inner.key())
        .map(|c| c.info().length)
        .unwrap();

    // The unpaired laptop's new command is not followed; the witness's is.
    let site_b = tmp.path().join("b");
    make_site(&site_b, 10_000);
    let b = publish(&laptop, &site_b, None).await.key;
    laptop
        .inner
        .append(Command::Mirror {
            key: b,
            alias: None,
        })
        .await
        .unwrap();
    let site_c = tmp.path().join("c");
    make_site(&site_c, 10_000);
    let c = publish(&laptop2, &site_c, None).await.key;
    laptop2
        .inner
        .append(Command::Mirror {
            key: c,
            alias: None,
        })
        .await
        .unwrap();
    wait_site(&laptop2, c, "witness site c mirrored", mirrored).await;
    assert!(
        mirror.inner.site_snapshot(&b).is_none(),
        "unpaired laptop's command applied"
    );
    assert_eq!(
        mirror
            .inner
            .store
            .get_open(&laptop.inner.key())
            .map(|c| c.info().length),
        Some(log_len),
        "the unpaired laptop's log is no longer replicated"
    );
    // What it already mirrored stays.
    assert!(mirror.inner.site_snapshot(&a).is_some());

    // ...also after the mirror restarts.
    let mirror_listen = mirror.listen;
    mirror.shutdown().await;
    let mirror = start_mirror(&pi_dir, mirror_listen, vec![]).await;
    wait_until("site a running again after restart", || {
        let m = mirror.inner.clone();
        async move { m.site_snapshot(&a).map(|_| ()) }
    })
    .await;
    assert!(mirror.inner.site_snapshot(&b).is_none());
    assert_eq!(mirror.inner.allowed(), vec![laptop2.inner.key()]);
    let url = format!("{}/{}/", http_base(&mirror), a.to_hex());
    wait_until("site a served over HTTP after the restart", || {
        let url = url.clone();
        async move { (http_get(&url).await.0 == 200).then_some(()) }
    })
    .await;

    // Pairing again resumes: the command written while unpaired is applied now.
    let code4 = invite_code(&pi_dir, &[]).await;
    let out = cli_async(&lap_dir, &["pair", &code4]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    wait_site(&laptop, b, "site b mirrored after pairing again", mirrored).await;

    laptop.shutdown().await;
    laptop2.shutdown().await;
    mirror.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pair_without_a_running_laptop_then_mount_uses_it() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let (pi_dir, lap_dir) = (tmp.path().join("pi"), tmp.path().join("lap"));
    let mirror = start_mirror(&pi_dir, "127.0.0.1:0".parse().unwrap(), vec![]).await;

    // A code that expired before it was used: refused by the laptop itself, nothing saved.
    let code = invite_code(&pi_dir, &["--expires", "1s"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let out = cli_async(&lap_dir, &["pair", &code]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    assert!(
        !lap_dir.join("mirrors.json").exists() || {
            let t = std::fs::read_to_string(lap_dir.join("mirrors.json")).unwrap();
            !t.contains(&mirror.key().to_hex())
        }
    );

    // No laptop daemon: `pair` does the exchange itself and saves the mirror.
    let code = invite_code(&pi_dir, &[]).await;
    let out = cli_async(&lap_dir, &["pair", &code]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mirror.inner.allowed(), vec![node_id(&lap_dir)]);

    // The next start needs no --mirror: it dials the paired mirror and gets its status.
    let laptop = start_laptop(&lap_dir, vec![]).await;
    assert_eq!(laptop.inner.mirrors()[0].id, mirror.key());
    let site = tmp.path().join("s");
    make_site(&site, 10_000);
    let key = publish(&laptop, &site, None).await.key;
    laptop
        .inner
        .append(Command::Mirror { key, alias: None })
        .await
        .unwrap();
    wait_site(&laptop, key, "site mirrored", mirrored).await;

    // Unpair on the laptop without its daemon: the mirror is forgotten.
    laptop.shutdown().await;
    let out = cli_async(&lap_dir, &["unpair", &mirror.key().to_hex()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli_async(&lap_dir, &["peers"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("MIRRORS (0)"));
    mirror.shutdown().await;
}

/// Issue 14, item 13: one peer flooding the pairing exchange (real QUIC connections to a
/// running mirror) is refused after `PAIRING_ATTEMPTS` a minute, before the invite book is
/// even read: its next attempt, with a genuine code, is refused too and leaves that code
/// unused, so another laptop then pairs with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pairing_flood_from_one_peer_is_refused_while_another_laptop_pairs() {
    use dat_mirror::mirror::laptops::PAIRING_ATTEMPTS;
    use dat_mirror::net::pairing::{self, PairError};

    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let (pi_dir, flood_dir, lap_dir) = (
        tmp.path().join("pi"),
        tmp.path().join("flood"),
        tmp.path().join("lap"),
    );
    let mirror = start_mirror(&pi_dir, "127.0.0.1:0".parse().unwrap(), vec![]).await;
    let flooder = start_laptop(&flood_dir, vec![]).await;
    let laptop = start_laptop(&lap_dir, vec![]).await;
    let endpoint = flooder.inner.node.endpoint().clone();
    let now = || dat_mirror::util::clock::now_ms() / 1000;

    // Forged codes: each one reaches the mirror, which looks it up and refuses it.
    let forged = Invite::new(mirror.key(), [0x5a; 16], u64::MAX / 2, vec![mirror.listen]);
    let mut answers = Vec::new();
    for i in 0..PAIRING_ATTEMPTS + 3 {
        let answer = pairing::request(&endpoint, &forged, now()).await;
        let Err(PairError::Refused(reason)) = answer else {
            panic!("attempt {i}: not refused by the mirror: {answer:?}");
        };
        answers.push(reason);
    }
    let (looked_up, limited) = answers.split_at(PAIRING_ATTEMPTS as usize);
    for reason in looked_up {
        assert!(reason.contains("does not know the invite"), "{reason}");
    }
    for reason in limited {
        assert!(reason.contains("too many pairing attempts"), "{reason}");
    }

    // Over the limit, even a genuine code is refused, before the book: the code stays unused.
    let code = invite_code(&pi_dir, &[]).await;
    let genuine = Invite::decode(&code).unwrap();
    match pairing::request(&endpoint, &genuine, now()).await {
        Err(PairError::Refused(reason)) => {
            assert!(reason.contains("too many pairing attempts"), "{reason}")
        }
        other => panic!("the flooding peer was not refused: {other:?}"),
    }
    assert!(mirror.inner.allowed().is_empty(), "nothing was paired");

    // Another laptop is not affected: it pairs with that very code.
    let out = cli_async(&lap_dir, &["pair", &code]).await;
    assert!(out.status.success(), "pair failed: {}", stderr(&out));
    assert_eq!(mirror.inner.allowed(), vec![laptop.inner.key()]);
    assert_eq!(laptop.inner.mirrors().len(), 1);

    flooder.shutdown().await;
    laptop.shutdown().await;
    mirror.shutdown().await;
}
