// Shared by live.js and serve.js: the framed, unencrypted stream that stands in for
// secret-stream under Protomux (each frame = 3-byte little-endian length + bytes, the layout
// secret-stream uses inside its encryption), carrying the
// facts secret-stream would provide (isInitiator, handshakeHash); and the test blocks' content.
'use strict'

const { Duplex } = require('streamx')
const b4a = require('b4a')

function blockValue (i) {
  const size = [10, 1000, 65536][i % 3]
  const b = b4a.alloc(size)
  for (let j = 0; j < size; j++) b[j] = (i * 31 + j) & 0xff
  return b
}

class FramedStream extends Duplex {
  constructor (socket, isInitiator, handshakeHash) {
    super()
    this.socket = socket
    this.isInitiator = isInitiator
    this.handshakeHash = handshakeHash
    this.remotePublicKey = b4a.alloc(32)
    this.rawStream = {}
    this.opened = Promise.resolve(true)
    this.noiseStream = this
    this.userData = null
    this._buf = b4a.alloc(0)
    socket.on('data', (data) => {
      this._buf = b4a.concat([this._buf, data])
      while (this._buf.byteLength >= 3) {
        const len = this._buf[0] | (this._buf[1] << 8) | (this._buf[2] << 16)
        if (this._buf.byteLength < 3 + len) break
        this.push(this._buf.subarray(3, 3 + len))
        this._buf = this._buf.subarray(3 + len)
      }
    })
    socket.on('close', () => this.destroy())
    socket.on('error', () => this.destroy())
  }

  _write (data, cb) {
    const len = b4a.from([data.byteLength & 0xff, (data.byteLength >>> 8) & 0xff, data.byteLength >>> 16])
    this.socket.write(b4a.concat([len, data]))
    cb(null)
  }

  _destroy (cb) {
    this.socket.destroy()
    cb(null)
  }
}

module.exports = { FramedStream, blockValue }
