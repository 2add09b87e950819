// Node side of crates/hypercore-wire/tests/node_live.rs: a real hypercore 11 (on disk, in a
// temporary folder) replicating with the Rust session over plain TCP on 127.0.0.1.
//
// secret-stream is replaced by a framed, unencrypted stream (each protomux frame sent as a
// 3-byte little-endian length + the frame) that carries the facts secret-stream would provide:
// isInitiator and the handshake hash (given on the command line, shared with the Rust side).
// Everything above it is Node's own: Protomux, hypercore's replicator, its proofs and storage.
//
// usage: node live.js PORT IS_INITIATOR HANDSHAKE_HASH_HEX BLOCKS [CLEAR_START-CLEAR_END]
// (with a clear range the core drops those blocks: a sparse seeder)
// prints {"key": hex, "length": n} once the core is written, then connects to PORT.
// stdin commands: "append N" appends N blocks and prints {"length": n}.
'use strict'

const net = require('net')
const os = require('os')
const path = require('path')
const fs = require('fs')
const readline = require('readline')
const b4a = require('b4a')
const Protomux = require('protomux')
const Hypercore = require('hypercore')
const { FramedStream, blockValue } = require('./framed')

async function main () {
  const [port, isInitiator, hh, blocks, clear] = process.argv.slice(2)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hypercore-wire-live-'))
  const core = new Hypercore(dir)
  await core.ready()
  const batch = []
  for (let i = 0; i < Number(blocks); i++) batch.push(blockValue(i))
  await core.append(batch)
  if (clear) {
    const [start, end] = clear.split('-').map(Number)
    await core.clear(start, end)
  }
  console.log(JSON.stringify({ key: b4a.toString(core.key, 'hex'), length: core.length }))

  const socket = net.connect(Number(port), '127.0.0.1')
  const stream = new FramedStream(socket, isInitiator === 'true', b4a.from(hh, 'hex'))
  stream.on('error', () => {})
  const mux = new Protomux(stream)
  core.replicate(mux)

  const rl = readline.createInterface({ input: process.stdin })
  rl.on('line', async (line) => {
    const [cmd, n] = line.trim().split(' ')
    if (cmd === 'append') {
      const more = []
      for (let i = 0; i < Number(n); i++) more.push(blockValue(core.length + i))
      await core.append(more)
      console.log(JSON.stringify({ length: core.length }))
    }
  })
  const done = async () => {
    await core.close().catch(() => {})
    fs.rmSync(dir, { recursive: true, force: true })
    process.exit(0)
  }
  rl.on('close', done)
  socket.on('close', done)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
