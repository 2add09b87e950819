// Writes a compat-key drive with Node's hypercore ecosystem, on hypercore 10 storage, into
// dat-mirror's data folder layout (DATA_DIR/cores/<hex key>/), for dat-mirror to read:
//
//   node write-drive.js MODE DATA_DIR SRC_V1 SRC_V2
//
// MODE is
//   hyperbee    hypercore@10.31.12 + hyperbee + hyperblobs used directly, as hyperdrive uses
//               them (key "files" 0x00 "/path" via sub-encoder, JSON entries, blobs in 64 KiB
//               blocks, blobs key in the db header's contentFeed)
//   hyperdrive  hyperdrive 11 itself, on a minimal stand-in for corestore that keeps each core
//               as plain hypercore storage (corestore's own header userData is unreadable for
//               the Rust crate; see lib.js)
// and, to document what dat-mirror cannot open yet (see the README's limits):
//   hyperbee-10.38         as hyperbee, on hypercore@10.38.2 (its headers carry a v1 manifest)
//   hyperdrive-corestore   hyperdrive 11 on corestore 6 (DATA_DIR is the corestore)
//
// The drive first gets every file of SRC_V1 (with noise: a batch, an overwritten file, a
// file put and deleted again), then is changed into SRC_V2 (changed files put again, removed
// files deleted). Prints JSON { db, blobs, versions: [v1, v2], dbDir, blobsDir, mode, packages }.
'use strict'

const fs = require('fs')
const b4a = require('b4a')
const Hypercore = require('hypercore')
const Hypercore1038 = require('hypercore-10-38')
const Corestore = require('corestore')
const Hyperbee = require('hyperbee')
const Hyperblobs = require('hyperblobs')
const Hyperdrive = require('hyperdrive')
const SubEncoder = require('sub-encoder')
const hcrypto = require('hypercore-crypto')
const { VERSIONS, walk, sha256, datMirrorCoreDir, corestoreCoreDir, PlainStore } = require('./lib')

// The same operations on either writer.
class BeeWriter {
  constructor (dataDir, HypercoreImpl = Hypercore) {
    const dbKp = hcrypto.keyPair()
    const blobsKp = hcrypto.keyPair()
    this.dirs = [datMirrorCoreDir(dataDir, dbKp.publicKey), datMirrorCoreDir(dataDir, blobsKp.publicKey)]
    this.core = new HypercoreImpl(this.dirs[0], dbKp.publicKey, { keyPair: dbKp })
    this.blobsCore = new HypercoreImpl(this.dirs[1], blobsKp.publicKey, { keyPair: blobsKp })
    this.keyEncoding = new SubEncoder('files', 'utf-8')
  }

  async ready () {
    await this.core.ready()
    await this.blobsCore.ready()
    this.bee = new Hyperbee(this.core, {
      keyEncoding: 'utf-8',
      valueEncoding: 'json',
      metadata: { contentFeed: this.blobsCore.key }
    })
    await this.bee.ready()
    this.blobs = new Hyperblobs(this.blobsCore)
  }

  async _entry (f) {
    if (f.link !== undefined) return { executable: false, linkname: f.link, blob: null, metadata: null }
    const blob = await this.blobs.put(fs.readFileSync(f.abs))
    return { executable: f.executable, linkname: null, blob, metadata: null }
  }

  async put (f, target = this.bee) {
    await target.put(f.path, await this._entry(f), { keyEncoding: this.keyEncoding })
  }

  async del (p) { await this.bee.del(p, { keyEncoding: this.keyEncoding }) }

  async batch (files) {
    const b = this.bee.batch()
    for (const f of files) await this.put(f, b)
    await b.flush()
  }

  get version () { return this.core.length }
  get keys () { return { db: this.core.key, blobs: this.blobsCore.key } }
  async close () { await this.bee.close(); await this.blobsCore.close() }
}

class DriveWriter {
  constructor (dataDir, corestore = false) {
    this.dataDir = dataDir
    this.corestore = corestore
    this.drive = new Hyperdrive(corestore ? new Corestore(dataDir) : new PlainStore(dataDir))
  }

  get dirs () {
    const dir = this.corestore ? corestoreCoreDir : datMirrorCoreDir
    return [dir(this.dataDir, this.drive.key), dir(this.dataDir, this.drive.contentKey)]
  }

  async ready () {
    await this.drive.ready()
    if (!this.drive.db.core.core.compat) throw new Error('hyperdrive made a non-compat (manifest) drive')
  }

  async put (f, target = this.drive) {
    if (f.link !== undefined) await target.symlink(f.path, f.link)
    else await target.put(f.path, fs.readFileSync(f.abs), { executable: f.executable })
  }

  async del (p) { await this.drive.del(p) }

  async batch (files) {
    const b = this.drive.batch()
    for (const f of files) await this.put(f, b)
    await b.flush()
  }

  get version () { return this.drive.version }
  get keys () { return { db: this.drive.key, blobs: this.drive.contentKey } }
  async close () { await this.drive.close() }
}

function same (a, b) {
  if ((a.link === undefined) !== (b.link === undefined)) return false
  if (a.link !== undefined) return a.link === b.link
  return a.executable === b.executable && sha256(fs.readFileSync(a.abs)) === sha256(fs.readFileSync(b.abs))
}

async function main () {
  const [mode, dataDir, srcV1, srcV2] = process.argv.slice(2)
  const writers = {
    hyperbee: () => new BeeWriter(dataDir),
    'hyperbee-10.38': () => new BeeWriter(dataDir, Hypercore1038),
    hyperdrive: () => new DriveWriter(dataDir),
    'hyperdrive-corestore': () => new DriveWriter(dataDir, true)
  }
  if (!writers[mode] || !srcV2) {
    console.error('usage: node write-drive.js ' + Object.keys(writers).join('|') + ' DATA_DIR SRC_V1 SRC_V2')
    process.exit(2)
  }
  const w = writers[mode]()
  await w.ready()

  // Version 1: every file of SRC_V1, written in several ways.
  const v1 = walk(srcV1)
  const decoy = { path: '/zz-decoy.txt', abs: v1.find(f => f.abs).abs, executable: false }
  await w.put(decoy)
  const third = Math.max(1, Math.floor(v1.length / 3))
  await w.batch(v1.slice(0, third)) // one batch: non-final blocks of a batch carry partial indexes
  for (const f of v1.slice(third)) await w.put(f)
  await w.put(v1[0]) // overwrite with the same content: a new blob, the old one is garbage
  await w.del(decoy.path)
  const version1 = w.version

  // Version 2: the changes that turn SRC_V1 into SRC_V2.
  const v2 = walk(srcV2)
  const old = new Map(v1.map(f => [f.path, f]))
  for (const f of v2) {
    const o = old.get(f.path)
    if (!o || !same(o, f)) await w.put(f)
  }
  const now = new Set(v2.map(f => f.path))
  for (const f of v1) if (!now.has(f.path)) await w.del(f.path)
  const version2 = w.version

  const { db, blobs } = w.keys
  const [dbDir, blobsDir] = w.dirs
  await w.close()
  process.stdout.write(JSON.stringify({
    mode,
    db: b4a.toString(db, 'hex'),
    blobs: b4a.toString(blobs, 'hex'),
    versions: [version1, version2],
    dbDir,
    blobsDir,
    packages: VERSIONS
  }) + '\n')
}

// An await that can never finish lets Node exit quietly with status 0: fail unless main ends.
process.exitCode = 1
main().then(() => { process.exitCode = 0 }, e => { console.error(e); process.exit(1) })
