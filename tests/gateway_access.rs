//! Who sees what on the HTTP gateway, against a real mirror holding a real site:
//! - the mirror's own pages (`/`, `/.well-known/dat-mirror`, `/metrics`) by status mode:
//!   `local` (default) shows them only to the mirror's own host — checked from a second
//!   network namespace, a genuinely different machine as far as TCP is concerned — and to
//!   the owner's secret link; `public` to anyone; `off` to nobody; sites are served to all;
//! - origin isolation: `nosniff` on every response, `Access-Control-Allow-Origin: *` on site
//!   content only, the CSP sandbox on path-routed sites, the subdomain redirect when a base
//!   host is configured, and no open redirect (`//about` on a virtual host);
//! - the owner's secret link rotated while the mirror runs (`dat-mirror status-link
//!   --rotate`, a real CLI process talking to the control socket): the old link stops
//!   working, the new one works;
//! - `/metrics`' replication counters move when a site replicates.

mod common;
mod netns;

use std::net::SocketAddr;

use common::*;
use dat_mirror::mirror::http::access::{StatusAccess, StatusLink, StatusToken};
use dat_mirror::mirror::http::request::BaseHost;
use dat_mirror::mirror::http::{self, GatewayConfig, PATH_FORM_CSP};
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;
use netns::{http_get_in, in_netns, NetnsPair};

/// A mirror (with its default gateway on loopback) holding one complete site.
async fn mirrored() -> (Pair, Key) {
    let pair = Pair::start().await;
    make_site(&pair.site_dir, 0);
    let site = publish(&pair.laptop, &pair.site_dir, None).await;
    pair.laptop
        .inner
        .append(Command::Mirror {
            key: site.key,
            alias: Some("blog".into()),
        })
        .await
        .unwrap();
    let url = format!(
        "{}/{}/index.html",
        http_base(&pair.mirror),
        site.key.to_hex()
    );
    wait_until("the site to be served", || {
        let url = url.clone();
        async move { (http_get(&url).await.0 == 200).then_some(()) }
    })
    .await;
    (pair, site.key)
}

/// A second gateway on `mirror` with `config`, listening on `listener`.
fn spawn_gateway(
    mirror: &dat_mirror::mirror::Mirror,
    listener: std::net::TcpListener,
    config: GatewayConfig,
) -> tokio::task::JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(http::serve(mirror.inner.clone(), listener, config))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(url: &str, host: Option<&str>) -> reqwest::Response {
    let mut r = client().get(url);
    if let Some(h) = host {
        r = r.header("host", h);
    }
    r.send().await.expect("HTTP request")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Item 6: the headers of every kind of response, and redirects that stay on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_and_status_responses_carry_isolation_headers() {
    let (pair, key) = mirrored().await;
    let base = http_base(&pair.mirror);
    let hex = key.to_hex();
    let vhost = format!("{}.pi.test", key.to_z32());

    for (what, url, host, status, site_content, sandboxed) in [
        ("status page", format!("{base}/"), None, 200, false, false),
        (
            "status JSON",
            format!("{base}/.well-known/dat-mirror"),
            None,
            200,
            false,
            false,
        ),
        (
            "metrics",
            format!("{base}/metrics"),
            None,
            200,
            false,
            false,
        ),
        (
            "unknown path",
            format!("{base}/favicon.ico"),
            None,
            404,
            false,
            false,
        ),
        (
            "path-routed file",
            format!("{base}/{hex}/index.html"),
            None,
            200,
            true,
            true,
        ),
        (
            "path-routed 404",
            format!("{base}/{hex}/nope.html"),
            None,
            404,
            true,
            true,
        ),
        (
            "virtual host",
            format!("{base}/css/site.css"),
            Some(vhost.as_str()),
            200,
            true,
            false,
        ),
        (
            "alias",
            format!("{base}/"),
            Some("blog.pi.test"),
            200,
            true,
            false,
        ),
    ] {
        let r = get(&url, host).await;
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert_eq!(
            header(&r, "x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        let acao = header(&r, "access-control-allow-origin");
        assert_eq!(acao, site_content.then_some("*"), "{what}: CORS");
        let csp = header(&r, "content-security-policy");
        if sandboxed {
            assert_eq!(csp, Some(PATH_FORM_CSP), "{what}");
        } else if site_content {
            assert_eq!(
                csp, None,
                "{what}: a site on its own origin is not sandboxed"
            );
        }
        if !site_content && status == 200 {
            assert!(
                csp.is_some_and(|c| c.contains("frame-ancestors 'none'")),
                "{what}"
            );
            assert_eq!(header(&r, "referrer-policy"), Some("no-referrer"), "{what}");
        }
    }
    let metrics = get(&format!("{base}/metrics"), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dat_mirror_sites{state=\"mirrored\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE dat_mirror_http_responses_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dat_mirror_http_responses_total{code=\"2xx\"}"),
        "{metrics}"
    );

    // The open redirect: `//about` names the folder /about, never the host `about`.
    for host in [vhost.as_str(), "blog.pi.test"] {
        let r = get(&format!("{base}//about"), Some(host)).await;
        assert_eq!(r.status().as_u16(), 301);
        assert_eq!(header(&r, "location"), Some("/about/"), "on {host}");
    }
    pair.laptop.shutdown().await;
    pair.mirror.shutdown().await;
}

/// Item 6: with a base host, `/<key>/…` moves to the site's own origin `<z32>.<base>`,
/// which then serves it unsandboxed; the base host itself shows the gateway's pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_host_gives_every_site_its_own_origin() {
    let (pair, key) = mirrored().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let base_host: BaseHost = format!("pi.test:{port}").parse().unwrap();
    let _gw = spawn_gateway(
        &pair.mirror,
        listener,
        GatewayConfig {
            base_host: Some(base_host),
            ..GatewayConfig::default()
        },
    );
    let url = format!("http://127.0.0.1:{port}");
    let z = key.to_z32();
    let own = format!("{z}.pi.test:{port}");
    for (path, to) in [
        (
            format!("/{}/about/?version=2", key.to_hex()),
            "/about/?version=2",
        ),
        (format!("/{z}/a%20b.html"), "/a%20b.html"),
        (format!("/{z}"), "/"),
    ] {
        let r = get(&format!("{url}{path}"), Some(&format!("pi.test:{port}"))).await;
        assert_eq!(r.status().as_u16(), 301, "{path}");
        assert_eq!(
            header(&r, "location"),
            Some(format!("http://{own}{to}").as_str()),
            "{path}"
        );
    }
    let r = get(&format!("{url}/index.html"), Some(&own)).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "content-security-policy"), None);
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    // The base host is the gateway, even though its first label could be an alias.
    let r = get(&format!("{url}/"), Some(&format!("pi.test:{port}"))).await;
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>dat-mirror</h1>"), "{page}");
    assert!(
        page.contains(&format!("http://{own}/")),
        "site links use the site's origin"
    );
    pair.laptop.shutdown().await;
    pair.mirror.shutdown().await;
}

/// GETs `path` on `addr` from namespace `ns`: the status code (0: no answer).
async fn status_in(ns: &str, addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let (ns, path) = (ns.to_string(), path.to_string());
    blocking(move || http_get_in(&ns, addr, &path).unwrap_or((0, vec![]))).await
}

/// Item 5: the status pages by mode, seen from the mirror's own address and from another
/// machine (a second network namespace), with and without the owner's secret link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pages_are_for_the_mirrors_host_and_the_owners_link() {
    let Some(net) = NetnsPair::create("status_pages_are_for_the_mirrors_host_and_the_owners_link")
    else {
        return;
    };
    let (pair, key) = mirrored().await;
    // The token the mirror made at start (and printed) is the one in its data folder.
    let token = StatusToken::load_or_create(&pair.pi_dir).unwrap();
    let t = token.as_str().to_string();
    let site = format!("/{}/index.html", key.to_hex());
    let pages = ["/", "/.well-known/dat-mirror", "/metrics"];
    let ip_a = net.ip_a;

    for mode in [StatusAccess::Local, StatusAccess::Public, StatusAccess::Off] {
        // A gateway whose socket lives in namespace a, at a's own address.
        let listener = in_netns(&net.a, move || {
            std::net::TcpListener::bind((ip_a, 0)).expect("bind in namespace a")
        });
        let addr = listener.local_addr().unwrap();
        let gw = spawn_gateway(
            &pair.mirror,
            listener,
            GatewayConfig {
                status: mode,
                status_link: Some(StatusLink::fixed(token.clone())),
                ..GatewayConfig::default()
            },
        );
        let unknown = status_in(&net.b, addr, "/favicon.ico").await;
        assert_eq!(unknown.0, 404);
        for page in pages {
            let from_host = status_in(&net.a, addr, page).await.0;
            let from_afar = status_in(&net.b, addr, page).await;
            let with_link = status_in(&net.b, addr, &format!("{page}?token={t}"))
                .await
                .0;
            let wrong_link = status_in(&net.b, addr, &format!("{page}?token={}", "0".repeat(32)))
                .await
                .0;
            let (host, afar, link) = match mode {
                StatusAccess::Local => (200, 404, 200),
                StatusAccess::Public => (200, 200, 200),
                StatusAccess::Off => (404, 404, 404),
            };
            assert_eq!(
                from_host, host,
                "{mode}: {page} from the mirror's own address"
            );
            assert_eq!(from_afar.0, afar, "{mode}: {page} from another machine");
            assert_eq!(with_link, link, "{mode}: {page} with the secret link");
            assert_eq!(wrong_link, afar, "{mode}: {page} with a wrong token");
            if from_afar.0 == 404 {
                assert_eq!(
                    from_afar.1, unknown.1,
                    "a hidden page looks like an unknown path"
                );
            }
        }
        // Sites are served to everyone, whatever the mode.
        assert_eq!(status_in(&net.b, addr, &site).await.0, 200, "{mode}: site");
        if mode == StatusAccess::Local {
            let (_, page) = status_in(&net.b, addr, &format!("/?token={t}")).await;
            let page = String::from_utf8_lossy(&page);
            assert!(
                page.contains(&format!("/metrics?token={t}")),
                "the secret link's page links on with the token: {page}"
            );
        }
        gw.abort();
    }
    drop(net);
    pair.laptop.shutdown().await;
    pair.mirror.shutdown().await;
}

/// `dat-mirror --data DIR ARGS…` as a process (the CLI talks to the mirror's control socket).
async fn cli(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dat-mirror"));
    c.arg("--data")
        .arg(data)
        .args(args)
        .env_remove("DAT_MIRROR_CONFIG");
    blocking(move || c.output().expect("run dat-mirror")).await
}

/// Item 5: `dat-mirror status-link --rotate` replaces the secret link of a running mirror:
/// from another machine the old link answers 404 at once and the new one opens the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_status_link_ends_the_old_one_without_a_restart() {
    let Some(net) =
        NetnsPair::create("rotating_the_status_link_ends_the_old_one_without_a_restart")
    else {
        return;
    };
    let (pair, _) = mirrored().await;
    let ip_a = net.ip_a;
    let listener = in_netns(&net.a, move || {
        std::net::TcpListener::bind((ip_a, 0)).expect("bind in namespace a")
    });
    let addr = listener.local_addr().unwrap();
    // A gateway reachable from namespace b, sharing the running mirror's own link (the one
    // its control socket rotates).
    let gw = spawn_gateway(
        &pair.mirror,
        listener,
        GatewayConfig {
            status_link: pair.mirror.inner.status_link.clone(),
            ..GatewayConfig::default()
        },
    );
    let token_of = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(url.starts_with(&http_base(&pair.mirror)), "{url}");
        url.rsplit_once("?token=")
            .expect("a secret link")
            .1
            .to_string()
    };
    let old = token_of(&cli(&pair.pi_dir, &["status-link"]).await);
    assert_eq!(
        old,
        StatusToken::load_or_create(&pair.pi_dir).unwrap().as_str()
    );
    assert_eq!(
        status_in(&net.b, addr, &format!("/?token={old}")).await.0,
        200
    );

    let new = token_of(&cli(&pair.pi_dir, &["status-link", "--rotate"]).await);
    assert_ne!(new, old);
    for page in ["/", "/.well-known/dat-mirror", "/metrics"] {
        let with_old = status_in(&net.b, addr, &format!("{page}?token={old}"))
            .await
            .0;
        let with_new = status_in(&net.b, addr, &format!("{page}?token={new}"))
            .await
            .0;
        assert_eq!(
            (with_old, with_new),
            (404, 200),
            "{page}: old link, new link"
        );
    }
    // Saved: a restarted mirror keeps the new link.
    assert_eq!(
        StatusToken::load_or_create(&pair.pi_dir).unwrap().as_str(),
        new
    );
    gw.abort();
    drop(net);
    pair.laptop.shutdown().await;
    pair.mirror.shutdown().await;
}

/// The value of an unlabelled sample in a Prometheus exposition.
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
}

/// Item 5 (`/metrics`): the replication counters move when a site is mirrored — blocks and
/// bytes received from the laptop, blocks and bytes served back (the status entries the
/// laptop reads) — and no proof was rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_replication() {
    let pair = Pair::start().await;
    let metrics_url = format!("{}/metrics", http_base(&pair.mirror));
    let metrics = || {
        let url = metrics_url.clone();
        async move {
            let (status, _, body) = http_get(&url).await;
            assert_eq!(status, 200);
            String::from_utf8(body).unwrap()
        }
    };
    let before = metrics().await;
    let files = make_site(&pair.site_dir, 300_000);
    let site_bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let site = publish(&pair.laptop, &pair.site_dir, None).await;
    pair.laptop
        .inner
        .append(Command::Mirror {
            key: site.key,
            alias: None,
        })
        .await
        .unwrap();
    let url = format!("{}/{}/", http_base(&pair.mirror), site.key.to_hex());
    wait_until("the site to be served", || {
        let url = url.clone();
        async move { (http_get(&url).await.0 == 200).then_some(()) }
    })
    .await;
    // The laptop has read the mirror's report that the site is mirrored: served to it.
    let inner = pair.laptop.inner.clone();
    wait_until("the laptop to see the site mirrored", || {
        let inner = inner.clone();
        let key = site.key;
        async move {
            inner.view().sites.iter().find(|s| {
                s.key == key
                    && matches!(s.state, dat_mirror::model::view::SiteState::Mirrored { .. })
            })?;
            Some(())
        }
    })
    .await;
    let after = metrics().await;
    let moved = |name: &str| {
        let (a, b) = (sample(&before, name), sample(&after, name));
        eprintln!("{name}: {a} -> {b}");
        b.saturating_sub(a)
    };
    let blocks_in = moved("dat_mirror_replication_received_blocks_total");
    let bytes_in = moved("dat_mirror_replication_received_bytes_total");
    let blocks_out = moved("dat_mirror_replication_served_blocks_total");
    let bytes_out = moved("dat_mirror_replication_served_bytes_total");
    // At least one blobs block per 64 KiB of the site, plus its db entries.
    assert!(
        blocks_in as usize > site_bytes / 65_536,
        "{blocks_in} blocks received"
    );
    assert!(
        bytes_in as usize >= site_bytes,
        "{bytes_in} bytes received for {site_bytes}"
    );
    assert!(
        blocks_out >= 1 && bytes_out > 0,
        "{blocks_out} blocks, {bytes_out} bytes served"
    );
    assert_eq!(
        sample(&after, "dat_mirror_replication_rejected_proofs_total"),
        0
    );
    assert!(sample(&after, "dat_mirror_peers_connected") >= 1);
    pair.laptop.shutdown().await;
    pair.mirror.shutdown().await;
}
