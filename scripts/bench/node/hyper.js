// Node side of scripts/bench/hyper-read.sh, idle-hyper.sh and replicate.sh's publish anchor:
// hyperdrive 13 on corestore 7 (hypercore 11, Agregore's stack), hyperswarm on a local HyperDHT
// testnet bound to 127.0.0.1 (`firewalled: false` on loopback). Nothing else is contacted.
//
//   node hyper.js testnet N              prints {"bootstrap":[...]}, runs until stdin closes
//   node hyper.js seed BOOTSTRAP SITE WORK
//       imports SITE into a new drive in WORK (localdrive.mirror), joins its discovery key as a
//       server, prints {"event":"ready","key":...}, serves until stdin closes
//   node hyper.js read BOOTSTRAP KEY WORK [SITE]
//       a fresh reader in WORK joins as a client and downloads the whole drive (every file);
//       prints `RESULT hyper_read bytes=.. secs=.. blocks=.. files=.. peers=..`; with SITE,
//       then checks every file byte-identical against it (outside the timed window)
//   node hyper.js publish SITE WORK
//       localdrive.mirror(drive): SITE into a new hyperdrive 13 in WORK; prints
//       `RESULT node_localdrive_mirror bytes=.. secs=.. files=..`
'use strict'
const fs = require('fs')
const path = require('path')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const Hyperswarm = require('hyperswarm')
const DHT = require('hyperdht')
const Localdrive = require('localdrive')
const b4a = require('b4a')

function swarmOn (bootstrap) {
  const dht = new DHT({ bootstrap: bootstrap.split(','), host: '127.0.0.1', firewalled: false })
  return new Hyperswarm({ dht })
}

function untilStdinEnds () {
  return new Promise((resolve) => {
    process.stdin.on('end', resolve)
    process.stdin.on('close', resolve)
    process.stdin.resume()
  })
}

async function testnet (n) {
  const createTestnet = require('hyperdht/testnet')
  const t = await createTestnet(Number(n || 3), { host: '127.0.0.1' })
  console.log(JSON.stringify({ bootstrap: t.bootstrap.map((b) => `${b.host}:${b.port}`) }))
  await untilStdinEnds()
  await t.destroy()
}

async function mirrorInto (site, drive) {
  const local = new Localdrive(site)
  const m = local.mirror(drive)
  await m.done()
  return m.count
}

async function seed (bootstrap, site, work) {
  const store = new Corestore(work)
  const drive = new Hyperdrive(store)
  await drive.ready()
  const t = process.hrtime.bigint()
  await mirrorInto(site, drive)
  const importSecs = Number(process.hrtime.bigint() - t) / 1e9
  const swarm = swarmOn(bootstrap)
  swarm.on('connection', (c) => { c.on('error', () => {}); store.replicate(c) })
  swarm.join(drive.discoveryKey, { server: true, client: false })
  await swarm.flush()
  console.log(JSON.stringify({ event: 'ready', key: b4a.toString(drive.key, 'hex'), importSecs, dbLength: drive.core.length }))
  await untilStdinEnds()
  await swarm.destroy()
  await drive.close()
}

async function read (bootstrap, key, work, site) {
  const store = new Corestore(work)
  const drive = new Hyperdrive(store, b4a.from(key, 'hex'))
  await drive.ready()
  const swarm = swarmOn(bootstrap)
  let peers = 0
  swarm.on('connection', (c) => { peers++; c.on('error', () => {}); store.replicate(c) })
  const t = process.hrtime.bigint()
  const done = drive.findingPeers()
  swarm.join(drive.discoveryKey, { server: false, client: true })
  swarm.flush().then(done, done)
  await drive.core.update({ wait: true })
  const dl = drive.download('/')
  if (dl && typeof dl.done === 'function') await dl.done(); else await dl
  const blobs = await drive.getBlobs()
  const secs = Number(process.hrtime.bigint() - t) / 1e9
  if (drive.core.contiguousLength !== drive.core.length || blobs.core.contiguousLength !== blobs.core.length) {
    throw new Error('download incomplete')
  }
  let bytes = 0
  let files = 0
  for await (const e of drive.list('/')) {
    files++
    bytes += e.value.blob ? e.value.blob.byteLength : 0
    if (site) {
      const got = (await drive.get(e.key)) || b4a.alloc(0)
      const want = fs.readFileSync(path.join(site, e.key))
      if (!b4a.equals(got, want)) throw new Error(`${e.key} differs from ${site}`)
    }
  }
  console.log(`RESULT hyper_read bytes=${bytes} secs=${secs.toFixed(3)} blocks=${drive.core.length + blobs.core.length} files=${files} peers=${peers} checked=${site ? 'yes' : 'no'}`)
  await swarm.destroy()
  await drive.close()
}

async function publish (site, work) {
  const store = new Corestore(work)
  const drive = new Hyperdrive(store)
  await drive.ready()
  let bytes = 0
  const t = process.hrtime.bigint()
  const count = await mirrorInto(site, drive)
  const secs = Number(process.hrtime.bigint() - t) / 1e9
  for await (const e of drive.list('/')) bytes += e.value.blob ? e.value.blob.byteLength : 0
  console.log(`RESULT node_localdrive_mirror bytes=${bytes} secs=${secs.toFixed(3)} files=${count.files ?? count.add}`)
  await drive.close()
}

const [role, ...args] = process.argv.slice(2)
const roles = { testnet, seed, read, publish }
if (!roles[role]) {
  console.error('usage: node hyper.js testnet|seed|read|publish ...')
  process.exit(2)
}
roles[role](...args).then(() => process.exit(0), (err) => { console.error(err); process.exit(1) })
