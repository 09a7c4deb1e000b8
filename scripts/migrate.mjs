#!/usr/bin/env node
/**
 * `npm run migrate -- --from https://old.pds --identifier <handle or DID>`
 *     brings your account from another PDS to this one;
 * `npm run migrate -- --to https://new.pds [--new-password ...]`
 *     takes it from this PDS to another one.
 *
 * The same XRPC calls as `goat account migrate`, step by step (scripts/migrate/
 * steps.mjs), each one resumable: re-run the same command after an
 * interruption and what is done is skipped. The old account is deactivated
 * only after the new PDS holds the same records, every blob byte for byte and
 * the same preferences, and the DID document names it.
 *
 * Options:
 *   --pds <url>            this PDS (default https://<PDS_HOSTNAME> from wrangler.toml)
 *   --identifier <id>      the account on the old PDS (moving in)
 *   --password <pw>        its password there (asked if missing); moving out: this PDS's password
 *   --new-password <pw>    the password on the new PDS (moving in: this PDS's PDS_PASSWORD; asked if missing)
 *   --handle <handle>      the handle on the new PDS (default: the current one)
 *   --email <address>      the email on the new PDS (default: the current one)
 *   --invite-code <code>   if the new PDS wants one
 *   --plc-token <code>     the emailed code for the PLC operation (asked for when needed)
 *   --rotation-key <did:key>  a PLC rotation key of yours to keep first in the DID document (repeatable)
 */
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline/promises'
import { parseArgs } from 'node:util'
import { STEPS, steps } from './migrate/steps.mjs'
import { Pds } from './migrate/xrpc.mjs'

const { values } = parseArgs({
  options: {
    from: { type: 'string' },
    to: { type: 'string' },
    pds: { type: 'string' },
    identifier: { type: 'string' },
    password: { type: 'string' },
    'new-password': { type: 'string' },
    handle: { type: 'string' },
    email: { type: 'string' },
    'invite-code': { type: 'string' },
    'plc-token': { type: 'string' },
    'rotation-key': { type: 'string', multiple: true },
    help: { type: 'boolean' },
  },
})

const usage = () => {
  console.error('usage: npm run migrate -- --from <old PDS url> --identifier <handle or DID>   (bring an account here)')
  console.error('       npm run migrate -- --to <new PDS url>                                   (take it elsewhere)')
  process.exit(2)
}
if (values.help || Boolean(values.from) === Boolean(values.to)) usage()

const thisPds = () => {
  if (values.pds) return values.pds
  const toml = readFileSync(new URL('../wrangler.toml', import.meta.url), 'utf8')
  const host = toml.match(/^PDS_HOSTNAME\s*=\s*"([^"]*)"/m)?.[1]
  if (!host) throw new Error('no --pds and no PDS_HOSTNAME in wrangler.toml')
  return `${/^(localhost|127\.0\.0\.1)(:\d+)?$/.test(host) ? 'http' : 'https'}://${host}`
}

const lines = createInterface({ input: process.stdin, output: process.stderr, terminal: false })
const ask = async (question) => (await lines.question(`${question}: `)).trim()

const main = async () => {
  const here = new Pds(thisPds())
  const movingIn = Boolean(values.from)
  const fromPds = new Pds(movingIn ? values.from : here.url)
  const toPds = new Pds(movingIn ? here.url : values.to)
  const identifier = movingIn ? (values.identifier ?? (await ask('Your handle or DID on the old PDS'))) : null
  const oldPassword = values.password ?? (await ask(movingIn ? `Password on ${fromPds.url}` : `Password of this PDS (${here.url})`))
  // Moving out, the account is this PDS's one: the only repo it lists.
  const ownDid = async () => (await here.call('com.atproto.sync.listRepos')).repos[0]?.did ?? Promise.reject(new Error('this PDS hosts no active account'))
  const { pds: from, session } = await fromPds.login(identifier ?? (await ownDid()), oldPassword)
  const newPassword = values['new-password'] ?? (await ask(movingIn ? "This PDS's password (PDS_PASSWORD)" : `Password for the account on ${toPds.url}`))
  const ctx = {
    did: session.did,
    from,
    to: toPds,
    newHandle: values.handle ?? session.handle,
    newPassword,
    email: values.email ?? session.email,
    inviteCode: values['invite-code'],
    keepRotationKeys: values['rotation-key'] ?? [],
    plcToken: async () =>
      values['plc-token'] ??
      (await ask(movingIn ? `The code ${fromPds.url} emailed to you` : 'The PLC code (mailed to you, or: npm run plc-token -- --remote)')),
  }
  console.error(`Moving ${ctx.did} (${ctx.newHandle}) from ${fromPds.url} to ${toPds.url}`)
  const done = []
  for (const name of STEPS) {
    try {
      const result = await steps[name](ctx)
      if (result.to) ctx.to = result.to
      done.push(name)
      console.error(`✓ ${name}: ${result.note}`)
    } catch (err) {
      console.error(`✗ ${name}: ${err.message}${err.cause ? ` (${err.cause.message ?? err.cause})` : ''}`)
      console.error(`\nDone: ${done.join(', ') || 'nothing'}. Left: ${STEPS.slice(STEPS.indexOf(name)).join(', ')}.`)
      console.error('Nothing was lost; the old account is still active. Re-run the same command to go on from here.')
      process.exitCode = 1
      return
    }
  }
  console.error(`\nDone: ${ctx.did} lives on ${toPds.url}; the old account is deactivated.`)
}

try {
  await main()
} finally {
  lines.close()
}
