// Shared helpers of the interop scripts (Node side of tests/hyperdrive_interop.rs).
'use strict'

const fs = require('fs')
const os = require('os')
const path = require('path')
const crypto = require('crypto')

const Hypercore = require('hypercore')
const hcrypto = require('hypercore-crypto')
const b4a = require('b4a')

const VERSIONS = {
  hypercore: require('hypercore/package.json').version,
  'hypercore-10-38': require('hypercore-10-38/package.json').version,
  hyperbee: require('hyperbee/package.json').version,
  hyperblobs: require('hyperblobs/package.json').version,
  hyperdrive: require('hyperdrive/package.json').version,
  corestore: require('corestore/package.json').version
}

function sha256 (buf) {
  return crypto.createHash('sha256').update(buf).digest('hex')
}

// One line per file, the format the Rust test prints too:
//   /path <TAB> sha256 <TAB> x|-      a file (x: executable)
//   /path <TAB> -> target             a symlink
function entryLine (key, value, data) {
  if (value.linkname) return key + '\t-> ' + value.linkname
  if (!value.blob) return key + '\tNO-BLOB'
  return key + '\t' + sha256(data || b4a.alloc(0)) + '\t' + (value.executable ? 'x' : '-')
}

// The files of a local folder, as drive paths, sorted bytewise (the order of the B-tree).
function walk (root) {
  const out = []
  const visit = (dir, prefix) => {
    for (const name of fs.readdirSync(dir)) {
      const abs = path.join(dir, name)
      const p = prefix + '/' + name
      const st = fs.lstatSync(abs)
      if (st.isDirectory()) visit(abs, p)
      else if (st.isSymbolicLink()) out.push({ path: p, link: fs.readlinkSync(abs) })
      else if (st.isFile()) out.push({ path: p, abs, executable: (st.mode & 0o100) !== 0 })
    }
  }
  visit(root, '')
  out.sort((a, b) => b4a.compare(b4a.from(a.path), b4a.from(b.path)))
  return out
}

function tmpdir (prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'dat-mirror-interop-' + prefix + '-'))
}

function copyDir (src, dst) {
  fs.mkdirSync(dst, { recursive: true })
  for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dst, f))
}

// dat-mirror's data folder keeps each core in cores/<hex key>/ (files: oplog, tree,
// bitfield, data: the hypercore 10 disk layout). Corestore 6 keeps it in
// cores/<dk[0..2]>/<dk[2..4]>/<discovery key hex>/.
function datMirrorCoreDir (dataDir, key) {
  return path.join(dataDir, 'cores', b4a.toString(key, 'hex'))
}

function corestoreCoreDir (storeDir, key) {
  const id = b4a.toString(hcrypto.discoveryKey(key), 'hex')
  return path.join(storeDir, 'cores', id.slice(0, 2), id.slice(2, 4), id)
}

// Just enough of Corestore's interface for Hyperdrive 11 to write a drive, storing every core
// as plain hypercore 10 storage in dat-mirror's layout. (Corestore itself stores its own
// bookkeeping in each core's header `userData`, which hypercore 0.14 — the Rust crate — cannot
// decode; see README, "Limits".) Only `get` and `close` are used by a writing Hyperdrive.
class PlainStore {
  constructor (dataDir, HypercoreImpl = Hypercore) {
    this.dataDir = dataDir
    this.Hypercore = HypercoreImpl
    this.cores = new Map() // hex key -> the first core opened on it
    this.sessions = []
  }

  get (opts) {
    let key = opts.key ? b4a.from(opts.key) : null
    let keyPair = opts.keyPair || null
    if (!key) {
      // a new writable core ("db" or "<id>/blobs"): a fresh key pair, compat key = public key
      if (opts.manifest) throw new Error('PlainStore makes compat (non-manifest) cores only')
      keyPair = keyPair || hcrypto.keyPair()
      key = keyPair.publicKey
    }
    const id = b4a.toString(key, 'hex')
    const open = this.cores.get(id)
    if (open) { // one storage, many sessions (as corestore does)
      const s = open.session()
      this.sessions.push(s)
      return s
    }
    const core = new this.Hypercore(datMirrorCoreDir(this.dataDir, key), key, { keyPair })
    this.cores.set(id, core)
    return core
  }

  async close () {
    await Promise.all(this.sessions.map(s => s.close()))
    await Promise.all([...this.cores.values()].map(c => c.close()))
  }

  findingPeers () { return () => {} }
}

module.exports = {
  VERSIONS,
  sha256,
  entryLine,
  walk,
  tmpdir,
  copyDir,
  datMirrorCoreDir,
  corestoreCoreDir,
  PlainStore
}
