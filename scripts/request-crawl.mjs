#!/usr/bin/env node
/**
 * `npm run request-crawl [-- --hostname pds.example.com --relays bsky.network,other.relay]`
 * Asks relays to crawl this PDS now (the Worker also does it by itself when no
 * relay is connected). Defaults come from wrangler.toml's [vars].
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { requestCrawl } from '../src/firehose/crawl.ts'

const toml = readFileSync(new URL('../wrangler.toml', import.meta.url), 'utf8')
const tomlVar = (name) => toml.match(new RegExp(`^${name}\\s*=\\s*"([^"]*)"`, 'm'))?.[1]
const { values } = parseArgs({ options: { hostname: { type: 'string' }, relays: { type: 'string' } } })
const hostname = values.hostname ?? tomlVar('PDS_HOSTNAME')
const relays = (values.relays ?? tomlVar('RELAY_HOSTS') ?? '').split(',').map((r) => r.trim()).filter(Boolean)
if (!hostname || relays.length === 0) {
  console.error('usage: npm run request-crawl -- --hostname <pds host> --relays <relay host>[,<relay host>...]')
  process.exit(2)
}
const results = await requestCrawl(relays, hostname)
for (const r of results) console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.relay}${r.status ? ` HTTP ${r.status}` : ''}${r.error ? ` ${r.error}` : ''}`)
process.exit(results.every((r) => r.ok) ? 0 : 1)
