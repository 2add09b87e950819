//! Hostile HTTP clients against a real mirror's gateway on loopback: slowloris (heads sent
//! one byte at a time), idle connections up to and beyond the connection cap (with the
//! attacker reconnecting as fast as it is shed), a body on GET, a 10 MB header line and
//! pipelined garbage. In every case a normal client still gets its page, the hostile
//! connections end in a clean 4xx or a close, and the server keeps serving. Slow readers:
//! 1,100 clients that request a multi-MiB file with a tiny receive window and never read,
//! and one reader that stops, cut off at the write deadline. Every wait is bounded by
//! `TIMEOUT` (a hang guard); the one assertion about speed is the brief's "a normal client is
//! served within seconds" while 1,100 stalled readers hold on.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dat_mirror::mirror::http::{HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD_BYTES};
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A mirror with its HTTP gateway on loopback (no laptop needed: `/` is a page).
async fn gateway() -> (tempfile::TempDir, dat_mirror::mirror::Mirror, SocketAddr) {
    init_tracing();
    raise_fd_limit(4 * MAX_CONNECTIONS as u64 + 1024);
    let tmp = tempfile::tempdir().unwrap();
    let mirror = start_mirror(
        &tmp.path().join("pi"),
        "127.0.0.1:0".parse().unwrap(),
        vec![],
    )
    .await;
    let http = mirror.http.expect("the mirror serves HTTP");
    (tmp, mirror, http)
}

/// Client and server sockets live in this one process: make room for both sides.
fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    assert!(
        lim.rlim_cur >= want,
        "this test needs {want} open files; the hard limit is {}: raise it (ulimit -Hn)",
        lim.rlim_max
    );
}

/// The status codes of every response in `bytes` (responses start with `HTTP/1.1 NNN`).
fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// Sends `request` (ignoring a write the server cut short) and reads until the server
/// closes: everything it answered, and whether it closed (`false`: still open at TIMEOUT).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (Vec<u8>, bool) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        wr // kept open: the server, not the client, must end the exchange
    });
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(TIMEOUT, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    writer.abort();
    (out, closed)
}

/// A normal client: `GET /` on a fresh connection, answered 200 before TIMEOUT.
async fn normal_page(addr: SocketAddr) {
    let (answer, closed) = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: pi.local\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(closed, "the normal client got no complete answer");
    assert_eq!(
        statuses(&answer),
        vec![200],
        "{}",
        String::from_utf8_lossy(&answer[..answer.len().min(300)])
    );
}

/// A connection that sends an endless request head one byte every `pause`, until the
/// server closes it. Returns whether it was closed (by the server) before `TIMEOUT`.
async fn slow_head(addr: SocketAddr, pause: Duration, connected: Arc<AtomicUsize>) -> bool {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return true; // refused: closed by the server, in effect
    };
    connected.fetch_add(1, Ordering::SeqCst);
    let (mut rd, mut wr) = stream.into_split();
    let head = b"GET / HTTP/1.1\r\nHost: pi.local\r\n"
        .iter()
        .copied()
        .chain(
            b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
                .iter()
                .copied()
                .cycle(),
        );
    let drip = async move {
        for byte in head {
            if wr.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(pause).await;
        }
    };
    let mut buf = [0u8; 1024];
    let closed = async move {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // e.g. a 408 before the close
            }
        }
    };
    tokio::time::timeout(TIMEOUT, async {
        tokio::select! {
            _ = closed => {}
            _ = drip => {}
        }
    })
    .await
    .is_ok()
}

/// (a) Slowloris: 200 connections dripping their heads. A normal client is served while
/// they are all still connected, and the server closes every one of them (its header
/// timeout), which the attacker observes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_block_normal_clients_and_is_cut_off() {
    const ATTACKERS: usize = 200;
    let (_tmp, _mirror, addr) = gateway().await;
    let connected = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let attack: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let (connected, closed) = (connected.clone(), closed.clone());
            tokio::spawn(async move {
                let was_closed = slow_head(addr, Duration::from_secs(2), connected).await;
                if was_closed {
                    closed.fetch_add(1, Ordering::SeqCst);
                }
                was_closed
            })
        })
        .collect();
    wait_until("every attacker to connect", || {
        let n = connected.load(Ordering::SeqCst);
        async move { (n == ATTACKERS).then_some(()) }
    })
    .await;

    for _ in 0..3 {
        normal_page(addr).await;
    }
    let closed_when_served = closed.load(Ordering::SeqCst);
    assert_eq!(
        closed_when_served, 0,
        "the normal client was served only after slow connections were dropped"
    );

    for a in attack {
        assert!(
            a.await.unwrap(),
            "a slow connection was still open after {TIMEOUT:?}: no header timeout?"
        );
    }
    eprintln!(
        "{ATTACKERS} slowloris connections all closed by the server {:?} after the attack \
         began (header timeout {HEADER_TIMEOUT:?})",
        started.elapsed()
    );
    normal_page(addr).await;
}

/// (b) Idle connections (from five addresses) filling every slot and 100 more beyond them,
/// with the attacker opening a new idle connection each time one is shed. A normal client is still
/// served (at the cap the stalest connection is shed to make room, and idle ones time out),
/// and the server closes the idle connections it accepted.
///
/// The connections are opened in small batches: a burst of a thousand connects overflows
/// the kernel's SYN and accept queues, and the kernel then drops connections without
/// telling the client, whose socket stays silent forever. Those are counted, not failures:
/// the server never saw them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_do_not_starve_normal_clients() {
    const EXTRA: usize = 100;
    const BATCH: usize = 50;
    let (_tmp, _mirror, addr) = gateway().await;
    let opened = Arc::new(AtomicUsize::new(0));
    let shed = Arc::new(AtomicUsize::new(0));
    let silent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    while attackers.len() < MAX_CONNECTIONS + EXTRA {
        for _ in 0..BATCH {
            let (opened, shed, silent, stop) =
                (opened.clone(), shed.clone(), silent.clone(), stop.clone());
            let n = attackers.len();
            attackers.push(tokio::spawn(async move {
                // An idle connection; when the server sheds it, open another (at most 3).
                // From five loopback addresses: one address may hold only its share.
                let from = std::net::Ipv4Addr::new(127, 0, 0, 2 + (n % 5) as u8);
                for _ in 0..3 {
                    let Ok(mut s) = connect_from(from, addr).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    opened.fetch_add(1, Ordering::SeqCst);
                    let mut buf = [0u8; 64];
                    match tokio::time::timeout(TIMEOUT, s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => shed.fetch_add(1, Ordering::SeqCst),
                        Ok(Ok(n)) => panic!("an idle connection was sent {n} bytes"),
                        Err(_) => silent.fetch_add(1, Ordering::SeqCst),
                    };
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
            }));
        }
        let want = attackers.len();
        wait_until("a batch of idle connections to open", || {
            let n = opened.load(Ordering::SeqCst);
            async move { (n >= want).then_some(()) }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await; // let the server accept them
    }

    // Every slot is taken and 100 connections wait behind them: this one too.
    normal_page(addr).await;
    let shed_when_served = shed.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    // The server closes the idle connections it holds (its header timeout).
    wait_until("the server to close a full cap of idle connections", || {
        let n = shed.load(Ordering::SeqCst);
        async move { (n >= MAX_CONNECTIONS).then_some(()) }
    })
    .await;
    for a in &attackers {
        a.abort();
    }
    for a in attackers {
        if let Err(e) = a.await {
            assert!(e.is_cancelled(), "an attacker failed: {e}");
        }
    }
    eprintln!(
        "{} idle connections opened, {} closed by the server, {} dropped by the kernel; \
         the normal client was served after {shed_when_served} had been shed",
        opened.load(Ordering::SeqCst),
        shed.load(Ordering::SeqCst),
        silent.load(Ordering::SeqCst),
    );
    normal_page(addr).await;
}

/// (c) Malformed and oversized requests: each gets a clean 4xx (or its valid part a 200)
/// and a close, never a hang; the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_or_a_close() {
    let (_tmp, _mirror, addr) = gateway().await;
    let big_header = {
        let mut r = b"GET / HTTP/1.1\r\nHost: pi.local\r\nX-Big: ".to_vec();
        r.resize(r.len() + 10 * 1024 * 1024, b'a');
        r.extend_from_slice(b"\r\n\r\n");
        r
    };
    let big_line = {
        let mut r = b"GET /".to_vec();
        r.resize(r.len() + 10 * 1024 * 1024, b'a');
        r.extend_from_slice(b" HTTP/1.1\r\nHost: pi.local\r\n\r\n");
        r
    };
    let many_headers: Vec<u8> = {
        let mut r = b"GET / HTTP/1.1\r\nHost: pi.local\r\n".to_vec();
        for i in 0..5000 {
            r.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        r.extend_from_slice(b"\r\n");
        r
    };
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "a body on GET, then a second request",
            b"GET / HTTP/1.1\r\nHost: pi.local\r\nContent-Length: 5\r\n\r\nhello\
              GET / HTTP/1.1\r\nHost: pi.local\r\nConnection: close\r\n\r\n"
                .to_vec(),
            &[200, 200],
        ),
        (
            "a chunked body on GET that never ends",
            b"GET / HTTP/1.1\r\nHost: pi.local\r\nTransfer-Encoding: chunked\r\n\r\n\
              ffffffff\r\naaaa"
                .to_vec(),
            &[200],
        ),
        ("a 10 MB header line", big_header, &[431]),
        ("a 10 MB request line", big_line, &[414, 431, 400]),
        ("5000 headers", many_headers, &[431, 400]),
        (
            "pipelined garbage after a good request",
            b"GET / HTTP/1.1\r\nHost: pi.local\r\n\r\n\x00\xff\xfegarbage\r\n\r\n".to_vec(),
            &[200, 400],
        ),
        ("garbage alone", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), &[400]),
        (
            "a NUL in the request line",
            b"GET /a\x00b HTTP/1.1\r\nHost: pi.local\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "an encoded .. in the path",
            b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: pi.local\r\nConnection: close\r\n\r\n"
                .to_vec(),
            &[400],
        ),
        (
            "a conflicting Content-Length",
            b"GET / HTTP/1.1\r\nHost: pi.local\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
                .to_vec(),
            &[400],
        ),
        (
            "an absurd Range",
            b"GET / HTTP/1.1\r\nHost: pi.local\r\nRange: bytes=0-18446744073709551615\r\nConnection: close\r\n\r\n"
                .to_vec(),
            &[200],
        ),
        (
            "a method the gateway does not serve",
            b"DELETE / HTTP/1.1\r\nHost: pi.local\r\nConnection: close\r\n\r\n".to_vec(),
            &[405],
        ),
    ];
    for (what, request, allowed) in cases {
        let (answer, closed) = exchange(addr, &request).await;
        assert!(closed, "{what}: the server neither answered nor closed");
        let got = statuses(&answer);
        // A response may be lost to a reset when the server closes with unread input;
        // whatever did arrive must be exactly the expected prefix.
        assert!(
            allowed.len() >= got.len() && got.iter().all(|s| allowed.contains(s)),
            "{what}: got {got:?}, expected some of {allowed:?}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        );
        assert!(
            got.iter().all(|s| *s == 200 || (400..500).contains(s)),
            "{what}: {got:?}"
        );
        eprintln!("{what}: {got:?}, then closed");
        normal_page(addr).await;
    }
    // The head limit the server enforces is what it says.
    let mut just_under =
        b"GET / HTTP/1.1\r\nHost: pi.local\r\nConnection: close\r\nX-Pad: ".to_vec();
    just_under.resize(MAX_HEAD_BYTES / 2, b'p');
    just_under.extend_from_slice(b"\r\n\r\n");
    let (answer, _) = exchange(addr, &just_under).await;
    assert_eq!(
        statuses(&answer),
        vec![200],
        "a head under the limit is served"
    );
}

/// A mirror holding a complete site with a `big`-byte file at `/data/big.bin`.
async fn mirror_with_big_file(big: usize) -> (Pair, Key) {
    raise_fd_limit(4 * MAX_CONNECTIONS as u64 + 1024);
    let pair = Pair::start().await;
    make_site(&pair.site_dir, big);
    let site = publish(&pair.laptop, &pair.site_dir, None).await;
    pair.laptop
        .inner
        .append(Command::Mirror {
            key: site.key,
            alias: None,
        })
        .await
        .unwrap();
    let url = format!(
        "{}/{}/data/big.bin",
        http_base(&pair.mirror),
        site.key.to_hex()
    );
    wait_until("the big file to be served", || {
        let url = url.clone();
        async move {
            let (status, _, body) = http_get(&url).await;
            (status == 200 && body.len() == big).then_some(())
        }
    })
    .await;
    (pair, site.key)
}

/// A connection from the loopback address `from`.
async fn connect_from(from: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from.into(), 0))?;
    sock.connect(to).await
}

/// A client bound to `from` with a tiny receive buffer that sends `request` and then never
/// reads. The stream is returned so the caller keeps it open.
async fn stalled_reader(
    from: std::net::Ipv4Addr,
    to: SocketAddr,
    request: &[u8],
) -> std::io::Result<TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.set_recv_buffer_size(1024)?; // the kernel rounds it up to its minimum (~2 KiB)
    sock.bind(SocketAddr::new(from.into(), 0))?;
    let mut s = sock.connect(to).await?;
    s.write_all(request).await?;
    Ok(s)
}

/// Item 10: 1,100 clients (from five addresses, 220 each) request a 4 MiB file with a tiny
/// receive window and never read. The gateway must not stop accepting: a normal client gets
/// the whole file within seconds, and the gateway holds no more than its cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_do_not_starve_the_gateway() {
    const STALLED: usize = 1100;
    const BIG: usize = 4 << 20;
    let (pair, key) = mirror_with_big_file(BIG).await;
    let addr = pair.mirror.http.unwrap();
    let request = format!(
        "GET /{}/data/big.bin HTTP/1.1\r\nHost: pi.local\r\n\r\n",
        key.to_hex()
    );
    let started = Instant::now();
    let mut held = Vec::new();
    for batch in 0..STALLED / 50 {
        let conns = (0..50).map(|i| {
            let from = std::net::Ipv4Addr::new(127, 0, 0, 2 + ((batch * 50 + i) % 5) as u8);
            stalled_reader(from, addr, request.as_bytes())
        });
        // A connection the kernel dropped from a full queue is the client's loss only.
        held.extend(futures::future::join_all(conns).await.into_iter().flatten());
    }
    eprintln!(
        "{} of {STALLED} stalled readers connected and sent their request in {:?}",
        held.len(),
        started.elapsed()
    );
    assert!(
        held.len() > MAX_CONNECTIONS,
        "the attack must exceed the cap"
    );
    // Let the server take them all and fill their windows.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let url = format!("http://{addr}/{}/data/big.bin", key.to_hex());
    let t = Instant::now();
    let served = tokio::time::timeout(Duration::from_secs(20), http_get(&url)).await;
    let took = t.elapsed();
    let (status, _, body) = served.expect("a normal client was not served within 20 s");
    assert_eq!(status, 200);
    assert_eq!(body.len(), BIG);
    eprintln!(
        "with {} stalled readers held, a normal client got 4 MiB in {took:?}",
        held.len()
    );
    assert!(
        took < Duration::from_secs(10),
        "a normal client took {took:?} to be served"
    );
    let metrics = http_get(&format!("http://{addr}/metrics")).await.2;
    let metrics = String::from_utf8_lossy(&metrics);
    let open: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dat_mirror_http_connections_open "))
        .and_then(|v| v.parse().ok())
        .expect("metrics name the open connections");
    assert!(open <= MAX_CONNECTIONS, "{open} connections open");
    for l in metrics.lines().filter(|l| l.contains("shed_total{")) {
        eprintln!("{l}");
    }
    drop(held);
    pair.laptop.shutdown().await;
    pair.mirror.shutdown().await;
}

/// Item 10: a reader that stops mid-file is cut off at the write deadline (and its unsent
/// bytes dropped), while a reader that keeps going is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_is_cut_off_at_the_write_deadline() {
    use dat_mirror::mirror::http::{self, GatewayConfig, Limits};
    const BIG: usize = 4 << 20;
    let (pair, key) = mirror_with_big_file(BIG).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let write_timeout = Duration::from_secs(1);
    let _gw = tokio::spawn(http::serve(
        pair.mirror.inner.clone(),
        listener,
        GatewayConfig {
            limits: Limits {
                write_timeout,
                ..Limits::default()
            },
            ..GatewayConfig::default()
        },
    ));
    let request = format!(
        "GET /{}/data/big.bin HTTP/1.1\r\nHost: pi.local\r\n\r\n",
        key.to_hex()
    );
    let mut s = stalled_reader(std::net::Ipv4Addr::LOCALHOST, addr, request.as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(write_timeout * 4).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(TIMEOUT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled connection was never closed");
    assert!(
        got < BIG,
        "the whole file arrived: the connection was not cut"
    );
    eprintln!("a reader that stopped got {got} bytes before the cut");
    // A normal reader of the same file, on the same gateway, gets all of it.
    let (status, _, body) = http_get(&format!("http://{addr}/{}/data/big.bin", key.to_hex())).await;
    assert_eq!((status, body.len()), (200, BIG));
    pair.laptop.shutdown().await;
    pair.mirror.shutdown().await;
}
