//! Several of each: one mirror following two paired laptops (each sees only its own sites;
//! a site both asked for stays while either still wants it), and one laptop paired with two
//! mirrors (the control folder's `STATUS` and `cat <entry>` show both; a stopped mirror shows
//! offline while the other still has the site mirrored). Real mirrors and laptops on
//! loopback, real hypercores, real HTTP; the second test reads the real FUSE folder.

mod common;

use std::collections::BTreeSet;

use common::*;
use dat_mirror::laptop::Laptop;
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;
use dat_mirror::model::view::{SiteState, StatusView};

async fn add(laptop: &Laptop, key: Key, alias: Option<&str>) {
    laptop
        .inner
        .append(Command::Mirror {
            key,
            alias: alias.map(String::from),
        })
        .await
        .expect("append");
}

async fn remove(laptop: &Laptop, key: Key) {
    laptop
        .inner
        .append(Command::Unmirror { key })
        .await
        .expect("append");
}

fn mirrored(view: &StatusView, key: &Key) -> bool {
    view.site(key)
        .is_some_and(|s| matches!(s.state, SiteState::Mirrored { .. }))
}

async fn wait_mirrored(laptop: &Laptop, keys: &[Key], who: &str) {
    wait_until(&format!("{who}'s sites to be mirrored"), || async {
        let v = laptop.inner.view();
        keys.iter().all(|k| mirrored(&v, k)).then_some(())
    })
    .await;
}

fn site_keys(view: &StatusView) -> BTreeSet<Key> {
    view.sites.iter().map(|s| s.key).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_mirror_follows_two_laptops() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let (lap1_dir, lap2_dir) = (tmp.path().join("lap1"), tmp.path().join("lap2"));
    let mirror = start_mirror(
        &tmp.path().join("pi"),
        "127.0.0.1:0".parse().unwrap(),
        vec![node_id(&lap1_dir), node_id(&lap2_dir)],
    )
    .await;
    let lap1 = start_laptop(&lap1_dir, vec![mirror_addr(&mirror)]).await;
    let lap2 = start_laptop(&lap2_dir, vec![mirror_addr(&mirror)]).await;

    // Laptop 1 publishes `a` and the shared site `s`; laptop 2 publishes `b`.
    let dir = |n: &str| {
        let d = tmp.path().join(n);
        make_site(&d, 100_000);
        d
    };
    let a = publish(&lap1, &dir("a"), None).await.key;
    let s = publish(&lap1, &dir("s"), None).await.key;
    let b = publish(&lap2, &dir("b"), None).await.key;
    add(&lap1, a, Some("a")).await;
    add(&lap1, s, Some("shared")).await;
    add(&lap2, b, None).await;
    add(&lap2, s, None).await;
    wait_mirrored(&lap1, &[a, s], "laptop 1").await;
    wait_mirrored(&lap2, &[b, s], "laptop 2").await;

    // Each laptop sees only its own sites; the mirror's summary counts its sites held.
    let (v1, v2) = (lap1.inner.view(), lap2.inner.view());
    assert_eq!(site_keys(&v1), BTreeSet::from([a, s]));
    assert_eq!(site_keys(&v2), BTreeSet::from([b, s]));
    for v in [&v1, &v2] {
        assert_eq!(v.mirrors.len(), 1);
        assert_eq!(
            (v.mirrors[0].sites_held, v.mirrors[0].sites_held_all),
            (2, 3)
        );
        assert!(v.mirrors[0].online);
    }
    let acked = |v: &StatusView| v.mirrors[0].acked;
    assert_eq!((acked(&v1), acked(&v2)), (Some(1), Some(1)));

    // Laptop 1 drops the shared site: it leaves laptop 1's view, but laptop 2 still wants
    // it, so the mirror keeps (and serves) it and laptop 2 still sees it mirrored.
    remove(&lap1, s).await;
    wait_until("laptop 1's view to drop the shared site", || async {
        lap1.inner.view().site(&s).is_none().then_some(())
    })
    .await;
    // The mirror acked laptop 1's unmirror (seq 2) before the view dropped the site.
    assert_eq!(lap1.inner.view().mirrors[0].acked, Some(2));
    assert!(
        mirror.inner.site_snapshot(&s).is_some(),
        "the mirror keeps s"
    );
    let v2 = lap2.inner.view();
    assert!(mirrored(&v2, &s), "{:?}", v2.site(&s));
    let (code, _, body) =
        http_get(&format!("{}/{}/index.html", http_base(&mirror), s.to_hex())).await;
    assert_eq!(
        (code, body.as_slice()),
        (200, &b"<!doctype html><h1>hello from the laptop</h1>"[..])
    );
    assert_eq!(lap1.inner.view().mirrors[0].sites_held, 1);

    // Laptop 2 drops it too: now the mirror removes it, and laptop 1 is unaffected.
    remove(&lap2, s).await;
    wait_until("the mirror to drop the shared site", || async {
        mirror.inner.site_snapshot(&s).is_none().then_some(())
    })
    .await;
    wait_until("laptop 2's view to drop the shared site", || async {
        lap2.inner.view().site(&s).is_none().then_some(())
    })
    .await;
    assert!(mirrored(&lap1.inner.view(), &a));
    assert!(mirrored(&lap2.inner.view(), &b));
    let (code, _, _) = http_get(&format!("{}/{}/", http_base(&mirror), s.to_hex())).await;
    assert_eq!(code, 404, "a removed site is no longer served");

    lap1.shutdown().await;
    lap2.shutdown().await;
    mirror.shutdown().await;
}

/// The line of `cat <entry>` about `mirror`.
fn mirror_line(text: &str, mirror: &Key) -> Option<String> {
    let prefix = format!("  {}: ", mirror.short());
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(String::from)
}

/// The `STATUS` row of `mirror`, split on whitespace.
fn status_row(table: &str, mirror: &Key) -> Option<Vec<String>> {
    table
        .lines()
        .find(|l| l.starts_with(&mirror.to_hex()))
        .map(|l| l.split_whitespace().map(String::from).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_laptop_paired_with_two_mirrors() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let lap_dir = tmp.path().join("lap");
    let any = "127.0.0.1:0".parse().unwrap();
    let m1 = start_mirror(&tmp.path().join("pi1"), any, vec![node_id(&lap_dir)]).await;
    let m2 = start_mirror(&tmp.path().join("pi2"), any, vec![node_id(&lap_dir)]).await;
    let (k1, k2) = (m1.key(), m2.key());
    let laptop = start_laptop(&lap_dir, vec![mirror_addr(&m1), mirror_addr(&m2)]).await;
    let Some(mnt) = mount(
        &laptop,
        &tmp.path().join("mnt"),
        "one_laptop_paired_with_two_mirrors",
    )
    .await
    else {
        return;
    };
    let site_dir = tmp.path().join("site");
    make_site(&site_dir, 500_000);
    let site = publish(&laptop, &site_dir, None).await.key;
    let (m, link) = (mnt.path.clone(), site.to_link());
    blocking(move || std::fs::write(m.join("blog"), format!("{link}\n")))
        .await
        .expect("echo hyper://<key> > MNT/blog");

    // `cat blog` shows both mirrors' states; both reach mirrored.
    let m = mnt.path.clone();
    let text = wait_until("both mirrors to show the site mirrored", || {
        let m = m.clone();
        async move {
            let text = blocking(move || std::fs::read_to_string(m.join("blog")).ok()).await?;
            let both = [k1, k2].iter().all(|k| {
                mirror_line(&text, k)
                    .is_some_and(|l| l.starts_with("mirrored v") && l.ends_with("online"))
            });
            both.then_some(text)
        }
    })
    .await;
    assert!(text.contains("state: mirrored v"), "{text}");
    for k in [k1, k2] {
        let line = mirror_line(&text, &k).unwrap();
        assert!(
            line.contains(" blocks, ") && line.contains("updated "),
            "{line}"
        );
    }
    // STATUS lists both: online, seen now, one site held each.
    let m = mnt.path.clone();
    let table = blocking(move || std::fs::read_to_string(m.join("STATUS")).unwrap()).await;
    assert!(
        table.contains("MIRRORS (2)") && table.contains("SITES HELD"),
        "{table}"
    );
    for k in [k1, k2] {
        let row = status_row(&table, &k).unwrap_or_else(|| panic!("no row for {k}\n{table}"));
        assert_eq!(row[1..4], ["yes", "now", "1"], "{table}");
    }

    // Stop mirror 2: it shows offline (in STATUS and in `cat blog`), mirror 1 still mirrored.
    m2.shutdown().await;
    let m = mnt.path.clone();
    let table = wait_until("STATUS to show mirror 2 offline", || {
        let m = m.clone();
        async move {
            let t = blocking(move || std::fs::read_to_string(m.join("STATUS")).ok()).await?;
            (status_row(&t, &k2)?.get(1)? == "no").then_some(t)
        }
    })
    .await;
    assert_eq!(
        status_row(&table, &k1).unwrap()[1..4],
        ["yes", "now", "1"],
        "{table}"
    );
    let m = mnt.path.clone();
    let text = blocking(move || std::fs::read_to_string(m.join("blog")).unwrap()).await;
    assert!(text.contains("state: mirrored v"), "{text}");
    let l1 = mirror_line(&text, &k1).unwrap();
    let l2 = mirror_line(&text, &k2).unwrap();
    assert!(
        l1.starts_with("mirrored v") && l1.ends_with("; online"),
        "{text}"
    );
    assert!(l2.contains("offline, last seen"), "{text}");
    let view = laptop.inner.view();
    assert!(!view.mirrors[1].online && view.mirrors[0].online);
    drop(mnt);
    laptop.shutdown().await;
    m1.shutdown().await;
}

/// More sites from one laptop than QUIC's default stream limit allows (each replicated core
/// keeps a stream open: 2 per site): all of them reach mirrored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_laptop_many_sites() {
    const SITES: usize = 60;
    let p = Pair::start().await;
    let mut keys = Vec::new();
    for i in 0..SITES {
        let dir = p.tmp.path().join(format!("site{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("<h1>site {i}</h1>")).unwrap();
        let key = publish(&p.laptop, &dir, None).await.key;
        add(&p.laptop, key, None).await;
        keys.push(key);
    }
    wait_mirrored(&p.laptop, &keys, "the laptop").await;
    let v = p.laptop.inner.view();
    assert_eq!(v.mirrors[0].sites_held, SITES);
    let last = keys[SITES - 1];
    let (code, _, body) = http_get(&format!(
        "{}/{}/index.html",
        http_base(&p.mirror),
        last.to_hex()
    ))
    .await;
    assert_eq!(
        (code, body),
        (200, format!("<h1>site {}</h1>", SITES - 1).into_bytes())
    );
}
