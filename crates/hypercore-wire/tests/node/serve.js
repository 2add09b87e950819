// Node side of crates/hypercore-wire/tests/node_serve.rs: a Node hypercore 11 *reader* fetching
// a core from the Rust session over plain TCP (framed, standing in for secret-stream; see
// live.js), verifying every proof with Node's own verifier.
//
// The Rust side has no storage engine yet, so its test store asks this process for proofs:
// a second, on-disk Node core (the writer) answers "prove <request hex>" lines with
// "proof-data <data hex>" | "proof-none" | "proof-error <message>", made exactly as Node's replicator makes them
// (MerkleTree.proof + block read + manifest). The reader never talks to the writer directly.
//
// usage: node serve.js PORT IS_INITIATOR HANDSHAKE_HASH_HEX BLOCKS
// prints "key <hex> <length>", then "read <n>" each time the reader has verified blocks 0..n
// ("fail <why>" if a block differs).
// stdin: "prove <hex>", "append N" (prints "length <n>").
'use strict'

const net = require('net')
const os = require('os')
const path = require('path')
const fs = require('fs')
const readline = require('readline')
const b4a = require('b4a')
const c = require('compact-encoding')
const Protomux = require('protomux')
const Hypercore = require('hypercore')
const m = require('hypercore/lib/messages')
const { MerkleTree } = require('hypercore/lib/merkle-tree')
const { FramedStream, blockValue } = require('./framed')

async function prove (writer, msg) {
  const core = writer.core
  if (msg.fork !== core.state.fork) return null
  if (msg.block && !core.bitfield.get(msg.block.index)) return null
  const batch = core.storage.read(core.state.fork)
  const block = msg.block ? batch.getBlock(msg.block.index) : null
  if (block) block.catch(() => {})
  const proof = await MerkleTree.proof(core.state, batch, msg)
  batch.tryFlush()
  const [p, value] = await Promise.all([proof.settle(), block])
  if (p.block) p.block.value = value
  return {
    request: msg.id,
    fork: msg.fork,
    block: p.block,
    hash: p.hash,
    seek: p.seek,
    upgrade: p.upgrade,
    manifest: msg.manifest && !core.compat ? core.header.manifest : null
  }
}

async function main () {
  const [port, isInitiator, hh, blocks] = process.argv.slice(2)
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hypercore-wire-serve-'))
  const writer = new Hypercore(path.join(tmp, 'writer'))
  await writer.ready()
  const batch = []
  for (let i = 0; i < Number(blocks); i++) batch.push(blockValue(i))
  await writer.append(batch)
  console.log('key ' + b4a.toString(writer.key, 'hex') + ' ' + writer.length)

  const reader = new Hypercore(path.join(tmp, 'reader'), writer.key)
  await reader.ready()
  const socket = net.connect(Number(port), '127.0.0.1')
  const stream = new FramedStream(socket, isInitiator === 'true', b4a.from(hh, 'hex'))
  stream.on('error', () => {})
  reader.replicate(new Protomux(stream))

  let verified = 0
  let reading = Promise.resolve()
  const readAll = () => { reading = reading.then(readMore); return reading }
  async function readMore () {
    while (verified < reader.length) {
      const v = await reader.get(verified)
      if (!b4a.equals(v, blockValue(verified))) {
        console.log('fail block ' + verified + ' differs')
        return
      }
      verified++
    }
    if (process.env.WIRE_DEBUG) console.error('stats ' + JSON.stringify(reader.replicator.stats))
    console.log('read ' + verified)
  }
  reader.on('append', () => { readAll().catch((err) => console.log('fail ' + err.message)) })
  reader.update({ wait: true }).then(() => readAll()).catch((err) => console.log('fail ' + err.message))

  let chain = Promise.resolve()
  const rl = readline.createInterface({ input: process.stdin })
  rl.on('line', (line) => {
    const [cmd, arg] = line.trim().split(' ')
    chain = chain.then(async () => {
      if (cmd === 'prove') {
        try {
          const msg = c.decode(m.wire.request, b4a.from(arg, 'hex'))
          const data = await prove(writer, msg)
          console.log(data ? 'proof-data ' + b4a.toString(c.encode(m.wire.data, data), 'hex') : 'proof-none')
        } catch (err) {
          console.log('proof-error ' + err.message.replace(/\s+/g, '_'))
        }
      } else if (cmd === 'append') {
        const more = []
        for (let i = 0; i < Number(arg); i++) more.push(blockValue(writer.length + i))
        await writer.append(more)
        console.log('length ' + writer.length)
      }
    })
  })
  const done = async () => {
    await reader.close().catch(() => {})
    await writer.close().catch(() => {})
    fs.rmSync(tmp, { recursive: true, force: true })
    process.exit(0)
  }
  rl.on('close', done)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
