//! A Node hypercore 11 *reader* fetches a core from the Rust session over TCP on 127.0.0.1
//! (framed stream standing in for secret-stream, see `tests/node/serve.js`) and verifies every
//! proof with Node's verifier: the serving half of the protocol (channel open, capability,
//! sync with canUpgrade/lengthAcked, range announcements, request queue, data with the v11
//! manifest) against Node. The Rust store has no Merkle tree of its own yet, so it obtains each
//! proof from a Node writer core in the same Node process; everything on the wire between the
//! reader and Rust goes through the Rust session.

mod common;

use common::node;
use common::tcp::{drive, reader_thread};
use hypercore_wire::session::{CoreOptions, Event, Limits, Session, SessionConfig};
use hypercore_wire::store::{Applied, CoreInfo, CoreStore, StoreError};
use hypercore_wire::{Data, Message, Request};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A store whose proofs come from the Node writer (line protocol on the child's stdin/stdout).
struct NodeProver {
    stdin: Arc<Mutex<ChildStdin>>,
    replies: Arc<Mutex<Receiver<String>>>,
    length: Arc<Mutex<u64>>,
    served: Arc<Mutex<u64>>,
}

impl CoreStore for NodeProver {
    fn info(&self) -> CoreInfo {
        let length = *self.length.lock().unwrap_or_else(|e| e.into_inner());
        CoreInfo {
            length,
            fork: 0,
            contiguous_length: length,
            has_manifest: true,
        }
    }
    fn has(&self, index: u64) -> bool {
        index < self.info().length
    }
    fn proof_for(&mut self, request: &Request) -> Result<Option<Data>, StoreError> {
        if std::env::var("WIRE_DEBUG").is_ok() {
            eprintln!("request {request:?}");
        }
        let hex = hex::encode(Message::Request(request.clone()).to_bytes());
        {
            let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
            writeln!(stdin, "prove {hex}").map_err(|e| StoreError::Storage(e.to_string()))?;
        }
        let line = self
            .replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        if std::env::var("WIRE_DEBUG").is_ok() {
            eprintln!("reply {}", &line[..line.len().min(60)]);
        }
        match line.split_once(' ') {
            Some(("proof-data", hex)) => {
                let bytes = hex::decode(hex).map_err(|e| StoreError::Storage(e.to_string()))?;
                match Message::decode(3, &bytes) {
                    Ok(Some(Message::Data(d))) => {
                        *self.served.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                        Ok(Some(*d))
                    }
                    other => Err(StoreError::Storage(format!("bad data: {other:?}"))),
                }
            }
            Some(("proof-error", why)) => Err(StoreError::Invalid(why.to_string())),
            _ => Ok(None),
        }
    }
    fn apply(&mut self, _: &Data) -> Result<Applied, StoreError> {
        Err(StoreError::Invalid("this store only serves".into()))
    }
}

fn serve_to_node(rust_is_initiator: bool) {
    if !node::ready() {
        return;
    }
    let hh = vec![if rust_is_initiator { 3u8 } else { 4u8 }; 64];
    let blocks = 200u64;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // The child's TMPDIR, removed when this test ends (the child is killed, not cleaned up).
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new("node")
        .env("TMPDIR", tmp.path())
        .arg("serve.js")
        .arg(port.to_string())
        .arg((!rust_is_initiator).to_string())
        .arg(hex::encode(&hh))
        .arg(blocks.to_string())
        .current_dir(node::node_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn node serve.js");
    let stdout = child.stdout.take().expect("stdout");
    let stdin = Arc::new(Mutex::new(child.stdin.take().expect("stdin")));
    let (proof_tx, proof_rx) = mpsc::channel();
    let (event_tx, event_rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let to_prover = line.starts_with("proof-");
            let sent = if to_prover {
                proof_tx.send(line)
            } else {
                event_tx.send(line)
            };
            if sent.is_err() {
                break;
            }
        }
    });
    let first = event_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("node printed its key");
    let mut parts = first.split(' ').skip(1);
    let key: [u8; 32] = hex::decode(parts.next().expect("key"))
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let length = Arc::new(Mutex::new(blocks));
    let served = Arc::new(Mutex::new(0u64));
    let store = NodeProver {
        stdin: stdin.clone(),
        replies: Arc::new(Mutex::new(proof_rx)),
        length: length.clone(),
        served: served.clone(),
    };

    let (mut sock, _) = listener.accept().expect("node connects");
    sock.set_nodelay(true).ok();
    let frames = reader_thread(sock.try_clone().expect("clone"));
    let mut session = Session::new(SessionConfig {
        push: false,
        is_initiator: rust_is_initiator,
        handshake_hash: hh,
        limits: Limits::default(),
    })
    .expect("session");
    session
        .add_core(key, Box::new(store), CoreOptions { download: false })
        .expect("add core");

    let read_up_to = |n: u64, rx: &Receiver<String>| -> bool {
        while let Ok(line) = rx.try_recv() {
            assert!(!line.starts_with("fail"), "Node reader: {line}");
            if line == format!("read {n}") {
                return true;
            }
        }
        false
    };
    let mut done = false;
    let events = drive(
        &mut session,
        &mut sock,
        &frames,
        Duration::from_secs(60),
        |_| {
            done = done || read_up_to(blocks, &event_rx);
            done
        },
    );
    assert!(
        done,
        "the Node reader did not verify {blocks} blocks: {events:?}"
    );
    let uploaded = events
        .iter()
        .filter(|e| matches!(e, Event::Uploaded { .. }))
        .count() as u64;
    assert_eq!(uploaded, blocks, "each block served once");

    // live: the writer grows, the Rust side announces it, the Node reader follows
    {
        let mut stdin = stdin.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(stdin, "append 25").expect("append");
    }
    let line = loop {
        let line = event_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("length");
        if line.starts_with("length ") {
            break line;
        }
    };
    assert_eq!(line, format!("length {}", blocks + 25));
    *length.lock().unwrap_or_else(|e| e.into_inner()) = blocks + 25;
    session.core_updated(&key);
    let mut done = false;
    drive(
        &mut session,
        &mut sock,
        &frames,
        Duration::from_secs(60),
        |_| {
            done = done || read_up_to(blocks + 25, &event_rx);
            done
        },
    );
    assert!(done, "the Node reader did not follow the append");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_node_hypercore_11_reader_verifies_every_block_served_by_a_rust_initiator() {
    serve_to_node(true);
}

#[test]
fn a_node_hypercore_11_reader_verifies_every_block_served_by_a_rust_responder() {
    serve_to_node(false);
}
