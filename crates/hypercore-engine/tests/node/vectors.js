// Prints JSON test vectors made by Node hypercore 11 / corestore 7 / hyperdrive 13 for
// crates/hypercore-engine's interop tests (tests/node_vectors.rs). Deterministic: every key
// pair comes from a fixed seed. Buffers are hex strings. Nothing here touches the network:
// cores live in temporary folders (removed at exit).
const os = require('os')
const fs = require('fs')
const path = require('path')
const b4a = require('b4a')
const crypto = require('hypercore-crypto')
const Hypercore = require('hypercore')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const caps = require('hypercore/lib/caps')
const Verifier = require('hypercore/lib/verifier')
const multisig = require('hypercore/lib/multisig')
const { MerkleTree } = require('hypercore/lib/merkle-tree')

const hex = (b) => (b ? b4a.toString(b, 'hex') : null)
const seed = (n) => b4a.alloc(32, n)
const kp = (n) => crypto.keyPair(seed(n))
const node = (n) => ({ index: n.index, size: n.size, hash: hex(n.hash) })
const nodes = (list) => list.map(node)

function manifestJson(m) {
  if (!m) return null
  return {
    version: m.version,
    allowPatch: !!m.allowPatch,
    quorum: m.quorum,
    signers: m.signers.map((s) => ({ namespace: hex(s.namespace), publicKey: hex(s.publicKey) })),
    prologue: m.prologue ? { hash: hex(m.prologue.hash), length: m.prologue.length } : null,
    linked: m.linked ? m.linked.map(hex) : null,
    userData: m.userData ? hex(m.userData) : null
  }
}

function proofJson(p) {
  return {
    fork: p.fork,
    block: p.block ? { index: p.block.index, value: hex(p.block.value), nodes: nodes(p.block.nodes) } : null,
    hash: p.hash ? { index: p.hash.index, nodes: nodes(p.hash.nodes) } : null,
    seek: p.seek ? { bytes: p.seek.bytes, nodes: nodes(p.seek.nodes) } : null,
    upgrade: p.upgrade
      ? {
          start: p.upgrade.start,
          length: p.upgrade.length,
          nodes: nodes(p.upgrade.nodes),
          additionalNodes: nodes(p.upgrade.additionalNodes),
          signature: hex(p.upgrade.signature)
        }
      : null,
    manifest: manifestJson(p.manifest)
  }
}

function blocks(n) {
  const out = []
  for (let i = 0; i < n; i++) out.push(b4a.from('block ' + i + ' ' + 'x'.repeat(i * 7)))
  return out
}

async function proofsFor(core, requests) {
  const out = []
  for (const req of requests) {
    const rx = core.state.storage.read()
    let proof = null
    try {
      const p = MerkleTree.proof(core.state, rx, {
        block: req.block || null,
        hash: req.hash || null,
        seek: req.seek ? { ...req.seek } : null,
        upgrade: req.upgrade ? { ...req.upgrade } : null
      })
      rx.tryFlush()
      proof = await (await p).settle()
    } catch (err) {
      out.push({ request: { ...req, manifest: !!req.manifest }, proof: null, error: err.code || String(err) })
      continue
    }
    if (proof.block) proof.block.value = await core.get(proof.block.index)
    if (req.manifest && !core.core.compat) proof.manifest = core.core.header.manifest
    out.push({ request: { ...req, manifest: !!req.manifest }, proof: proofJson(proof) })
  }
  return out
}

function requests(n) {
  const mid = 5
  return [
    { block: { index: 3, nodes: 0 }, upgrade: { start: 0, length: mid }, manifest: true },
    { upgrade: { start: mid, length: n - mid } },
    { block: { index: 7, nodes: 2 }, upgrade: { start: 0, length: n } },
    { block: { index: 9, nodes: 0 } },
    { block: { index: 10, nodes: 3 } },
    { hash: { index: 5, nodes: 1 } },
    { hash: { index: 8, nodes: 0 } },
    { upgrade: { start: 0, length: 3 } },
    { block: { index: n - 1, nodes: 4 } },
    { block: { index: n - 1, nodes: 0 } },
    { block: { index: 2, nodes: 1 }, upgrade: { start: 4, length: 6 } }
  ]
}

async function coreVectors(core, kpn, n) {
  for (const b of blocks(n)) await core.append(b)
  const tree = {
    length: core.length,
    byteLength: core.byteLength,
    fork: core.fork,
    treeHash: hex(await core.treeHash()),
    signature: hex(core.core.state.signature)
  }
  return {
    seed: kpn,
    key: hex(core.key),
    discoveryKey: hex(core.discoveryKey),
    compat: b4a.equals(core.key, kp(kpn).publicKey),
    manifest: manifestJson(core.manifest),
    blocks: blocks(n).map(hex),
    tree,
    proofs: await proofsFor(core, requests(n))
  }
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hc-engine-vectors-'))
  const out = { keyPairs: [], hashes: {}, signables: [], manifests: [], multisig: [] }
  try {
    for (const n of [1, 2, 3, 4]) {
      const k = kp(n)
      out.keyPairs.push({
        seed: hex(seed(n)),
        publicKey: hex(k.publicKey),
        secretKey: hex(k.secretKey),
        discoveryKey: hex(crypto.discoveryKey(k.publicKey))
      })
    }
    // hashes
    const a = { index: 0, size: 5, hash: crypto.data(b4a.from('hello')) }
    const b = { index: 2, size: 5, hash: crypto.data(b4a.from('world')) }
    const p = { index: 1, size: 10, hash: crypto.parent(a, b) }
    const c2 = { index: 4, size: 1, hash: crypto.data(b4a.from('!')) }
    out.hashes = {
      leafHello: hex(a.hash),
      leafEmpty: hex(crypto.data(b4a.alloc(0))),
      parent: hex(p.hash),
      tree: hex(crypto.tree([p, c2])),
      treeNodes: nodes([p, c2]),
      namespaceTree: hex(caps.MANIFEST && crypto.namespace('hypercore', 6)[0]),
      defaultNamespace: hex(caps.DEFAULT_NAMESPACE),
      manifestNamespace: hex(caps.MANIFEST)
    }
    // signables
    const th = crypto.tree([p, c2])
    const mh = crypto.hash(b4a.from('some manifest'))
    out.signables.push({
      manifestHash: hex(mh),
      treeHash: hex(th),
      length: 3,
      fork: 1,
      signable: hex(caps.treeSignable(mh, th, 3, 1)),
      compat: hex(caps.treeSignableCompat(th, 3, 1, false)),
      compatLegacy: hex(caps.treeSignableCompat(th, 3, 1, true))
    })
    // manifests
    const k1 = kp(1)
    const k2 = kp(2)
    const k3 = kp(3)
    const inputs = [
      { name: 'default-v1', m: Verifier.defaultSignerManifest(k1.publicKey) },
      { name: 'v0-single', m: { version: 0, signers: [{ publicKey: k1.publicKey }] } },
      { name: 'v0-multi', m: { version: 0, quorum: 2, signers: [k1, k2, k3].map((k) => ({ publicKey: k.publicKey })) } },
      { name: 'v0-prologue', m: { version: 0, quorum: 0, signers: [], prologue: { hash: mh, length: 0 } } },
      { name: 'v1-multi-patch', m: { version: 1, quorum: 2, allowPatch: true, signers: [k1, k2, k3].map((k) => ({ publicKey: k.publicKey })) } },
      { name: 'v1-prologue', m: { version: 1, signers: [{ publicKey: k1.publicKey }], prologue: { hash: mh, length: 4 } } },
      { name: 'v1-namespace', m: { version: 1, signers: [{ publicKey: k2.publicKey, namespace: mh }] } },
      { name: 'v2-userdata-linked', m: { version: 2, signers: [{ publicKey: k1.publicKey }], userData: b4a.from('hi there'), linked: [mh, th] } },
      { name: 'v2-plain', m: { version: 2, signers: [{ publicKey: k3.publicKey }] } }
    ]
    for (const { name, m } of inputs) {
      const man = Verifier.createManifest(m)
      out.manifests.push({
        name,
        manifest: manifestJson(man),
        encoded: hex(Verifier.encodeManifest(man)),
        hash: hex(Verifier.manifestHash(man)),
        key: hex(Hypercore.key(man)),
        discoveryKey: hex(crypto.discoveryKey(Hypercore.key(man))),
        blobsKey: man.version >= 1 ? hex(Hyperdrive.getContentKey(man, Hypercore.key(man))) : null,
        blobsManifest: man.version >= 1 ? manifestJson(Verifier.createManifest(Hyperdrive.getContentManifest(man, Hypercore.key(man)))) : null
      })
    }
    // multisig: 2 of 3 over a tree made of blocks(4)
    {
      const man = Verifier.createManifest({ version: 1, quorum: 2, signers: [k1, k2, k3].map((k) => ({ publicKey: k.publicKey })) })
      const v = new Verifier(Verifier.manifestHash(man), man)
      const ref = new Hypercore(path.join(tmp, 'ms-ref'), { keyPair: kp(9) })
      await ref.ready()
      for (const x of blocks(4)) await ref.append(x)
      const treeHash = await ref.treeHash()
      const batch = { length: 4, fork: 0, hash: () => treeHash, signable: (ns) => caps.treeSignable(ns, treeHash, 4, 0) }
      const sig = (k, i) => ({ signer: i, signature: crypto.sign(caps.treeSignable(Verifier.manifestHash(man), treeHash, 4, 0), k.secretKey), patch: 0, nodes: null })
      const cases = [
        { name: 'signers-0-2', inputs: [sig(k1, 0), sig(k3, 2)] },
        { name: 'signers-2-1', inputs: [sig(k3, 2), sig(k2, 1)] },
        { name: 'one-only', inputs: [sig(k1, 0)] },
        { name: 'same-twice', inputs: [sig(k1, 0), sig(k1, 0)] },
        { name: 'wrong-index', inputs: [sig(k1, 1), sig(k3, 2)] },
        { name: 'all-three', inputs: [sig(k1, 0), sig(k2, 1), sig(k3, 2)] }
      ]
      for (const cs of cases) {
        const s = v.assemble(cs.inputs)
        out.multisig.push({ name: cs.name, manifest: manifestJson(man), treeHash: hex(treeHash), length: 4, fork: 0, signature: hex(s), valid: v.verify(batch, s) })
      }
      await ref.close()
    }
    // a compat core (hypercore 11 with compat: true: key = public key)
    {
      const core = new Hypercore(path.join(tmp, 'compat'), { keyPair: kp(5), compat: true })
      await core.ready()
      out.compatCore = await coreVectors(core, 5, 13)
      await core.close()
    }
    // a manifest-keyed core made by corestore 7
    {
      const store = new Corestore(path.join(tmp, 'store'))
      const core = store.get({ keyPair: kp(6) })
      await core.ready()
      out.manifestCore = await coreVectors(core, 6, 13)
      await store.close()
    }
    // hyperdrive 13 on corestore 7: db key and blobs key
    {
      const store = new Corestore(path.join(tmp, 'drive'), { primaryKey: seed(7), unsafe: true })
      const drive = new Hyperdrive(store)
      await drive.ready()
      await drive.put('/hello.txt', b4a.from('hello'))
      await drive.put('/big.bin', b4a.alloc(200 * 1024, 7))
      const everything = async (core) => {
        const proofs = []
        for (let i = 0; i < core.length; i++) {
          const req = i === 0 ? { block: { index: 0, nodes: 0 }, upgrade: { start: 0, length: core.length } } : { block: { index: i, nodes: MerkleTree.maxMissingNodes(2 * i, core.length) } }
          proofs.push(...(await proofsFor(core, [req])))
        }
        return { length: core.length, blocks: await Promise.all([...Array(core.length).keys()].map(async (i) => hex(await core.get(i)))), proofs }
      }
      out.drive = {
        key: hex(drive.key),
        manifest: manifestJson(drive.core.manifest),
        blobsKey: hex(drive.blobs.core.key),
        blobsManifest: manifestJson(drive.blobs.core.manifest),
        db: await everything(drive.core),
        blobs: await everything(drive.blobs.core)
      }
      await drive.close()
      await store.close()
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  process.stdout.write(JSON.stringify(out, null, 1) + '\n')
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
