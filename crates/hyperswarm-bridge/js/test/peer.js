//! Test helper: a Node hyperswarm peer on a local testnet, the reference the Rust bridge is
//! checked against. `node peer.js MODE TOPIC_HEX BOOTSTRAP[,BOOTSTRAP] [BYTES]`, MODE one of
//! - `echo-server` / `echo-client`: join as server / client; on each connection send
//!   "hello from node", then echo every message back;
//! - `sink-server` / `sink-client`: count BYTES received, then report the time from the first
//!   byte to the last;
//! - `source-server` / `source-client`: send BYTES in 64 KiB messages, honouring backpressure;
//! - `stall-server` / `stall-client`: take the first message, then pause the stream for good
//!   (how much a paused Node reader buffers is the reference for the bridge's flow control).
//! Prints JSON lines on stdout: {event: "ready", publicKey}, {event: "joined"},
//! {event: "connection", remotePublicKey, handshakeHash, isInitiator}, {event: "received",
//! bytes, ms, mibps}, {event: "sent", bytes, ms}, {event: "closed"}. Exits when stdin closes.
'use strict'

const Hyperswarm = require('hyperswarm')
const DHT = require('hyperdht')
const b4a = require('b4a')

const [mode, topicHex, bootstrapArg, bytesArg] = process.argv.slice(2)
const [role, side] = mode.split('-')
const topic = b4a.from(topicHex, 'hex')
const bootstrap = bootstrapArg.split(',')
const total = Number(bytesArg || 0)
const CHUNK = 64 * 1024

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

async function main() {
  const dht = new DHT({ bootstrap, host: '127.0.0.1', firewalled: false })
  const swarm = new Hyperswarm({ dht })
  out({ event: 'ready', pid: process.pid, publicKey: b4a.toString(swarm.keyPair.publicKey, 'hex') })
  swarm.on('connection', (sock) => {
    sock.on('error', (err) => console.error('[peer] connection error:', err.message))
    sock.on('close', () => out({ event: 'closed' }))
    out({
      event: 'connection',
      remotePublicKey: b4a.toString(sock.remotePublicKey, 'hex'),
      handshakeHash: b4a.toString(sock.handshakeHash, 'hex'),
      isInitiator: sock.isInitiator
    })
    if (role === 'echo') {
      sock.write(b4a.from('hello from node'))
      sock.on('data', (m) => sock.write(m))
    } else if (role === 'sink') {
      let got = 0
      let first = 0
      sock.on('data', (m) => {
        if (got === 0) first = performance.now()
        got += m.byteLength
        if (got >= total) {
          const ms = performance.now() - first
          out({ event: 'received', bytes: got, ms, mibps: got / 1048576 / (ms / 1000) })
          sock.write(b4a.from('done'))
        }
      })
    } else if (role === 'stall') {
      sock.once('data', () => {
        sock.pause()
        out({ event: 'stalled' })
      })
    } else if (role === 'source') {
      const start = performance.now()
      let sent = 0
      const pump = () => {
        while (sent < total) {
          const n = Math.min(CHUNK, total - sent)
          const msg = b4a.alloc(n, sent & 0xff)
          sent += n
          if (!sock.write(msg)) return sock.once('drain', pump)
        }
        out({ event: 'sent', bytes: sent, ms: performance.now() - start })
      }
      pump()
    }
  })
  const discovery = swarm.join(topic, { server: side === 'server', client: side === 'client' })
  await discovery.flushed()
  out({ event: 'joined' })
  const stop = () => swarm.destroy().finally(() => process.exit(0))
  process.stdin.on('end', stop)
  process.stdin.on('close', stop)
  process.stdin.resume()
  process.on('SIGTERM', stop)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
