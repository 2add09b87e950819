//! File responses: conditional requests (ETag / If-None-Match, Last-Modified /
//! If-Modified-Since → 304), byte ranges (206 single or multipart/byteranges, 416), HEAD,
//! and streaming straight from the verified blobs core, one chunk at a time — a large file
//! is never held in memory. Content is read through [`crate::site::content`]: an entry whose
//! offsets disagree with the blobs core's Merkle tree answers 502 (the reason goes to the
//! log), and a range whose blocks are not all held yet answers 503 with `Retry-After`
//! instead of starting a response it could not finish.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::hot::{Bodies, Resolved};
use super::request::{none_match, not_modified_since, ranges, Ranges};
use crate::drive::Entry;
use crate::site::{ContentError, FileContent};
use crate::store::Core;

/// How a file is to be answered.
pub struct FileReply<'a> {
    /// The file (its path, entry, ETag and Content-Type).
    pub file: &'a Resolved,
    /// 200 normally; 404 when serving a site's custom not-found page.
    pub status: StatusCode,
    /// When this version of the site was first seen by the mirror (unix ms), if known.
    pub last_modified_ms: Option<u64>,
    /// The request named an explicit version: the answer never changes.
    pub immutable: bool,
}

impl<'a> FileReply<'a> {
    pub fn new(
        file: &'a Resolved,
        status: StatusCode,
        last_modified_ms: Option<u64>,
        immutable: bool,
    ) -> FileReply<'a> {
        FileReply {
            file,
            status,
            last_modified_ms,
            immutable,
        }
    }
}

/// The ETag of a file: where its bytes live in the site's append-only blobs core. It stays
/// the same across versions in which the file did not change, and differs whenever it did.
pub fn etag(entry: &Entry) -> String {
    match &entry.blob {
        Some(b) => format!(
            "\"{:x}-{:x}-{:x}\"",
            b.block_offset, b.byte_offset, b.byte_length
        ),
        None => "\"empty\"".to_string(),
    }
}

pub fn content_type(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str();
    if mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "image/svg+xml" | "application/xml"
        )
    {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_string()
    }
}

pub fn unavailable(what: &str) -> Response {
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{what} is still syncing; try again shortly\n"),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// An entry the gateway will not serve: its offsets disagree with the site's content.
fn refused(path: &str, e: ContentError) -> Response {
    tracing::warn!("refusing to serve {path}: {e}");
    let mut r = (
        StatusCode::BAD_GATEWAY,
        format!("{path}: this file's entry is inconsistent with the site's content; it cannot be served\n"),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn set(h: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// Answers a GET/HEAD for a file entry. A whole small file is sent from `bodies` when it
/// is there (and its block is still held), else read through the checked content path and
/// kept there.
pub async fn reply(
    blobs: Option<Arc<Core>>,
    file: FileReply<'_>,
    req: &HeaderMap,
    bodies: &Bodies,
) -> Response {
    let entry = &file.file.entry;
    let etag = file.file.etag.to_str().unwrap_or_default();
    let last_modified = file.last_modified_ms.map(|ms| {
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
    });
    let size = entry.blob.map(|b| b.byte_length).unwrap_or(0);

    let mut common = HeaderMap::with_capacity(8);
    common.insert(header::ETAG, file.file.etag.clone());
    if let Some(lm) = &last_modified {
        set(&mut common, header::LAST_MODIFIED, lm);
    }
    let cache = if file.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    common.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    // Conditional requests (only for successful answers).
    if file.status == StatusCode::OK {
        let hdr = |n: header::HeaderName| req.get(n).and_then(|v| v.to_str().ok());
        let unchanged = match hdr(header::IF_NONE_MATCH) {
            Some(inm) => none_match(inm, etag),
            None => match (hdr(header::IF_MODIFIED_SINCE), file.last_modified_ms) {
                (Some(ims), Some(ms)) => not_modified_since(ims, ms),
                _ => false,
            },
        };
        if unchanged {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            *r.headers_mut() = common;
            return r;
        }
    }

    // Ranges (ignored when If-Range names another version).
    let range_header = req.get(header::RANGE).and_then(|v| v.to_str().ok());
    let if_range_ok = req
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag || last_modified.as_deref() == Some(v.trim()));
    let wanted = if file.status == StatusCode::OK && if_range_ok {
        ranges(range_header, size)
    } else {
        Ranges::Full
    };
    if matches!(wanted, Ranges::Full) {
        if let Some(r) = small_whole(blobs.as_ref(), &file, bodies).await {
            let mut r = r;
            r.headers_mut().extend(common);
            return r;
        }
    }
    let parts: Vec<Range<u64>> = match &wanted {
        Ranges::Full => std::iter::once(0..size).collect(),
        Ranges::Parts(p) => p.clone(),
        Ranges::Unsatisfiable => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            *r.headers_mut() = common;
            set(
                r.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            return r;
        }
    };

    // Only bytes of blocks verified for this entry, and everything we are about to promise
    // must be held (and so verified).
    let ctype = file.file.content_type.clone();
    let content = match (entry.blob.filter(|b| b.byte_length > 0), blobs) {
        (None, _) => None,
        (Some(_), None) => return unavailable("this file"),
        (Some(blob), Some(blobs)) => match FileContent::open(blobs, blob).await {
            Ok(c) => Some(c),
            Err(e) if e.is_missing() => return unavailable("this file"),
            Err(e) => return refused(&file.file.path, e),
        },
    };
    if let Some(c) = &content {
        for r in &parts {
            if !c.held(r.clone()).await {
                return unavailable("this file");
            }
        }
    }

    let mut response = match (&wanted, content) {
        (Ranges::Parts(p), Some(content)) if p.len() == 1 => {
            let r = p[0].clone();
            let mut resp = Response::new(Body::from_stream(block_stream(content, r.clone())));
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(
                resp.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes {}-{}/{size}", r.start, r.end - 1),
            );
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, ctype.clone());
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(r.end - r.start));
            resp
        }
        (Ranges::Parts(p), Some(content)) => {
            multipart(content, p, size, ctype.to_str().unwrap_or_default())
        }
        (_, Some(content)) => {
            let mut resp = Response::new(Body::from_stream(block_stream(content, 0..size)));
            *resp.status_mut() = file.status;
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, ctype.clone());
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            resp
        }
        _ => {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = file.status;
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, ctype.clone());
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
            resp
        }
    };
    response.headers_mut().extend(common);
    response
}

/// The whole of a small file (one block, see [`Bodies`]) as a complete answer: from memory
/// when it is there and its block is still held, else read once through the checked content
/// path ([`FileContent`]) and kept. `None`: not a small file, or not answerable this way (not
/// held, inconsistent, unreadable): the caller takes the general path, which says why.
async fn small_whole(
    blobs: Option<&Arc<Core>>,
    file: &FileReply<'_>,
    bodies: &Bodies,
) -> Option<Response> {
    let blob = file.file.entry.blob.filter(|b| b.byte_length > 0)?;
    let blobs = blobs?;
    if !Bodies::fits(&blob)
        || blob.block_offset >= blobs.info().length
        || !blobs.has(blob.block_offset)
    {
        return None;
    }
    let bytes = match bodies.get(&blobs.key(), &blob) {
        Some(b) => b,
        None => {
            let content = FileContent::open(blobs.clone(), blob).await.ok()?;
            if !content.all_held().await {
                return None;
            }
            let bytes = Bytes::from(content.read_any(0..blob.byte_length).await.ok()?);
            if bytes.len() as u64 != blob.byte_length {
                return None;
            }
            bodies.put(&blobs.key(), &blob, bytes.clone());
            bytes
        }
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = file.status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, file.file.content_type.clone());
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.byte_length));
    Some(resp)
}

/// Bytes read per chunk of a streamed response: 16 blocks, read with one `pread` per stretch
/// of blocks that lie back to back in the data file ([`FileContent::read_held`]).
const CHUNK: u64 = 1024 * 1024;
/// Chunks read ahead of the one being sent: the next `pread` runs on the blocking pool while
/// the socket takes the current chunk. Memory per response: about `1 + READ_AHEAD` chunks.
const READ_AHEAD: usize = 2;

/// The bytes `range` of a file, in chunks read straight from the blobs core's data file, or
/// block by block when its placement could not be checked ([`FileContent::read_any`]); the
/// caller has checked that every block of the range is held, so verified.
fn block_stream(
    content: FileContent,
    range: Range<u64>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let range = content.clamp(range);
    let end = range.end;
    let starts = (range.start..end).step_by(CHUNK as usize);
    futures::stream::iter(starts)
        .map(move |start| {
            let content = content.clone();
            let chunk = start..start.saturating_add(CHUNK).min(end);
            async move {
                content
                    .read_any(chunk)
                    .await
                    .map(Bytes::from)
                    .inspect_err(|e| {
                        tracing::warn!("response body cut short: {e}");
                    })
            }
        })
        .buffered(READ_AHEAD)
}

/// A `multipart/byteranges` answer for several ranges.
fn multipart(content: FileContent, parts: &[Range<u64>], size: u64, ctype: &str) -> Response {
    let parts: Vec<Range<u64>> = parts.to_vec();
    let boundary = format!("dat-mirror-{:016x}", rand::random::<u64>());
    let heads: Vec<Bytes> = parts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let lead = if i == 0 { "" } else { "\r\n" };
            Bytes::from(format!(
                "{lead}--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
                r.start,
                r.end - 1
            ))
        })
        .collect();
    let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
    // Saturating: the ranges come from the client and the size from the site's author.
    let length: u64 = heads
        .iter()
        .map(|h| h.len() as u64)
        .chain(parts.iter().map(|r| r.end.saturating_sub(r.start)))
        .chain(std::iter::once(tail.len() as u64))
        .fold(0, u64::saturating_add);
    let streams = parts.into_iter().zip(heads).map(move |(r, head)| {
        futures::stream::once(async move { Ok(head) })
            .chain(block_stream(content.clone(), r))
            .boxed()
    });
    let body = futures::stream::iter(streams)
        .flatten()
        .chain(futures::stream::once(async move { Ok(tail) }));
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    set(
        resp.headers_mut(),
        header::CONTENT_TYPE,
        &format!("multipart/byteranges; boundary={boundary}"),
    );
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    resp
}
