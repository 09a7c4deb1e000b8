#!/usr/bin/env node
/**
 * `npm run plc-token [-- --remote] [--persist-to <dir>] [--json]`
 *
 * Shows the code that com.atproto.identity.signPlcOperation asks for (what
 * `goat account plc request-token` or the app's "request a code" made this
 * PDS issue). A PDS that can send email mails it to the owner; one that
 * cannot keeps it in D1, where only the owner (who holds the Cloudflare
 * credentials) can read it: locally from wrangler dev's state, or from the
 * deployed database with --remote. The code is valid 15 minutes and is spent
 * by signPlcOperation.
 */
import { parseArgs } from 'node:util'
import { wrangler } from './setup/cloudflare.mjs'

const ROOT = new URL('..', import.meta.url).pathname
const { values } = parseArgs({ options: { remote: { type: 'boolean' }, 'persist-to': { type: 'string' }, json: { type: 'boolean' } } })

const args = ['d1', 'execute', 'DB', '--json', '--command', "SELECT value FROM pds_state WHERE key = 'email-token:plc_operation'"]
args.push(values.remote ? '--remote' : '--local')
if (values['persist-to']) args.push('--persist-to', values['persist-to'])
const r = wrangler(ROOT, args)
if (!r.ok) {
  console.error(`Could not read the database:\n${r.output.trim().split('\n').slice(-8).join('\n')}`)
  process.exit(1)
}
const rows = JSON.parse(r.stdout.slice(r.stdout.indexOf('['))).at(-1)?.results ?? []
const stored = rows[0]?.value ? JSON.parse(rows[0].value) : null
if (!stored) {
  console.error('No PLC operation code has been requested (com.atproto.identity.requestPlcOperationSignature), or it was used.')
  process.exit(1)
}
const expired = stored.expiresAt < Date.now()
if (values.json) {
  console.log(JSON.stringify({ token: stored.token, expiresAt: new Date(stored.expiresAt).toISOString(), expired }))
} else {
  console.log(stored.token)
  console.error(expired ? 'This code has expired: request a new one.' : `Valid until ${new Date(stored.expiresAt).toISOString()}.`)
}
process.exit(expired ? 1 : 0)
