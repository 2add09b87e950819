//! A real browser against the gateway: headless Chromium (Debian's `chromium`, installed by
//! `scripts/test.sh`), driven with `--dump-dom` and `--screenshot` only (no driver, no CDP
//! client).
//!
//! - The status page renders for a local client (and `docs/status-page.png` is its
//!   screenshot: set `DAT_MIRROR_UPDATE_SCREENSHOT=1` to rewrite it).
//! - A mirrored site whose JavaScript tries to read another mirrored site (its DOM through
//!   an iframe, its storage) and the mirror's status JSON fails, both on the path form (CSP
//!   sandbox: an opaque origin) and on the subdomain form (`<z32>.pi.test`, resolved to
//!   127.0.0.1 by `--host-resolver-rules`: an origin of its own).
//!
//! Without Chromium the tests say SKIPPED loudly; with `CI=true` they fail.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use dat_mirror::mirror::http::{self, request::BaseHost, GatewayConfig};
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;

fn chromium(test: &str) -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        });
        if found.is_some() {
            return found;
        }
    }
    let why = "chromium is not installed (scripts/test.sh installs Debian's `chromium`)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}; a browser is required in CI (CI=true)");
    }
    eprintln!("SKIPPED {test}: {why} (with CI=true this fails)");
    None
}

/// Runs headless Chromium on `url` with `extra` flags and a fresh profile; its stdout.
async fn run_chromium(bin: &Path, url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium did not finish within 90 s")
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The JavaScript of the prying site: given `?other=<url of another site>` and
/// `?status=<url of the status JSON>`, tries to read both and writes what it got into
/// `<pre id=result>` as `key=value` lines.
const PRYING_PAGE: &str = r#"<!doctype html><title>prying</title><pre id=result>running</pre>
<script>
(async () => {
  const q = new URLSearchParams(location.search);
  const out = {};
  try {
    const r = await fetch(q.get('status'));
    const j = await r.json();
    out.status = 'READ ' + JSON.stringify(j).slice(0, 80);
  } catch (e) { out.status = 'blocked'; }
  const frame = document.createElement('iframe');
  frame.src = q.get('other');
  const loaded = new Promise(ok => { frame.onload = ok; setTimeout(ok, 3000); });
  document.body.appendChild(frame);
  await loaded;
  try {
    const text = frame.contentWindow.document.body.textContent;
    out.dom = 'READ ' + text.slice(0, 80);
  } catch (e) { out.dom = 'blocked'; }
  try {
    const v = localStorage.getItem('secret');
    out.storage = v === null ? 'blocked' : 'READ ' + v;
  } catch (e) { out.storage = 'blocked'; }
  document.getElementById('result').textContent =
    Object.entries(out).map(([k, v]) => k + '=' + v).join('\n') + '\ndone';
})();
</script>"#;

/// The other site: keeps a secret in its storage and shows one.
const OTHER_PAGE: &str = r#"<!doctype html><title>other</title><p>the other site's secret</p>
<script>try { localStorage.setItem('secret', 'the other site stored this'); } catch (e) {}</script>"#;

/// Publishes `files` as a site and has the mirror keep it under `alias`.
async fn add_site(pair: &Pair, name: &str, alias: &str, files: &[(&str, &str)]) -> Key {
    let dir = pair.tmp.path().join(name);
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let site = publish(&pair.laptop, &dir, None).await;
    pair.laptop
        .inner
        .append(Command::Mirror {
            key: site.key,
            alias: Some(alias.into()),
        })
        .await
        .unwrap();
    let url = format!(
        "{}/{}/index.html",
        http_base(&pair.mirror),
        site.key.to_hex()
    );
    wait_until(&format!("{alias} to be served"), || {
        let url = url.clone();
        async move { (http_get(&url).await.0 == 200).then_some(()) }
    })
    .await;
    site.key
}

fn result_lines(dom: &str) -> Vec<String> {
    let start = dom.find("<pre id=\"result\">").map(|i| i + 17);
    let body = start
        .and_then(|s| dom[s..].split("</pre>").next())
        .unwrap_or("");
    body.lines().map(str::to_string).collect()
}

fn assert_isolated(form: &str, dom: &str) {
    let lines = result_lines(dom);
    assert!(
        lines.iter().any(|l| l == "done"),
        "{form}: the prying page did not finish: {dom}"
    );
    for what in ["status", "dom", "storage"] {
        let want = format!("{what}=blocked");
        assert!(
            lines.contains(&want),
            "{form}: the site could read {what}: {lines:?}"
        );
    }
    eprintln!("{form}: {lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_cannot_read_each_other_or_the_status_and_the_status_page_renders() {
    let test = "sites_cannot_read_each_other_or_the_status_and_the_status_page_renders";
    let Some(bin) = chromium(test) else { return };
    let pair = Pair::start().await;
    let other = add_site(&pair, "other", "notes", &[("index.html", OTHER_PAGE)]).await;
    let prying = add_site(
        &pair,
        "prying",
        "blog",
        &[
            ("index.html", PRYING_PAGE),
            ("about/index.html", "<h1>about</h1>"),
        ],
    )
    .await;
    let base = http_base(&pair.mirror);

    // The status page renders for a local client.
    let dom = run_chromium(&bin, &format!("{base}/"), &["--dump-dom".into()]).await;
    assert!(dom.contains("<h1>dat-mirror</h1>"), "{dom}");
    for alias in ["blog", "notes"] {
        assert!(
            dom.contains(&format!(">{alias}</a>")),
            "{alias} listed: {dom}"
        );
    }
    assert!(dom.contains("mirrored v"), "{dom}");
    let shot_dir = tempfile::tempdir().unwrap();
    let shot = shot_dir.path().join("status-page.png");
    run_chromium(
        &bin,
        &format!("{base}/"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1000,640".into(),
        ],
    )
    .await;
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if std::env::var("DAT_MIRROR_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("status-page.png"), &png).unwrap();
        eprintln!("wrote docs/status-page.png");
    }

    // Path form: every site on the gateway's origin, each sandboxed.
    let page = format!(
        "{base}/{}/index.html?other={base}/{}/index.html&status={base}/.well-known/dat-mirror",
        prying.to_hex(),
        other.to_hex()
    );
    let dom = run_chromium(
        &bin,
        &page,
        &["--dump-dom".into(), "--virtual-time-budget=10000".into()],
    )
    .await;
    assert_isolated("path form", &dom);

    // Subdomain form: a gateway with a base host; each site on its own origin.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let gw = tokio::spawn(http::serve(
        pair.mirror.inner.clone(),
        listener,
        GatewayConfig {
            base_host: Some(format!("pi.test:{port}").parse::<BaseHost>().unwrap()),
            ..GatewayConfig::default()
        },
    ));
    let origin = |k: &Key| format!("http://{}.pi.test:{port}", k.to_z32());
    // Opened by path: the redirect to the site's own origin is part of what is tested.
    let page = format!(
        "http://pi.test:{port}/{}/index.html?other={}/index.html&status=http://pi.test:{port}/.well-known/dat-mirror",
        prying.to_hex(),
        origin(&other),
    );
    let dom = run_chromium(
        &bin,
        &page,
        &[
            "--dump-dom".into(),
            "--virtual-time-budget=10000".into(),
            "--host-resolver-rules=MAP *.pi.test 127.0.0.1, MAP pi.test 127.0.0.1".into(),
        ],
    )
    .await;
    assert_isolated("subdomain form", &dom);
    gw.abort();
    pair.laptop.shutdown().await;
    pair.mirror.shutdown().await;
}
