//! Test helper: a local HyperDHT testnet (hyperdht/testnet) of N nodes bound to 127.0.0.1.
//! Prints one JSON line `{"bootstrap": ["127.0.0.1:PORT", ...]}` and runs until stdin closes
//! (the Rust test holds it) or a signal arrives. Nothing here contacts anything but loopback.
'use strict'

const createTestnet = require('hyperdht/testnet')

async function main() {
  const size = Number(process.argv[2] || 3)
  const testnet = await createTestnet(size, { host: '127.0.0.1' })
  const bootstrap = testnet.bootstrap.map((b) => `${b.host}:${b.port}`)
  process.stdout.write(JSON.stringify({ bootstrap }) + '\n')
  const stop = () => testnet.destroy().finally(() => process.exit(0))
  process.stdin.on('end', stop)
  process.stdin.on('close', stop)
  process.stdin.resume()
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
