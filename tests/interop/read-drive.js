// Reads a drive that dat-mirror wrote, straight from dat-mirror's data folder, with Node's
// hypercore ecosystem:
//
//   node read-drive.js DATA_DIR DB_KEY_HEX VERSION...
//
// For each VERSION (a db core length; the drive as it was then, via checkout) it lists and
// reads every file three ways:
//   1. hypercore@10.31.12 + hyperbee + hyperblobs, the way hyperdrive does (files sub-encoding)
//   2. the same with the newest hypercore 10 (10.38.2)
//   3. hyperdrive 11 itself, on corestore 6 (the two cores copied into corestore's layout)
// and prints one JSON object: { versions, readers: { name: { version: [lines] } },
// verified: { db, blobs }, checks: [...] }. Lines are `/path\tsha256\tx|-` or `/path\t-> target`.
//
// `verified`: each core is also replicated, with Node's own replication protocol, from a
// hypercore opened on dat-mirror's files to an empty hypercore that knows only the key; every
// block arrives verified against the key (Merkle proofs + the signature dat-mirror made).
//
// Everything works on copies: hypercore 10 rewrites headers when it opens a core.
'use strict'

const fs = require('fs')
const path = require('path')
const b4a = require('b4a')
const Hypercore = require('hypercore')
const Hypercore1038 = require('hypercore-10-38')
const Hyperbee = require('hyperbee')
const Hyperblobs = require('hyperblobs')
const Hyperdrive = require('hyperdrive')
const Corestore = require('corestore')
const SubEncoder = require('sub-encoder')
const { VERSIONS, entryLine, tmpdir, copyDir, datMirrorCoreDir, corestoreCoreDir } = require('./lib')

const checks = []
function check (ok, what) {
  if (!ok) throw new Error('check failed: ' + what)
  checks.push(what)
}

// 1 and 2: hyperbee + hyperblobs on a hypercore implementation.
async function readRaw (HypercoreImpl, dbDir, blobsDir, versions, label) {
  const core = new HypercoreImpl(dbDir)
  const blobsCore = new HypercoreImpl(blobsDir)
  await core.ready()
  await blobsCore.ready()
  const bee = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: 'json' })
  await bee.ready()
  const header = await bee.getHeader()
  check(header.protocol === 'hyperbee', label + ': header protocol is hyperbee')
  check(b4a.equals(header.metadata.contentFeed, blobsCore.key), label + ': contentFeed is the blobs key')
  const blobs = new Hyperblobs(blobsCore)
  const keyEncoding = new SubEncoder('files', 'utf-8')
  const out = {}
  for (const v of versions) {
    const view = bee.checkout(v)
    const lines = []
    for await (const { key, value } of view.createReadStream({ gt: '/', lt: '0' }, { keyEncoding })) {
      const got = await view.get(key, { keyEncoding })
      if (JSON.stringify(got.value) !== JSON.stringify(value)) throw new Error(label + ': get != stream for ' + key)
      const data = value.blob ? await blobs.get(value.blob) : null
      if (value.blob && data.length !== value.blob.byteLength) throw new Error(label + ': short read of ' + key)
      lines.push(entryLine(key, value, data))
    }
    out[v] = lines
    await view.close()
  }
  const info = { dbKey: core.key, blobsKey: blobsCore.key, length: core.length }
  await bee.close()
  await blobsCore.close()
  return { out, info }
}

// 3: hyperdrive 11 on corestore 6.
async function readHyperdrive (dbDir, blobsDir, info, versions) {
  const store = tmpdir('corestore')
  copyDir(dbDir, corestoreCoreDir(store, info.dbKey))
  copyDir(blobsDir, corestoreCoreDir(store, info.blobsKey))
  const drive = new Hyperdrive(new Corestore(store), info.dbKey)
  await drive.ready()
  check(b4a.equals(drive.contentKey, info.blobsKey), 'hyperdrive: contentKey is the blobs key')
  check(drive.version === info.length, 'hyperdrive: version is the db length')
  const out = {}
  for (const v of versions) {
    const view = drive.checkout(v)
    await view.ready()
    const lines = []
    for await (const { key, value } of view.list('/')) {
      const entry = await view.entry(key)
      if (JSON.stringify(entry.value) !== JSON.stringify(value)) throw new Error('hyperdrive: entry != list for ' + key)
      const data = value.blob ? await view.get(key) : null
      lines.push(entryLine(key, value, data))
    }
    const top = []
    for await (const name of view.readdir('/')) top.push(name)
    check(top.length > 0, 'hyperdrive v' + v + ': readdir / = ' + top.join(' '))
    out[v] = lines
    await view.close()
  }
  await drive.close()
  fs.rmSync(store, { recursive: true, force: true })
  return out
}

// Node-to-Node replication of dat-mirror's core into an empty core: verifies every block.
async function verifyByReplication (dir, key) {
  const source = new Hypercore(dir)
  await source.ready()
  const emptyDir = tmpdir('replica')
  const replica = new Hypercore(emptyDir, key)
  await replica.ready()
  const a = source.replicate(true)
  const b = replica.replicate(false)
  a.pipe(b).pipe(a)
  await replica.update({ wait: true })
  check(replica.length === source.length, 'replica of ' + b4a.toString(key, 'hex').slice(0, 8) + ' learnt the signed length ' + source.length)
  // A block that does not verify is never stored: the download would wait for it forever.
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error('replication of ' + dir + ' did not complete: a block failed verification?')), 60000)
  })
  await Promise.race([replica.download({ start: 0, end: source.length }).done(), timeout])
  clearTimeout(timer)
  for (let i = 0; i < source.length; i++) {
    const [x, y] = await Promise.all([source.get(i), replica.get(i, { wait: false })])
    if (!y || !b4a.equals(x, y)) throw new Error('replicated block ' + i + ' differs')
  }
  a.destroy()
  b.destroy()
  await replica.close()
  await source.close()
  fs.rmSync(emptyDir, { recursive: true, force: true })
  return true
}

async function main () {
  const [dataDir, dbKeyHex, ...vs] = process.argv.slice(2)
  if (!dataDir || !dbKeyHex || vs.length === 0) {
    console.error('usage: node read-drive.js DATA_DIR DB_KEY_HEX VERSION...')
    process.exit(2)
  }
  const versions = vs.map(Number)
  const work = tmpdir('read')
  const dbDir = path.join(work, 'db')
  copyDir(datMirrorCoreDir(dataDir, b4a.from(dbKeyHex, 'hex')), dbDir)

  // The blobs key is in the db header (a compat-key drive); find it with hyperbee.
  const probe = new Hyperbee(new Hypercore(dbDir), { keyEncoding: 'utf-8', valueEncoding: 'json' })
  await probe.ready()
  const header = await probe.getHeader()
  await probe.close()
  const blobsKey = header.metadata.contentFeed
  const blobsDir = path.join(work, 'blobs')
  copyDir(datMirrorCoreDir(dataDir, blobsKey), blobsDir)

  const readers = {}
  const fresh = (name) => {
    const d = path.join(work, name)
    copyDir(dbDir, d + '-db')
    copyDir(blobsDir, d + '-blobs')
    return [d + '-db', d + '-blobs']
  }
  const raw = await readRaw(Hypercore, ...fresh('a'), versions, 'hypercore ' + VERSIONS.hypercore)
  readers[`hypercore@${VERSIONS.hypercore}+hyperbee@${VERSIONS.hyperbee}+hyperblobs@${VERSIONS.hyperblobs}`] = raw.out
  const raw38 = await readRaw(Hypercore1038, ...fresh('b'), versions, 'hypercore ' + VERSIONS['hypercore-10-38'])
  readers[`hypercore@${VERSIONS['hypercore-10-38']}+hyperbee@${VERSIONS.hyperbee}+hyperblobs@${VERSIONS.hyperblobs}`] = raw38.out
  readers[`hyperdrive@${VERSIONS.hyperdrive}+corestore@${VERSIONS.corestore}`] = await readHyperdrive(...fresh('c'), raw.info, versions)

  const [vdb, vblobs] = fresh('d')
  const verified = {
    db: await verifyByReplication(vdb, raw.info.dbKey),
    blobs: await verifyByReplication(vblobs, raw.info.blobsKey)
  }
  fs.rmSync(work, { recursive: true, force: true })
  process.stdout.write(JSON.stringify({ versions, readers, verified, checks, packages: VERSIONS }) + '\n')
}

// An await that can never finish lets Node exit quietly with status 0: fail unless main ends.
process.exitCode = 1
main().then(() => { process.exitCode = 0 }, e => { console.error(e); process.exit(1) })
