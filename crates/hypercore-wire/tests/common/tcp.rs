//! Test helper: runs a session over a TCP socket to a Node peer, each frame prefixed with its
//! 3-byte little-endian length (the framed stream of `tests/node/framed.js`), and
//! the content of the test blocks (the same function as `blockValue` there).

use hypercore_wire::framing::{encode_frame, FrameDecoder, MAX_FRAME};
use hypercore_wire::session::{Event, Session};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Block `i`'s content: 10, 1000 or 65536 bytes of a pattern.
pub fn block_value(i: u64) -> Vec<u8> {
    let size = [10usize, 1000, 65536][(i % 3) as usize];
    (0..size)
        .map(|j| ((i * 31 + j as u64) & 0xff) as u8)
        .collect()
}

/// Runs the session over the socket until `done` or the deadline; returns the events.
pub fn drive(
    session: &mut Session,
    sock: &mut TcpStream,
    frames: &mpsc::Receiver<Vec<u8>>,
    deadline: Duration,
    done: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    drive_counting(session, sock, frames, deadline, done).0
}

/// [`drive`], also returning the most requests the session had in flight.
pub fn drive_counting(
    session: &mut Session,
    sock: &mut TcpStream,
    frames: &mpsc::Receiver<Vec<u8>>,
    deadline: Duration,
    mut done: impl FnMut(&[Event]) -> bool,
) -> (Vec<Event>, usize) {
    let start = Instant::now();
    let mut events = vec![];
    let mut max_inflight = 0;
    loop {
        max_inflight = max_inflight.max(session.inflight());
        while let Some(f) = session.poll_transmit() {
            let buf = encode_frame(&f).expect("frame fits");
            if sock.write_all(&buf).is_err() {
                return (events, max_inflight);
            }
        }
        while let Some(e) = session.poll_event() {
            events.push(e);
        }
        if done(&events) || start.elapsed() > deadline {
            return (events, max_inflight);
        }
        match frames.recv_timeout(Duration::from_millis(20)) {
            Ok(f) => {
                if let Err(reason) = session.handle_frame(&f) {
                    panic!("Rust session closed the connection: {reason}");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                while let Some(e) = session.poll_event() {
                    events.push(e);
                }
                return (events, max_inflight);
            }
        }
    }
}

pub fn reader_thread(sock: TcpStream) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sock = sock;
        let mut decoder = FrameDecoder::new(MAX_FRAME);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            decoder.push(buf.get(..n).unwrap_or_default());
            while let Ok(Some(frame)) = decoder.next_frame() {
                if tx.send(frame).is_err() {
                    return;
                }
            }
        }
    });
    rx
}
