//! The HTTP gateway against a real mirror: routes, virtual hosts, ranges, conditional
//! requests, listings, versions, per-site fallbacks, refusals, and partial sites.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;

struct Fixture {
    _tmp: tempfile::TempDir,
    mirror: dat_mirror::mirror::Mirror,
    laptop: dat_mirror::laptop::Laptop,
    key: Key,
    site_dir: std::path::PathBuf,
    client: reqwest::Client,
}

impl Fixture {
    async fn new(extra: &[(&str, &[u8])], alias: Option<&str>) -> Fixture {
        let Pair {
            tmp,
            site_dir,
            mirror,
            laptop,
            ..
        } = Pair::start().await;
        make_site(&site_dir, 3 << 20);
        for (p, bytes) in extra {
            let path = site_dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let site = publish(&laptop, &site_dir, None).await;
        laptop
            .inner
            .append(Command::Mirror {
                key: site.key,
                alias: alias.map(String::from),
            })
            .await
            .unwrap();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let f = Fixture {
            _tmp: tmp,
            mirror,
            laptop,
            key: site.key,
            site_dir,
            client,
        };
        f.wait_complete().await;
        f
    }

    async fn wait_complete(&self) {
        let base = http_base(&self.mirror);
        let key = self.key.to_hex();
        let version = self
            .laptop
            .inner
            .store
            .open_existing(&self.key)
            .await
            .unwrap()
            .unwrap()
            .info()
            .length;
        wait_until("the site to be mirrored", || {
            let (base, key) = (base.clone(), key.clone());
            async move {
                let json: serde_json::Value = serde_json::from_slice(
                    &http_get(&format!("{base}/.well-known/dat-mirror")).await.2,
                )
                .ok()?;
                let site = json["sites"]
                    .as_array()?
                    .iter()
                    .find(|s| s["key"] == key)?
                    .clone();
                (site["complete"] == true && site["version"] == version).then_some(())
            }
        })
        .await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}{path}", http_base(&self.mirror), self.key)
    }

    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = self.client.get(url);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    async fn stop(self) {
        self.laptop.shutdown().await;
        self.mirror.shutdown().await;
    }
}

/// Sends raw bytes and returns the status line (for requests a client library would fix up).
fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_ranges_conditionals_and_listings() {
    let f = Fixture::new(
        &[
            ("img/logo.png", b"\x89PNG fake"),
            ("notes/a.txt", b"a"),
            ("notes/b.txt", b"bb"),
        ],
        None,
    )
    .await;
    let big = std::fs::read(f.site_dir.join("data/big.bin")).unwrap();

    // Redirect, index, HEAD.
    let r = f
        .get(&format!("{}/{}", http_base(&f.mirror), f.key), &[])
        .await;
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], format!("/{}/", f.key));
    let r = f.client.head(f.url("/data/big.bin")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], big.len().to_string());
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert!(r.bytes().await.unwrap().is_empty());

    // Content types.
    let ct = |r: &reqwest::Response| r.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct(&f.get(&f.url("/img/logo.png"), &[]).await), "image/png");
    assert_eq!(
        ct(&f.get(&f.url("/notes/a.txt"), &[]).await),
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        ct(&f.get(&f.url("/data/big.bin"), &[]).await),
        "application/octet-stream"
    );

    // Single range, suffix range, multiple ranges, unsatisfiable.
    let r = f
        .get(&f.url("/data/big.bin"), &[("range", "bytes=65530-65545")])
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 65530-65545/{}", big.len())
    );
    assert_eq!(r.bytes().await.unwrap(), big[65530..65546]);
    let r = f
        .get(&f.url("/data/big.bin"), &[("range", "bytes=-100")])
        .await;
    assert_eq!(r.bytes().await.unwrap(), big[big.len() - 100..]);
    let r = f
        .get(
            &f.url("/data/big.bin"),
            &[("range", "bytes=0-9, 200000-200009")],
        )
        .await;
    assert_eq!(r.status(), 206);
    let ctype = ct(&r);
    assert!(
        ctype.starts_with("multipart/byteranges; boundary="),
        "{ctype}"
    );
    let declared: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), declared);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(&format!("Content-Range: bytes 0-9/{}", big.len())));
    assert!(text.contains(&format!("Content-Range: bytes 200000-200009/{}", big.len())));
    assert!(body.windows(10).any(|w| w == &big[200000..200010]));
    let r = f
        .get(
            &f.url("/data/big.bin"),
            &[("range", &format!("bytes={}-", big.len()))],
        )
        .await;
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", big.len())
    );
    let r = f
        .get(&f.url("/data/big.bin"), &[("range", "pages=1-2")])
        .await;
    assert_eq!(r.status(), 200, "a malformed Range is ignored");

    // ETag / Last-Modified → 304; If-Range with another ETag → full answer.
    let r = f.get(&f.url("/index.html"), &[]).await;
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let lm = r.headers()["last-modified"].to_str().unwrap().to_string();
    assert_eq!(
        f.get(&f.url("/index.html"), &[("if-none-match", &etag)])
            .await
            .status(),
        304
    );
    assert_eq!(
        f.get(&f.url("/index.html"), &[("if-modified-since", &lm)])
            .await
            .status(),
        304
    );
    assert_eq!(
        f.get(&f.url("/index.html"), &[("if-none-match", "\"other\"")])
            .await
            .status(),
        200
    );
    let r = f
        .get(
            &f.url("/data/big.bin"),
            &[("range", "bytes=0-9"), ("if-range", "\"stale\"")],
        )
        .await;
    assert_eq!(r.status(), 200);

    // Listings: HTML and JSON; a folder without the slash redirects.
    let r = f.get(&f.url("/notes"), &[]).await;
    assert_eq!(r.status(), 301);
    let html = f.get(&f.url("/notes/"), &[]).await.text().await.unwrap();
    assert!(html.contains("a.txt") && html.contains("b.txt"), "{html}");
    let json: serde_json::Value = f
        .get(&f.url("/notes/"), &[("accept", "application/json")])
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.txt", "b.txt"]);

    // Status page and JSON.
    let page = f
        .get(&format!("{}/", http_base(&f.mirror)), &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&f.key.to_hex()) && page.contains("mirrored"),
        "{page}"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn virtual_hosts_versions_and_fallbacks() {
    let config = br#"{"spa": true, "fallback_page": "/404.html"}"#;
    let f = Fixture::new(
        &[("dat.json", config), ("404.html", b"custom not found")],
        Some("blog"),
    )
    .await;
    let base = http_base(&f.mirror);
    let index = String::from_utf8(std::fs::read(f.site_dir.join("index.html")).unwrap()).unwrap();
    let by_host = |h: String| {
        let url = format!("{base}/index.html");
        let f = &f;
        async move { f.get(&url, &[("host", &h)]).await.text().await.unwrap() }
    };
    assert_eq!(
        by_host(format!("{}.localhost", f.key.to_z32())).await,
        index
    );
    assert_eq!(by_host("blog.pi.local:8080".into()).await, index);
    f.mirror
        .inner
        .set_domains([("www.example.org".to_string(), f.key)].into());
    assert_eq!(by_host("www.example.org".into()).await, index);

    // SPA: extension-less unknown paths serve the fallback with 200; others a 404 page.
    let r = f.get(&f.url("/app/route"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "custom not found");
    let r = f.get(&f.url("/missing.png"), &[]).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "custom not found");

    // A new version; the old one stays reachable with ?version=N, cached as immutable.
    let v1 = f
        .laptop
        .inner
        .store
        .open_existing(&f.key)
        .await
        .unwrap()
        .unwrap()
        .info()
        .length;
    std::fs::write(f.site_dir.join("index.html"), b"version two").unwrap();
    publish(&f.laptop, &f.site_dir, Some(f.key)).await;
    f.wait_complete().await;
    assert_eq!(
        f.get(&f.url("/index.html"), &[])
            .await
            .text()
            .await
            .unwrap(),
        "version two"
    );
    let r = f
        .get(&f.url(&format!("/index.html?version={v1}")), &[])
        .await;
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.text().await.unwrap(), index);
    assert_eq!(
        f.get(&f.url("/index.html?version=99999"), &[])
            .await
            .status(),
        404
    );
    assert_eq!(
        f.get(&f.url("/index.html?version=abc"), &[]).await.status(),
        400
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_requests_and_partial_sites() {
    let f = Fixture::new(&[], None).await;
    let addr = f.mirror.http.unwrap();
    let key = f.key.to_hex();
    for path in [
        format!("/{key}/../../etc/passwd"),
        format!("/{key}/%2e%2e/%2e%2e/etc/passwd"),
        format!("/{key}/a%5c..%5cb"),
        format!("/{key}/a%00b"),
        format!("/{key}/{}", "x".repeat(5000)),
    ] {
        let status = tokio::task::spawn_blocking(move || {
            raw(
                addr,
                format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            )
        })
        .await
        .unwrap();
        assert!(status.contains(" 400 "), "{status}");
    }
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let status = tokio::task::spawn_blocking(move || raw(addr, huge_header.as_bytes()))
        .await
        .unwrap();
    assert!(status.contains(" 431 ") || status.is_empty(), "{status}");
    let r = f.client.post(f.url("/index.html")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let other = Key([9; 32]);
    assert_eq!(
        f.get(&format!("{}/{other}/", http_base(&f.mirror)), &[])
            .await
            .status(),
        404
    );

    // Many idle connections do not starve a real client.
    let idle: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    assert_eq!(f.get(&f.url("/index.html"), &[]).await.status(), 200);
    drop(idle);

    // A block the mirror does not hold (yet): 503 + Retry-After for that file, others fine.
    let (db, blobs) = f.mirror.inner.site(&f.key).unwrap();
    {
        let mut reader = dat_mirror::store::CoreReader::new(db.clone());
        let version = db.info().length;
        let entry = dat_mirror::drive::get_entry(&mut reader, version, "/data/big.bin")
            .await
            .unwrap()
            .unwrap();
        let blob = entry.blob.unwrap();
        let last = blob.block_offset + blob.block_length - 1;
        let blobs = blobs.unwrap();
        // Damage the block's bytes on disk; the engine's scrub then drops it.
        use std::os::unix::fs::FileExt;
        let bf = blobs.block_file(last).unwrap().unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&bf.path)
            .unwrap();
        f.write_all_at(&vec![0xee; bf.location.len as usize], bf.location.offset)
            .unwrap();
        blobs.engine().scrub(&blobs.key().0).unwrap();
        blobs.refresh_info();
    }
    let r = f.get(&f.url("/data/big.bin"), &[]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let r = f
        .get(&f.url("/data/big.bin"), &[("range", "bytes=0-99")])
        .await;
    assert_eq!(r.status(), 206, "the held part of the file is still served");
    assert_eq!(f.get(&f.url("/index.html"), &[]).await.status(), 200);
    f.stop().await;
}

/// #14 items 8 and 9: entries whose byte offset disagrees with the blocks they name (or lies
/// near `u64::MAX`) are refused with 502; the file they copy is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inconsistent_entries_are_refused() {
    use dat_mirror::drive::bee::Editor;
    use dat_mirror::drive::{encode_entry, file_key, get_entry, Entry};
    use dat_mirror::store::CoreReader;

    let f = Fixture::new(&[], None).await;
    let db = f
        .laptop
        .inner
        .store
        .open_existing(&f.key)
        .await
        .unwrap()
        .unwrap();
    let mut reader = CoreReader::new(db.clone());
    let version = db.info().length;
    let big = get_entry(&mut reader, version, "/data/big.bin")
        .await
        .unwrap()
        .unwrap()
        .blob
        .unwrap();
    let lie = |byte_offset| {
        encode_entry(&Entry {
            blob: Some(dat_mirror::drive::BlobRef { byte_offset, ..big }),
            ..Entry::default()
        })
    };
    let mut ed = Editor::open(&mut reader).await.unwrap();
    ed.put(&file_key("/shifted.bin"), &lie(big.byte_offset + 1))
        .await
        .unwrap();
    ed.put(&file_key("/far.bin"), &lie(u64::MAX - 10))
        .await
        .unwrap();
    let blocks = ed.into_blocks();
    db.append_batch(&blocks).await.unwrap();

    let url = f.url("/far.bin");
    wait_until("the hostile version to be served", || {
        let (f, url) = (&f, url.clone());
        async move { (f.get(&url, &[]).await.status() != 404).then_some(()) }
    })
    .await;
    for path in ["/shifted.bin", "/far.bin"] {
        let r = f.get(&f.url(path), &[]).await;
        assert_eq!(r.status(), 502, "{path}");
        let r = f
            .get(&f.url(path), &[("range", "bytes=300000-300009")])
            .await;
        assert_eq!(r.status(), 502, "{path} (range)");
    }
    let r = f.get(&f.url("/data/big.bin"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len() as u64, big.byte_length);
    f.stop().await;
}
