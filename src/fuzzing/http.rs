//! Fuzz entry points for what an HTTP client controls: the request path, the `Host`
//! header, the query string, `Range`, the conditional headers, and a site's own
//! `/dat.json` (written by whoever publishes the site).

use std::collections::BTreeMap;

use super::take_u64;
use crate::drive::{blob_blocks, normalize_path, BlobRef, BLOCK_SIZE};
use crate::mirror::http::request::{
    clean_path, none_match, not_modified_since, parse_target, ranges, site_for_host, version_param,
    Ranges, Target, MAX_RANGES,
};
use crate::mirror::http::SiteConfig;
use crate::model::keys::Key;

/// Checks what the gateway relies on in a decoded path: absolute, no `..` segment, no NUL
/// or backslash.
fn check_clean(path: &str) {
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.split('/').any(|s| s == ".."), "{path:?}");
    assert!(!path.contains('\0') && !path.contains('\\'), "{path:?}");
    check_normalized(&normalize_path(path));
}

/// What `normalize_path` promises: absolute, no `.`/`..`/empty segments, no trailing `/`.
fn check_normalized(n: &str) {
    assert!(n.starts_with('/'), "{n:?}");
    if n != "/" {
        assert!(!n.ends_with('/'), "{n:?}");
        assert!(
            n[1..]
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
            "{n:?}"
        );
    }
}

/// A request path (percent-encoded, as the request line carries it).
pub fn http_path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = clean_path(raw) {
        check_clean(&path);
    }
    match parse_target(raw) {
        Ok(Some(Target::Site(_, path))) => check_clean(&path),
        Ok(Some(Target::SiteNoSlash(_))) => assert!(!raw[1..].contains('/')),
        Ok(_) | Err(_) => {}
    }
}

/// A `Host` header, routed against one custom domain and one alias.
pub fn http_host(data: &[u8]) {
    let host = String::from_utf8_lossy(data);
    let domain = Key([1; 32]);
    let blog = Key([2; 32]);
    let mut domains = BTreeMap::new();
    domains.insert("www.example.org".to_string(), domain);
    if let Some(k) = site_for_host(&host, &domains, |a| (a == "blog").then_some(blog)) {
        if k != domain && k != blog {
            // Otherwise the first label spells the key.
            let lower = host.to_ascii_lowercase();
            assert!(lower.contains(&k.to_hex()) || lower.contains(&k.to_z32()));
        }
    }
}

/// A query string (`?version=N`).
pub fn http_query(data: &[u8]) {
    let q = String::from_utf8_lossy(data);
    if let Ok(Some(v)) = version_param(Some(&q)) {
        assert!(v > 0);
    }
}

/// A `Range` header against a file whose size comes from the first 8 bytes: the ranges
/// the gateway would stream must lie inside the file, not overlap, and not be too many;
/// the blocks it would read for them must lie inside the blob.
pub fn http_range(data: &[u8]) {
    let (size, rest) = take_u64(data);
    // Small files are where the edge cases are: half the inputs use a 16-bit size.
    let size = if size & 1 == 0 { size >> 48 } else { size };
    let Ok(header) = std::str::from_utf8(rest) else {
        return;
    };
    let Ranges::Parts(parts) = ranges(Some(header), size) else {
        return;
    };
    assert!(!parts.is_empty() && parts.len() <= MAX_RANGES, "{parts:?}");
    for (i, r) in parts.iter().enumerate() {
        assert!(r.start < r.end && r.end <= size, "{r:?} of {size}");
        for other in &parts[i + 1..] {
            assert!(r.end <= other.start || other.end <= r.start, "overlap");
        }
        let blob = BlobRef {
            block_offset: 7,
            block_length: size.div_ceil(BLOCK_SIZE),
            byte_offset: 0,
            byte_length: size,
        };
        let first = r.start / BLOCK_SIZE + blob.block_offset;
        for (expect, (block, slice)) in (first..).zip(blob_blocks(&blob, r.clone()).take(4)) {
            assert_eq!(block, expect);
            assert!(slice.start < slice.end && slice.end as u64 <= BLOCK_SIZE);
        }
    }
}

/// `If-None-Match` / `If-Modified-Since` / `If-Range` against a file's ETag and date.
pub fn http_conditional(data: &[u8]) {
    let (ms, rest) = take_u64(data);
    let text = String::from_utf8_lossy(rest);
    let (header, etag) = text.split_once('\n').unwrap_or((&text, "\"1-0-5\""));
    let _ = none_match(header, etag);
    let _ = not_modified_since(header, ms);
    assert!(none_match("*", etag));
}

/// A site's `/dat.json`, and the paths the gateway builds from it.
pub fn site_config(data: &[u8]) {
    let Ok(config) = serde_json::from_slice::<SiteConfig>(data) else {
        return;
    };
    let root = config
        .web_root
        .as_deref()
        .map(|r| r.trim_end_matches('/'))
        .unwrap_or("");
    for path in ["/", "/index.html", "/a/b"] {
        check_normalized(&normalize_path(&format!("{root}{path}")));
    }
    if let Some(page) = &config.fallback_page {
        check_normalized(&normalize_path(&format!(
            "{root}/{}",
            page.trim_start_matches('/')
        )));
    }
}
