// Anchor for examples/bench.rs: Node hypercore 11 / corestore 7 appending the same-shaped
// ~100 MiB data set (4 x 16 MiB, 48 medium, 1,400 small files in 64 KiB blocks) and
// replicating it to a second corestore in the same process (replication streams piped
// in memory, no network). Usage: node bench.js DIR [LABEL]
const fs = require('fs')
const path = require('path')
const Corestore = require('corestore')

const BLOCK = 64 * 1024

function files() {
  let seed = 7n
  const out = []
  const bytes = (n) => {
    const b = Buffer.allocUnsafe(n)
    for (let i = 0; i < n; i++) {
      seed = (seed * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn
      b[i] = Number((seed >> 33n) & 0xffn)
    }
    return b
  }
  // generating 100 MiB with BigInt is slow: make one 1 MiB pool and slice it
  const pool = bytes(1 << 20)
  const take = (n, k) => {
    const b = Buffer.allocUnsafe(n)
    for (let o = 0; o < n; o += pool.length) pool.copy(b, o, (k * 4099) % 1000, Math.min(pool.length, n - o + (k * 4099) % 1000))
    return b
  }
  for (let i = 0; i < 4; i++) out.push(take(16 << 20, i))
  for (let i = 0; i < 48; i++) out.push(take(500 * 1024 + i * 3000, i + 4))
  for (let i = 0; i < 1400; i++) out.push(take(2000 + ((i * 37) % 9000), i + 52))
  return out
}

async function main() {
  const dir = process.argv[2]
  const label = process.argv[3] || dir
  fs.rmSync(dir, { recursive: true, force: true })
  const data = files()
  const total = data.reduce((a, f) => a + f.length, 0)
  const mib = total / (1024 * 1024)
  const a = new Corestore(path.join(dir, 'a'))
  const core = a.get({ name: 'bench' })
  await core.ready()
  let t = process.hrtime.bigint()
  for (const f of data) {
    const blocks = []
    for (let o = 0; o < f.length; o += BLOCK) blocks.push(f.subarray(o, o + BLOCK))
    await core.append(blocks)
  }
  let dt = Number(process.hrtime.bigint() - t) / 1e9
  console.log(`${label}: Node append ${mib.toFixed(1)} MiB in ${core.length} blocks, one append per file: ${dt.toFixed(2)} s = ${(mib / dt).toFixed(0)} MiB/s`)
  const b = new Corestore(path.join(dir, 'b'))
  const replica = b.get({ key: core.key })
  await replica.ready()
  t = process.hrtime.bigint()
  const s1 = a.replicate(true)
  const s2 = b.replicate(false)
  s1.pipe(s2).pipe(s1)
  await replica.update({ wait: true })
  await replica.download({ start: 0, end: core.length }).done()
  dt = Number(process.hrtime.bigint() - t) / 1e9
  console.log(`${label}: Node replicate ${mib.toFixed(1)} MiB (${replica.contiguousLength} blocks) in-process: ${dt.toFixed(2)} s = ${(mib / dt).toFixed(0)} MiB/s`)
  s1.destroy()
  s2.destroy()
  await a.close()
  await b.close()
  fs.rmSync(dir, { recursive: true, force: true })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
