// The Node anchor of scripts/bench/replicate.sh: hyperdrive 13 on corestore 7 imports SITE
// (one put per file), then a second corestore replicates the drive disk to disk over an
// encrypted TCP loopback socket (corestore.replicate: Noise secret-stream), downloading every
// file. Prints `RESULT node_publish ...` and `RESULT node_replicate ...` lines.
//
//   NODE_PATH=crates/hypercore-engine/tests/node/node_modules node node-replicate.js SITE WORK
'use strict'
const fs = require('fs')
const path = require('path')
const net = require('net')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')

function walk (root, rel = '', out = []) {
  for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
    const r = rel ? rel + '/' + e.name : e.name
    if (e.isDirectory()) walk(root, r, out)
    else if (e.isFile()) out.push(r)
  }
  return out
}

async function main () {
  const [site, work] = process.argv.slice(2)
  const files = walk(site).sort()
  let bytes = 0
  const a = new Corestore(path.join(work, 'a'))
  const drive = new Hyperdrive(a)
  await drive.ready()
  let t = process.hrtime.bigint()
  for (const f of files) {
    const buf = fs.readFileSync(path.join(site, f))
    bytes += buf.length
    await drive.put('/' + f, buf)
  }
  const pub = Number(process.hrtime.bigint() - t) / 1e9
  console.log(`RESULT node_publish bytes=${bytes} secs=${pub.toFixed(3)} files=${files.length}`)

  const server = net.createServer(sock => { sock.pipe(a.replicate(false)).pipe(sock) })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  const b = new Corestore(path.join(work, 'b'))
  t = process.hrtime.bigint()
  const sock = net.connect(server.address().port, '127.0.0.1')
  sock.pipe(b.replicate(true)).pipe(sock)
  const copy = new Hyperdrive(b, drive.key)
  await copy.ready()
  await copy.core.update({ wait: true })
  const dl = copy.download('/')
  if (dl && typeof dl.done === 'function') await dl.done(); else await dl
  const blobs = await copy.getBlobs()
  const secs = Number(process.hrtime.bigint() - t) / 1e9
  const blocks = copy.core.length + blobs.core.length
  if (copy.core.contiguousLength !== copy.core.length || blobs.core.contiguousLength !== blobs.core.length) {
    throw new Error('download incomplete')
  }
  console.log(`RESULT node_replicate bytes=${bytes} secs=${secs.toFixed(3)} blocks=${blocks}`)
  sock.destroy()
  server.close()
  await copy.close(); await drive.close(); await a.close(); await b.close()
}

main().catch(e => { console.error(e); process.exit(1) })
