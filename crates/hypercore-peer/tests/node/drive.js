//! Node side of crates/hypercore-peer/tests: a hyperdrive writer or reader on hyperswarm over a
//! local HyperDHT testnet. Run with the working directory set to `v11` (hyperdrive 11,
//! corestore 6, hypercore 10) or `v13` (hyperdrive 13, corestore 7, hypercore 11); the
//! packages are loaded from there.
//!
//! `node ../drive.js ROLE BOOTSTRAP[,BOOTSTRAP] DIR [KEY_HEX] [OPTIONS_JSON]`
//! - `write`: makes a drive in DIR with the files of OPTIONS.set (`small` or `mix`), joins its
//!   discovery key (OPTIONS.join: "server", "client" or "both"), prints {event:"made", key,
//!   blobsKey} before joining (with OPTIONS.deferJoin, only after a first stdin line) and
//!   {event:"ready", key, blobsKey, version, files}; then takes JSON commands on stdin:
//!   {cmd:"put", path, size, seed} → {event:"put", path, version, dbLength, blobsLength}.
//! - `read`: a fresh reader of KEY in DIR, joins as a client, reads every file, prints
//!   {event:"files", files, ms, bytes, peers, version, dbLength, streamErrors}; then
//!   {cmd:"wait", path} → {event:"got", path, sha256} once that file appears (live update).
//! Files are described as {path: {len, sha256}}. Nothing but 127.0.0.1 is contacted unless
//! OPTIONS.host (the DHT's bind address) and the bootstrap name another (namespace) address.
'use strict'

const { createRequire } = require('module')
const path = require('path')
const crypto = require('crypto')
const readline = require('readline')
const req = createRequire(path.join(process.cwd(), 'package.json'))
const Corestore = req('corestore')
const Hyperdrive = req('hyperdrive')
const Hyperswarm = req('hyperswarm')
const DHT = req('hyperdht')
const b4a = req('b4a')

const [role, bootstrapArg, dir, keyHex, optsArg] = process.argv.slice(2)
const opts = optsArg ? JSON.parse(optsArg) : {}
const bootstrap = bootstrapArg.split(',')

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function content(size, seed) {
  const buf = b4a.alloc(size)
  let x = (seed * 2654435761 + 12345) >>> 0
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    buf[i] = (x >>> 16) & 0xff
  }
  return buf
}

function sha(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex')
}

function fileSet(name) {
  const files = []
  if (name === 'mix') {
    // the bench mix: 1,400 small, 48 medium, 4 large files, ~100 MiB
    for (let i = 0; i < 1400; i++) files.push([`/small/${i % 20}/f${i}.html`, 1024 + ((i * 7919) % 7168), i])
    for (let i = 0; i < 48; i++) files.push([`/medium/m${i}.jpg`, 600 * 1024 + ((i * 104729) % (800 * 1024)), 10000 + i])
    for (let i = 0; i < 4; i++) files.push([`/large/l${i}.mp4`, 11 * 1048576 + i * 65536 + 1234, 20000 + i])
  } else {
    files.push(['/index.html', 2000, 1], ['/empty.txt', 0, 2], ['/css/site.css', 70000, 3])
    files.push(['/img/big.bin', 300 * 1024 + 17, 4], ['/a/b/c/deep.txt', 10, 5])
  }
  return files
}

async function makeSwarm() {
  // loopback by default; OPTIONS.host / OPTIONS.firewalled for peers in network namespaces
  // (e.g. behind a NAT, where firewalled: true makes them hole punch)
  const dht = new DHT({ bootstrap, host: opts.host || '127.0.0.1', firewalled: opts.firewalled ?? false })
  return new Hyperswarm({ dht })
}

async function write() {
  const store = new Corestore(dir)
  const drive = new Hyperdrive(store)
  await drive.ready()
  const files = {}
  for (const [p, size, seed] of fileSet(opts.set || 'small')) {
    const buf = content(size, seed)
    await drive.put(p, buf)
    files[p] = { len: size, sha256: sha(buf) }
  }
  const blobs = await drive.getBlobs()
  out({ event: 'made', key: b4a.toString(drive.key, 'hex'), blobsKey: b4a.toString(blobs.core.key, 'hex') })
  const rl = readline.createInterface({ input: process.stdin })
  if (opts.deferJoin) await new Promise((resolve) => rl.once('line', resolve))
  const swarm = await makeSwarm()
  swarm.on('connection', (c) => {
    c.on('error', () => {})
    store.replicate(c)
  })
  const join = opts.join || 'server'
  swarm.join(drive.discoveryKey, { server: join !== 'client', client: join !== 'server' })
  await swarm.flush()
  out({
    event: 'ready',
    key: b4a.toString(drive.key, 'hex'),
    blobsKey: b4a.toString(blobs.core.key, 'hex'),
    version: drive.version,
    dbLength: drive.core.length,
    blobsLength: blobs.core.length,
    files
  })
  commands(async (cmd) => {
    if (cmd.cmd === 'put') {
      const buf = content(cmd.size, cmd.seed)
      await drive.put(cmd.path, buf)
      out({ event: 'put', path: cmd.path, sha256: sha(buf), version: drive.version, dbLength: drive.core.length, blobsLength: blobs.core.length })
    } else if (cmd.cmd === 'peers') {
      out({ event: 'peers', count: swarm.connections.size })
    }
  }, rl, async () => { await swarm.destroy(); await drive.close(); process.exit(0) })
}

async function read() {
  const store = new Corestore(dir)
  const drive = new Hyperdrive(store, b4a.from(keyHex, 'hex'))
  await drive.ready()
  const swarm = await makeSwarm()
  let peers = 0
  const streamErrors = []
  swarm.on('connection', (c) => {
    peers++
    c.on('error', () => {})
    const s = store.replicate(c)
    s.on('error', (err) => streamErrors.push(err.message))
  })
  const t0 = performance.now()
  const done = drive.findingPeers()
  swarm.join(drive.discoveryKey, { server: false, client: true })
  swarm.flush().then(done, done)
  await drive.core.update({ wait: true })
  const files = {}
  let bytes = 0
  const entries = []
  for await (const e of drive.list('/')) entries.push(e)
  await Promise.all(entries.map(async (e) => {
    const buf = (await drive.get(e.key, { wait: true })) || b4a.alloc(0)
    bytes += buf.byteLength
    files[e.key] = { len: buf.byteLength, sha256: sha(buf) }
  }))
  const ms = performance.now() - t0
  out({ event: 'files', files, ms, bytes, peers, version: drive.version, dbLength: drive.core.length, streamErrors })
  commands(async (cmd) => {
    if (cmd.cmd === 'wait') {
      for (;;) {
        const buf = await drive.get(cmd.path, { wait: true }).catch(() => null)
        if (buf) {
          out({ event: 'got', path: cmd.path, sha256: sha(buf), version: drive.version, peers })
          return
        }
        await new Promise((resolve) => drive.core.once('append', resolve))
      }
    }
  }, readline.createInterface({ input: process.stdin }), async () => { await swarm.destroy(); await drive.close(); process.exit(0) })
}

function commands(onCmd, rl, onEnd) {
  rl.on('line', (line) => {
    onCmd(JSON.parse(line)).catch((err) => out({ event: 'error', message: err.message }))
  })
  rl.on('close', onEnd)
}

const main = role === 'write' ? write : read
main().catch((err) => {
  console.error(err)
  process.exit(1)
})
