/**
 * A firehose consumer that stops reading (run by StalledConsumer in
 * firehose-client.ts under Node 22, where `ws` is the real package): it
 * connects to the subscribeRepos URL in argv[2], pauses the TCP socket right
 * after the handshake (`ws._socket.pause()`), so the kernel buffers fill and
 * the server must queue or drop, and reads nothing until stdin says `resume`.
 *
 * stdout: one JSON report a line ({event, frames, lastSeq, errors, ...});
 * stdin commands: `resume`, `status`.
 */
import { createInterface } from 'node:readline'
import { decodeAll } from '@atproto/lex-cbor'
import WebSocket from 'ws'

const url = process.argv[2]
const report = (event, extra = {}) => process.stdout.write(`${JSON.stringify({ event, ...extra })}\n`)

let frames = 0
let lastSeq = null
const seqs = []
const errors = []

const ws = new WebSocket(url)
ws.on('open', () => {
  report('open')
  ws._socket.pause()
  report('paused', { frames })
})
ws.on('message', (data) => {
  frames++
  try {
    const [header, body] = [...decodeAll(new Uint8Array(data))]
    if (header.op === -1) errors.push(`${body.error}: ${body.message ?? ''}`)
    else if (typeof body.seq === 'number') {
      lastSeq = body.seq
      seqs.push(body.seq)
    }
  } catch (err) {
    errors.push(`undecodable frame: ${err}`)
  }
})
ws.on('close', (code, reason) => report('close', { code, reason: String(reason), frames, lastSeq, errors }))
ws.on('error', (err) => report('error', { message: String(err) }))

const status = () => {
  // Seqs must be strictly increasing by one: anything else is a gap or a duplicate.
  const gaps = []
  for (let i = 1; i < seqs.length; i++) if (seqs[i] !== seqs[i - 1] + 1) gaps.push(`${seqs[i - 1]}→${seqs[i]}`)
  report('status', { frames, lastSeq, firstSeq: seqs[0] ?? null, gaps, errors, readyState: ws.readyState })
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const command = line.trim()
  if (command === 'resume') {
    ws._socket?.resume()
    report('resumed', { frames })
  } else if (command === 'status') status()
})
process.on('SIGTERM', () => {
  ws.terminate()
  process.exit(0)
})
