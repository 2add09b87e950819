//! The hyperswarm bridge: the Node half of crates/hyperswarm-bridge.
//!
//! The daemon starts `node bridge.js` with one end of a socketpair as fd 3 and talks to it in
//! frames: `u32 LE length (type byte + payload)`, `u8 type`, payload (the frame table is in
//! ../src/frame.rs, the Rust half, which is the reference). This process joins and leaves
//! HyperDHT topics with Holepunch's hyperswarm on the daemon's request and hands every
//! connection's decrypted secret-stream messages (one message per DATA frame, exactly what
//! protomux writes and reads) and handshake facts to the daemon.
//!
//! Flow control: each connection has a byte window in each direction. This side stops reading
//! a peer (`pause()`) once it has sent the daemon a window's worth that the daemon has not
//! handed back (CREDIT); it hands credit back for the daemon's DATA once the peer's stream
//! accepted it (`write()` true, or on 'drain'). So a slow daemon or a slow peer never makes this
//! process buffer without bound.
//!
//! The process lives only as long as fd 3 is open: when the daemon dies or closes it, the swarm
//! is destroyed and the process exits. Diagnostics go to stderr (the daemon logs them).
'use strict'

const net = require('net')
const Hyperswarm = require('hyperswarm')
const DHT = require('hyperdht')
const b4a = require('b4a')

const MAX_MESSAGE = 256 * 256 * 256 - 1 // secret-stream's largest atomic message
const MAX_FRAME = 1 + 4 + MAX_MESSAGE
const MAX_REASON = 1024

// Daemon → bridge.
const INIT = 0x01
const JOIN = 0x02
const LEAVE = 0x03
const DATA = 0x04
const CLOSE = 0x05
const CREDIT = 0x06
// Bridge → daemon.
const READY = 0x81
const DONE = 0x82
const FAILED = 0x83
const OPEN = 0x84
const RDATA = 0x85
const RCLOSE = 0x86
const RCREDIT = 0x87
const FATAL = 0x88

const ctl = new net.Socket({ fd: 3, readable: true, writable: true })
let swarm = null
let windowBytes = 4 * 1024 * 1024
let nextConnId = 1
let exiting = false
const conns = new Map()

function log(...args) {
  console.error('[bridge]', ...args)
}

function u32(n) {
  const b = b4a.allocUnsafe(4)
  b.writeUInt32LE(n >>> 0, 0)
  return b
}

function text(s) {
  const b = b4a.from(String(s), 'utf8')
  return b.byteLength > MAX_REASON ? b.subarray(0, MAX_REASON) : b
}

function send(type, ...parts) {
  if (exiting && type !== FATAL) return
  let len = 1
  for (const p of parts) len += p.byteLength
  const head = b4a.allocUnsafe(5)
  head.writeUInt32LE(len, 0)
  head[4] = type
  ctl.write(b4a.concat([head, ...parts]))
}

// --- frames from the daemon -------------------------------------------------------------

let pending = []
let pendingBytes = 0

ctl.on('data', (chunk) => {
  pending.push(chunk)
  pendingBytes += chunk.byteLength
  if (pendingBytes < 5) return
  let buf = pending.length === 1 ? pending[0] : b4a.concat(pending)
  let off = 0
  while (buf.byteLength - off >= 5) {
    const len = buf.readUInt32LE(off)
    if (len < 1 || len > MAX_FRAME) return fatal(new Error('frame of ' + len + ' bytes from the daemon'))
    if (buf.byteLength - off < 4 + len) break
    const type = buf[off + 4]
    const payload = buf.subarray(off + 5, off + 4 + len)
    off += 4 + len
    try {
      onframe(type, payload)
    } catch (err) {
      return fatal(err)
    }
  }
  buf = buf.subarray(off)
  pending = buf.byteLength ? [buf] : []
  pendingBytes = buf.byteLength
})

ctl.on('end', () => shutdown('the daemon closed the control socket'))
ctl.on('close', () => shutdown('control socket closed'))
ctl.on('error', (err) => shutdown('control socket: ' + err.message))

function onframe(type, p) {
  switch (type) {
    case INIT:
      return init(JSON.parse(b4a.toString(p, 'utf8')))
    case JOIN:
      return join(p.readUInt32LE(0), p.subarray(4, 36), p[36])
    case LEAVE:
      return leave(p.readUInt32LE(0), p.subarray(4, 36))
    case DATA:
      return ondata(p.readUInt32LE(0), p.subarray(4))
    case CLOSE:
      return onclose(p.readUInt32LE(0), b4a.toString(p.subarray(4), 'utf8'))
    case CREDIT:
      return oncredit(p.readUInt32LE(0), p.readUInt32LE(4))
    default:
      throw new Error('unknown frame type ' + type)
  }
}

function init(opts) {
  if (swarm) throw new Error('INIT twice')
  if (!/^[0-9a-f]{64}$/.test(opts.seed)) throw new Error('INIT: seed must be 64 hex chars')
  windowBytes = opts.window >>> 0 || windowBytes
  const keyPair = DHT.keyPair(b4a.from(opts.seed, 'hex'))
  const dhtOpts = { keyPair }
  // With a bootstrap list the DHT contacts those nodes (and what they tell it) and nothing
  // else; without one hyperdht uses its public bootstrap nodes.
  if (Array.isArray(opts.bootstrap) && opts.bootstrap.length > 0) dhtOpts.bootstrap = opts.bootstrap
  if (opts.host) dhtOpts.host = opts.host
  if (opts.firewalled === false) dhtOpts.firewalled = false
  const dht = new DHT(dhtOpts)
  swarm = new Hyperswarm({ dht, keyPair })
  swarm.on('connection', onconnection)
  send(READY, keyPair.publicKey)
  log('ready', b4a.toString(keyPair.publicKey, 'hex'), opts.bootstrap && opts.bootstrap.length ? 'bootstrap ' + opts.bootstrap.join(',') : 'public bootstrap')
}

function needSwarm() {
  if (!swarm) throw new Error('frame before INIT')
}

function join(req, topic, flags) {
  needSwarm()
  if (topic.byteLength !== 32) throw new Error('JOIN: topic must be 32 bytes')
  const server = (flags & 1) !== 0
  const client = (flags & 2) !== 0
  // Copy: the frame buffer is reused.
  const t = b4a.from(topic)
  Promise.resolve()
    .then(() => swarm.join(t, { server, client }).flushed())
    .then(() => send(DONE, u32(req)), (err) => send(FAILED, u32(req), text(err.message)))
}

function leave(req, topic) {
  needSwarm()
  if (topic.byteLength !== 32) throw new Error('LEAVE: topic must be 32 bytes')
  const t = b4a.from(topic)
  Promise.resolve()
    .then(() => swarm.leave(t))
    .then(() => send(DONE, u32(req)), (err) => send(FAILED, u32(req), text(err.message)))
}

// --- connections ------------------------------------------------------------------------

async function onconnection(sock, info) {
  const id = nextConnId++
  const c = { id, sock, credit: windowBytes, owed: 0, flush: false, reason: null, open: false, paused: false, needDrain: false }
  conns.set(id, c)
  sock.on('error', (err) => {
    if (!c.reason) c.reason = err.message
  })
  sock.on('close', () => {
    conns.delete(id)
    if (c.open) send(RCLOSE, u32(id), text(c.reason || 'closed'))
  })
  if (!sock.handshakeHash) {
    const ok = await sock.opened
    if (!ok || sock.destroying || sock.destroyed || !conns.has(id)) return
  }
  const hh = sock.handshakeHash
  c.open = true
  send(OPEN, u32(id), b4a.from([sock.isInitiator ? 1 : 0]), sock.remotePublicKey, b4a.from([hh.byteLength]), hh)
  sock.on('data', (msg) => {
    send(RDATA, u32(id), msg)
    c.credit -= msg.byteLength
    if (c.credit <= 0 && !c.paused) {
      c.paused = true
      sock.pause()
    }
  })
  sock.on('drain', () => {
    c.needDrain = false
    returnCredit(c)
  })
}

function ondata(id, msg) {
  const c = conns.get(id)
  if (!c) return // closed meanwhile: the daemon learns it from RCLOSE
  if (c.sock.write(msg)) {
    returnCredit(c, msg.byteLength)
  } else {
    c.needDrain = true
    c.owed += msg.byteLength
  }
}

// Hands credit back once per turn of the event loop, not once per message.
function returnCredit(c, n = 0) {
  c.owed += n
  if (c.flush || c.owed === 0) return
  c.flush = true
  setImmediate(() => {
    c.flush = false
    if (c.owed === 0 || !conns.has(c.id)) return
    if (c.needDrain) return // 'drain' hands it back
    const n = c.owed
    c.owed = 0
    send(RCREDIT, u32(c.id), u32(n))
  })
}

function oncredit(id, n) {
  const c = conns.get(id)
  if (!c) return
  c.credit += n
  if (c.credit > 0 && c.paused) {
    c.paused = false
    c.sock.resume()
  }
}

function onclose(id, reason) {
  const c = conns.get(id)
  if (!c) return
  c.reason = 'closed by the daemon: ' + reason
  // Flush what the daemon sent, then end; destroy if the peer does not finish in time.
  c.sock.once('finish', () => c.sock.destroy())
  c.sock.end()
  setTimeout(() => c.sock.destroy(), 10000).unref()
}

// --- lifetime ---------------------------------------------------------------------------

function fatal(err) {
  log('fatal:', err && err.stack ? err.stack : err)
  send(FATAL, text(err && err.message ? err.message : String(err)))
  shutdown('fatal error', 1)
}

function shutdown(why, code = 0) {
  if (exiting) return
  exiting = true
  log('exiting:', why)
  const done = () => process.exit(code)
  setTimeout(done, 2000).unref()
  if (swarm) swarm.destroy().then(done, done)
  else done()
}

process.on('uncaughtException', fatal)
process.on('unhandledRejection', fatal)
