#!/usr/bin/env node
/**
 * `npm run status [-- <url>] [--json]`: the status page of any deployment,
 * on the command line. Reads `<url>/status.json` (public, no login); the URL
 * defaults to https://<PDS_HOSTNAME> from wrangler.toml.
 * Exits non-zero when the PDS cannot be reached or answers an error.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values, positionals } = parseArgs({ options: { json: { type: 'boolean' } }, allowPositionals: true })

const defaultUrl = () => {
  const toml = readFileSync(new URL('../wrangler.toml', import.meta.url), 'utf8')
  const host = toml.match(/^PDS_HOSTNAME\s*=\s*"([^"]*)"/m)?.[1]
  if (!host) return null
  return `${/^(localhost|127\.0\.0\.1)(:\d+)?$/.test(host) ? 'http' : 'https'}://${host}`
}

const base = (positionals[0] ?? defaultUrl() ?? '').replace(/\/+$/, '')
if (!base) {
  console.error('usage: npm run status -- <url of the PDS>')
  process.exit(2)
}

const ago = (iso, now) => {
  const s = Math.round((Date.parse(now) - Date.parse(iso)) / 1000)
  if (!Number.isFinite(s)) return ''
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86400) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} days ago`
}
const when = (iso, now) => (iso ? `${iso} (${ago(iso, now)})` : 'never')
const size = (n) => (n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(2)} MiB`)

let res
try {
  res = await fetch(`${base}/status.json`, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(15_000) })
} catch (err) {
  console.error(`Cannot reach ${base}: ${err?.cause?.message ?? err?.message ?? err}`)
  process.exit(1)
}
const text = await res.text()
if (!res.ok) {
  console.error(`${base}/status.json answered HTTP ${res.status}: ${text.slice(0, 300)}`)
  process.exit(1)
}
const s = JSON.parse(text)
if (values.json) {
  console.log(JSON.stringify(s, null, 2))
  process.exit(0)
}

const now = s.generatedAt
const rows = [
  ['PDS', `${s.serviceUrl} (edge-pds ${s.version})`],
  ['Handle', `@${s.handle}`],
  ['DID', s.did],
  ['Account', s.account.status],
  ['Records', s.repo ? String(s.repo.records) : '-'],
  ['Blocks', s.repo ? `${s.repo.blocks} (${size(s.repo.bytes)}, ${s.repo.bytes} bytes)` : '-'],
  ['Last commit', s.repo ? `${when(s.repo.lastCommitAt, now)} rev ${s.repo.rev}` : 'none yet'],
  ['Subscribers', s.firehose.subscribers === null ? 'unknown' : String(s.firehose.subscribers)],
  ['Last seq', s.firehose.lastSeq === null ? 'none yet' : `${s.firehose.lastSeq} (${when(s.firehose.lastEventAt, now)})`],
  ['Relays', s.relays.hosts.length ? s.relays.hosts.join(', ') : 'none configured'],
  ['Last crawl request', s.relays.lastCrawlRequest ? `${when(s.relays.lastCrawlRequest.at, now)} (${s.relays.lastCrawlRequest.trigger})` : 'never'],
  [
    'Maintenance',
    s.maintenance
      ? `${when(s.maintenance.at, now)}: ${s.maintenance.prunedEvents} events, ${s.maintenance.removedBlocks} blocks, ${s.maintenance.deletedBlobs} blobs, ${s.maintenance.expiredTokens} tokens; crawl: ${s.maintenance.crawl}`
      : 'not run yet',
  ],
]
const width = Math.max(...rows.map(([k]) => k.length))
console.log(rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n'))
