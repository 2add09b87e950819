//! A local HyperDHT testnet (hyperdht/testnet) of N nodes bound to 127.0.0.1 (or HOST: an
//! address of a test's network namespace), for crates/hypercore-peer/tests (run with cwd
//! `v13`): `node ../testnet.js N [HOST]`. Prints {"bootstrap": ["HOST:PORT", …]} and runs until
//! stdin closes.
'use strict'

const { createRequire } = require('module')
const path = require('path')
const req = createRequire(path.join(process.cwd(), 'package.json'))
const createTestnet = req('hyperdht/testnet')

async function main() {
  const testnet = await createTestnet(Number(process.argv[2] || 3), { host: process.argv[3] || '127.0.0.1' })
  process.stdout.write(JSON.stringify({ bootstrap: testnet.bootstrap.map((b) => `${b.host}:${b.port}`) }) + '\n')
  const stop = () => testnet.destroy().finally(() => process.exit(0))
  process.stdin.on('end', stop)
  process.stdin.on('close', stop)
  process.stdin.resume()
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
