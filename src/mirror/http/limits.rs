//! Connection limits of the gateway, so slow or stalled clients cannot starve the others.
//!
//! - Every accepted connection is registered with the time it last moved a byte
//!   ([`Tracked`] wraps the socket and records reads, writes and writes that wait).
//! - `accept()` never waits for a free slot: at the global cap ([`Limits::max_connections`])
//!   or the per-address cap ([`Limits::max_per_address`]; IPv6 by /64) the connection that
//!   has gone longest without progress is shed (closed with a reset, freeing its kernel
//!   buffers at once) and the newcomer is served.
//! - A sweeper closes connections whose write has made no progress for
//!   [`Limits::write_timeout`] (a client that stopped reading) and connections that moved
//!   nothing for [`Limits::idle_timeout`] (idle keep-alive, or a request that never comes).
//!
//! hyper's own `header_read_timeout` still bounds slowly dripped request heads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::access::address_group;
use super::metrics::{HttpCounters, Shed};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most connections from one address (IPv6: one /64) at once.
pub const MAX_PER_ADDRESS: usize = 256;
/// A client must send a request's headers within this long.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A response write that makes no progress for this long ends the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection that moves no byte for this long (and has no write waiting) is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The gateway's connection limits (defaults: the constants above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_address: usize,
    pub header_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            max_per_address: MAX_PER_ADDRESS,
            header_timeout: HEADER_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// What one connection has done lately, shared by its socket wrapper and the registry.
#[derive(Debug)]
pub struct Progress {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte read or written.
    last_ms: AtomicU64,
    /// A write is waiting for the client to read.
    write_waiting: AtomicBool,
}

impl Progress {
    fn new(epoch: Instant) -> Progress {
        let p = Progress {
            epoch,
            last_ms: AtomicU64::new(0),
            write_waiting: AtomicBool::new(false),
        };
        p.touch();
        p
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last_ms(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }
}

struct Entry {
    group: IpAddr,
    progress: Arc<Progress>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    per_group: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        if let Some(n) = self.per_group.get_mut(&e.group) {
            *n -= 1;
            if *n == 0 {
                self.per_group.remove(&e.group);
            }
        }
        Some(e)
    }

    /// The connection (of `group`, or any) that has gone longest without progress.
    fn stalest(&self, group: Option<IpAddr>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, e)| group.is_none_or(|g| e.group == g))
            .min_by_key(|(id, e)| (e.progress.last_ms(), **id))
            .map(|(id, _)| *id)
    }
}

/// Every open connection of one gateway.
pub struct Registry {
    limits: Limits,
    epoch: Instant,
    table: Mutex<Table>,
    counters: Arc<HttpCounters>,
}

/// A registered connection: its progress record, the token that sheds it, and a guard that
/// unregisters it when the connection task ends.
pub struct Admitted {
    pub progress: Arc<Progress>,
    pub cancel: CancellationToken,
    pub guard: Registration,
}

/// Unregisters its connection on drop.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.registry.lock().remove(self.id).is_some() {
            self.registry.counters.connection_closed();
        }
    }
}

impl Registry {
    pub fn new(limits: Limits, counters: Arc<HttpCounters>) -> Arc<Registry> {
        Arc::new(Registry {
            limits,
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
            counters,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding this lock cannot leave the table inconsistent in a way
        // that matters more than stopping the gateway would.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection from `ip`, shedding the stalest connection of its
    /// address at the per-address cap, then the stalest of all at the global cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admitted {
        let group = address_group(ip);
        let mut t = self.lock();
        if t.per_group.get(&group).copied().unwrap_or(0) >= self.limits.max_per_address.max(1) {
            if let Some(victim) = t.stalest(Some(group)) {
                self.shed(&mut t, victim, Shed::PerAddress);
            }
        }
        while t.conns.len() >= self.limits.max_connections.max(1) {
            match t.stalest(None) {
                Some(victim) => self.shed(&mut t, victim, Shed::Capacity),
                None => break,
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let progress = Arc::new(Progress::new(self.epoch));
        let cancel = CancellationToken::new();
        t.conns.insert(
            id,
            Entry {
                group,
                progress: progress.clone(),
                cancel: cancel.clone(),
            },
        );
        *t.per_group.entry(group).or_insert(0) += 1;
        drop(t);
        self.counters.connection_opened();
        Admitted {
            progress,
            cancel,
            guard: Registration {
                registry: self.clone(),
                id,
            },
        }
    }

    fn shed(&self, t: &mut Table, id: u64, why: Shed) {
        if let Some(e) = t.remove(id) {
            e.cancel.cancel();
            self.counters.connection_closed();
            self.counters.shed(why);
        }
    }

    /// Sheds connections past their write or idle deadline; returns how many.
    pub fn sweep(&self) -> usize {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let write_ms = u64::try_from(self.limits.write_timeout.as_millis()).unwrap_or(u64::MAX);
        let idle_ms = u64::try_from(self.limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut t = self.lock();
        let overdue: Vec<(u64, Shed)> = t
            .conns
            .iter()
            .filter_map(|(id, e)| {
                let quiet = now.saturating_sub(e.progress.last_ms());
                if e.progress.write_waiting.load(Ordering::Relaxed) {
                    (quiet > write_ms).then_some((*id, Shed::WriteStalled))
                } else {
                    (quiet > idle_ms).then_some((*id, Shed::Idle))
                }
            })
            .collect();
        for (id, why) in &overdue {
            self.shed(&mut t, *id, *why);
        }
        overdue.len()
    }

    /// Runs [`Registry::sweep`] a few times per write/idle deadline until `stop`.
    pub async fn sweep_until(self: Arc<Self>, stop: CancellationToken) {
        let shortest = self.limits.write_timeout.min(self.limits.idle_timeout);
        let every = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => { self.sweep(); }
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }
}

/// A socket that records its progress (and counts the bytes it sends).
pub struct Tracked<S> {
    inner: S,
    progress: Arc<Progress>,
    counters: Arc<HttpCounters>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, progress: Arc<Progress>, counters: Arc<HttpCounters>) -> Self {
        Tracked {
            inner,
            progress,
            counters,
        }
    }

    fn wrote(&self, r: &Poll<std::io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) => {
                self.progress.write_waiting.store(false, Ordering::Relaxed);
                if *n > 0 {
                    self.progress.touch();
                    self.counters.sent(*n as u64);
                }
            }
            Poll::Ready(Err(_)) => {}
            Poll::Pending => self.progress.write_waiting.store(true, Ordering::Relaxed),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.progress.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Makes the coming close of socket `sock` a reset: its unsent bytes are dropped and the
/// kernel frees its buffers now, instead of probing a client that stopped reading for
/// minutes. `sock` must still be open (the caller holds the connection that owns it).
pub fn reset_on_close(sock: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this process owns, with a correctly sized option.
    unsafe {
        libc::setsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize, per: usize) -> Arc<Registry> {
        Registry::new(
            Limits {
                max_connections: max,
                max_per_address: per,
                write_timeout: Duration::from_millis(100),
                idle_timeout: Duration::from_millis(300),
                ..Limits::default()
            },
            Arc::new(HttpCounters::default()),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_stalest_connection_is_shed_at_the_global_cap() {
        let r = registry(3, 10);
        let a = r.admit(ip("10.0.0.1"));
        std::thread::sleep(Duration::from_millis(5));
        let b = r.admit(ip("10.0.0.2"));
        std::thread::sleep(Duration::from_millis(5));
        let c = r.admit(ip("10.0.0.3"));
        std::thread::sleep(Duration::from_millis(5));
        a.progress.touch(); // a moved a byte: b is now the stalest
        let d = r.admit(ip("10.0.0.4"));
        assert!(!a.cancel.is_cancelled());
        assert!(b.cancel.is_cancelled());
        assert!(!c.cancel.is_cancelled() && !d.cancel.is_cancelled());
        assert_eq!(r.open(), 3);
        drop(b.guard); // its task ends later: nothing is counted twice
        assert_eq!(r.open(), 3);
        drop(d.guard);
        assert_eq!(r.open(), 2);
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share() {
        let r = registry(100, 2);
        let a = r.admit(ip("10.0.0.1"));
        let other = r.admit(ip("10.0.0.9"));
        std::thread::sleep(Duration::from_millis(5));
        let b = r.admit(ip("10.0.0.1"));
        let c = r.admit(ip("::ffff:10.0.0.1"));
        assert!(a.cancel.is_cancelled(), "the stalest of that address goes");
        assert!(!b.cancel.is_cancelled() && !c.cancel.is_cancelled());
        assert!(!other.cancel.is_cancelled());
        // IPv6: one /64 is one address.
        let x = r.admit(ip("2001:db8::1"));
        let y = r.admit(ip("2001:db8::2"));
        let z = r.admit(ip("2001:db8::3"));
        assert!(x.cancel.is_cancelled() && !y.cancel.is_cancelled() && !z.cancel.is_cancelled());
    }

    #[test]
    fn stalled_writes_and_idle_connections_are_swept() {
        let r = registry(10, 10);
        let writer = r.admit(ip("10.0.0.1"));
        let idle = r.admit(ip("10.0.0.2"));
        let busy = r.admit(ip("10.0.0.3"));
        writer.progress.write_waiting.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(150));
        busy.progress.touch();
        assert_eq!(r.sweep(), 1);
        assert!(writer.cancel.is_cancelled(), "write deadline");
        assert!(!idle.cancel.is_cancelled(), "idle deadline not reached yet");
        std::thread::sleep(Duration::from_millis(200));
        busy.progress.touch();
        assert_eq!(r.sweep(), 1);
        assert!(idle.cancel.is_cancelled());
        assert!(!busy.cancel.is_cancelled());
    }
}
