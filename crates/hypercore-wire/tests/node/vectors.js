// Node side of crates/hypercore-wire/tests/node_interop.rs.
//
// `node vectors.js gen`   prints JSON: hypercore messages encoded by hypercore 11's
//                         lib/messages (hex + Node's decoded view), protomux frames written by
//                         Node's protomux (hex + what they carry), capabilities and discovery keys.
// `node vectors.js check` reads JSON from stdin ({ messages: [{ name, hex }], frames: [hex] }) —
//                         bytes the Rust codecs wrote — and prints how Node decodes them and how
//                         Node re-encodes each decoded message.
'use strict'

const c = require('compact-encoding')
const b4a = require('b4a')
const Protomux = require('protomux')
const crypto = require('hypercore-crypto')
const m = require('hypercore/lib/messages')
const caps = require('hypercore/lib/caps')

const NAMES = ['sync', 'request', 'cancel', 'data', 'noData', 'want', 'unwant', 'bitfield', 'range', 'extension']

function norm (v) {
  if (v === null || v === undefined) return null
  if (b4a.isBuffer(v) || v instanceof Uint8Array) return b4a.toString(v, 'hex')
  if (v instanceof Uint32Array) return Array.from(v)
  if (Array.isArray(v)) return v.map(norm)
  if (typeof v === 'object') {
    const out = {}
    for (const k of Object.keys(v)) out[k] = norm(v[k])
    return out
  }
  return v
}

// Deterministic PRNG (mulberry32).
function prng (seed) {
  let a = seed >>> 0
  return function () {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const rnd = prng(11)
const pick = (arr) => arr[Math.floor(rnd() * arr.length)]
const bool = () => rnd() < 0.5
function num () {
  return pick([
    0, 1, 0xfc, 0xfd, 0xff, 0xffff, 0x10000, 0xffffffff, 0x100000000, 2 ** 40 + 7, 2 ** 53 - 1,
    Math.floor(rnd() * 300), Math.floor(rnd() * 70000), Math.floor(rnd() * 2 ** 33)
  ])
}
function bytes (n) {
  const b = b4a.alloc(n)
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256)
  return b
}
const b32 = () => bytes(32)
const node = () => ({ index: num(), size: num(), hash: b32() })
const nodes = () => Array.from({ length: pick([0, 1, 2, 5]) }, node)
const signer = () => ({ signature: 'ed25519', namespace: b32(), publicKey: b32() })

function manifest () {
  const version = pick([0, 1, 2])
  if (version === 0) {
    const kind = pick([0, 1, 2])
    if (kind === 0) return { version, hash: 'blake2b', allowPatch: false, quorum: 0, signers: [], prologue: { hash: b32(), length: 0 }, linked: null, userData: null }
    if (kind === 1) return { version, hash: 'blake2b', allowPatch: false, quorum: 1, signers: [signer()], prologue: null, linked: null, userData: null }
    return { version, hash: 'blake2b', allowPatch: true, quorum: 2, signers: [signer(), signer(), signer()], prologue: null, linked: null, userData: null }
  }
  return {
    version,
    hash: 'blake2b',
    allowPatch: bool(),
    quorum: pick([0, 1, 2]),
    signers: Array.from({ length: pick([0, 1, 3]) }, signer),
    prologue: bool() ? { hash: b32(), length: num() } : null,
    linked: bool() ? Array.from({ length: pick([0, 1, 2]) }, b32) : null,
    userData: bool() ? bytes(pick([0, 3, 40])) : null
  }
}

const gens = {
  sync: () => ({ fork: num(), length: num(), remoteLength: num(), canUpgrade: bool(), uploading: bool(), downloading: bool(), hasManifest: bool(), allowPush: bool() }),
  request: () => ({
    id: num(),
    fork: num(),
    block: bool() ? { index: num(), nodes: num() } : null,
    hash: bool() ? { index: num(), nodes: num() } : null,
    seek: rnd() < 0.3 ? { bytes: num(), padding: num() } : null,
    upgrade: bool() ? { start: num(), length: num() } : null,
    manifest: bool(),
    priority: pick([0, 0, 1, 2, 300])
  }),
  cancel: () => ({ request: num() }),
  data: () => ({
    request: num(),
    fork: num(),
    block: bool() ? { index: num(), value: bytes(pick([0, 1, 100, 300, 70000])), nodes: nodes() } : null,
    hash: rnd() < 0.3 ? { index: num(), nodes: nodes() } : null,
    seek: rnd() < 0.3 ? { bytes: num(), nodes: nodes() } : null,
    upgrade: bool() ? { start: num(), length: num(), nodes: nodes(), additionalNodes: nodes(), signature: bool() ? bytes(64) : null } : null,
    manifest: rnd() < 0.4 ? manifest() : null
  }),
  noData: () => ({ request: num(), reason: pick([0, 1, 2, 7]) }),
  want: () => ({ start: num(), length: num(), any: bool() }),
  unwant: () => ({ start: num(), length: num(), any: bool() }),
  bitfield: () => ({ start: pick([0, 32, 1024, 2 ** 20, num()]), bitfield: Uint32Array.from({ length: pick([0, 1, 4, 33]) }, () => pick([0, 1, 0xffffffff, Math.floor(rnd() * 2 ** 32)])) }),
  range: () => ({ drop: bool(), start: num(), length: pick([0, 1, 1, 2, num()]) }),
  extension: () => ({ name: pick(['', 'a', 'hyperdrive-ext', 'ünïcødé']), message: bytes(pick([0, 1, 50])) })
}

function genMessages () {
  const out = []
  for (const name of NAMES) {
    for (let i = 0; i < 60; i++) {
      const msg = gens[name]()
      const buf = c.encode(m.wire[name], msg)
      out.push({ name, type: NAMES.indexOf(name), hex: b4a.toString(buf, 'hex'), decoded: norm(c.decode(m.wire[name], buf)) })
    }
  }
  return out
}

// A protomux over a stub stream: frames written are captured, frames fed in are decoded.
function stubMux (isInitiator) {
  const handlers = {}
  const frames = []
  const stream = {
    userData: null,
    isInitiator,
    destroyed: false,
    on (ev, fn) { handlers[ev] = fn },
    write (buf) { frames.push(b4a.from(buf)); return true },
    pause () {},
    resume () {},
    end () {},
    destroy (err) { this.destroyed = true; frames.push('destroyed: ' + (err && err.message)) }
  }
  const mux = new Protomux(stream)
  return { mux, frames, feed: (buf) => handlers.data(buf) }
}

function hypercoreChannel (mux, dk, events) {
  const tag = b4a.toString(dk, 'hex').slice(0, 8)
  return mux.createChannel({
    protocol: 'hypercore/alpha',
    aliases: ['hypercore'],
    id: dk,
    handshake: m.wire.handshake,
    messages: NAMES.map((name) => ({
      encoding: m.wire[name],
      onmessage: (msg) => events.push({ ev: 'message', channel: tag, name, msg: norm(msg) })
    })),
    onopen: (hs) => events.push({ ev: 'open', channel: tag, handshake: norm(hs) }),
    onclose: (isRemote) => events.push({ ev: 'close', channel: tag, isRemote })
  })
}

function genFrames () {
  const { mux, frames } = stubMux(true)
  const dk1 = crypto.discoveryKey(b4a.alloc(32, 1))
  const dk2 = crypto.discoveryKey(b4a.alloc(32, 2))
  const events = []
  const a = hypercoreChannel(mux, dk1, events)
  a.open({ seeks: true, capability: b4a.alloc(32, 0xaa) })
  a.messages[0].send({ fork: 0, length: 5, remoteLength: 0, canUpgrade: true, uploading: true, downloading: true, hasManifest: false, allowPush: false })
  mux.cork()
  const b = hypercoreChannel(mux, dk2, events)
  b.open({ seeks: false, capability: b4a.alloc(32, 0xbb) })
  a.messages[1].send({ id: 1, fork: 0, block: { index: 3, nodes: 2 }, hash: null, seek: null, upgrade: { start: 0, length: 5 }, manifest: true, priority: 0 })
  a.messages[8].send({ drop: false, start: 0, length: 5 })
  b.messages[0].send({ fork: 1, length: 300, remoteLength: 2, canUpgrade: false, uploading: true, downloading: false, hasManifest: true, allowPush: false })
  a.messages[9].send({ name: 'ext', message: b4a.from('hello') })
  mux.uncork()
  a.close()
  // a remote opens a channel nobody pairs: Node rejects it
  const { mux: mux2, frames: frames2, feed } = stubMux(false)
  void mux2
  const open = b4a.concat([b4a.from([0, 1, 1]), c.encode(c.string, 'hypercore/alpha'), c.encode(c.buffer, dk1), c.encode(m.wire.handshake, { seeks: true, capability: b4a.alloc(32, 0xcc) })])
  feed(open)
  return new Promise((resolve) => setImmediate(() => {
    resolve({ frames: frames.map((f) => b4a.toString(f, 'hex')), rejectFrames: frames2.map((f) => typeof f === 'string' ? f : b4a.toString(f, 'hex')), dk1: b4a.toString(dk1, 'hex'), dk2: b4a.toString(dk2, 'hex') })
  }))
}

function genCaps () {
  const out = []
  for (let i = 0; i < 8; i++) {
    const key = b32()
    const hh = bytes(pick([32, 64]))
    out.push({
      key: b4a.toString(key, 'hex'),
      handshakeHash: b4a.toString(hh, 'hex'),
      initiator: b4a.toString(caps.replicate(true, key, hh), 'hex'),
      responder: b4a.toString(caps.replicate(false, key, hh), 'hex'),
      discoveryKey: b4a.toString(crypto.discoveryKey(key), 'hex')
    })
  }
  return out
}

async function gen () {
  const out = { messages: genMessages(), ...(await genFrames()), caps: genCaps() }
  process.stdout.write(JSON.stringify(out))
}

async function check () {
  let input = ''
  for await (const chunk of process.stdin) input += chunk
  const req = JSON.parse(input)
  const messages = req.messages.map(({ name, hex }) => {
    try {
      const decoded = c.decode(m.wire[name], b4a.from(hex, 'hex'))
      return { decoded: norm(decoded), reencoded: b4a.toString(c.encode(m.wire[name], decoded), 'hex') }
    } catch (err) {
      return { error: err.message }
    }
  })
  const events = []
  const { mux, feed, frames } = stubMux(false)
  mux.pair({ protocol: 'hypercore/alpha' }, (id) => {
    const ch = hypercoreChannel(mux, id, events)
    ch.open({ seeks: true, capability: b4a.alloc(32, 0) })
  })
  for (const hex of req.frames) {
    feed(b4a.from(hex, 'hex'))
    await new Promise((resolve) => setImmediate(resolve))
  }
  const destroyed = frames.filter((f) => typeof f === 'string')
  process.stdout.write(JSON.stringify({ messages, events, destroyed }))
}

const mode = process.argv[2]
if (mode === 'gen') gen()
else if (mode === 'check') check()
else {
  console.error('usage: node vectors.js gen|check')
  process.exit(2)
}
