/**
 * `npm run setup` options: every prompt is also a flag, so the same command
 * runs unattended (`--yes` takes the defaults, CI and tests pass flags).
 * Prompts only appear on a terminal; without one, a missing required answer
 * is an error that names the flag.
 */
import { createInterface } from 'node:readline/promises'
import { parseArgs } from 'node:util'

export const USAGE = `npm run setup -- [options]

  --dir DIR              project directory to configure (default: this checkout)
  --hostname HOST        public host name of the PDS, e.g. pds.example.com
  --handle HANDLE        the account handle (default: the hostname itself)
  --did web|plc|DID      did:web on the hostname, a new did:plc, or an existing DID to migrate
  --password PASSWORD    the login password (default: generate one; only a salted hash is stored)
  --email EMAIL          optional owner email (also accepted as login identifier)
  --rotation-key         generate a PLC rotation key for did:plc (default)
  --no-rotation-key      let the signing key also be the PLC rotation key
  --relays HOSTS         relays asked to crawl (default: bsky.network)
  --plc-url URL          PLC directory (default: $PLC_URL or https://plc.directory)
  --from-backup FILE     restore the keys from a key backup written by an earlier setup
  --offline              do not contact Cloudflare; print the commands to run later
  --yes, -y              accept the defaults, never prompt
  --help, -h             this text
`

const FLAGS = {
  dir: { type: 'string' },
  hostname: { type: 'string' },
  handle: { type: 'string' },
  did: { type: 'string' },
  password: { type: 'string' },
  email: { type: 'string' },
  'rotation-key': { type: 'boolean' },
  'no-rotation-key': { type: 'boolean' },
  relays: { type: 'string' },
  'plc-url': { type: 'string' },
  'from-backup': { type: 'string' },
  offline: { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
  help: { type: 'boolean', short: 'h' },
}

export const parseOptions = (argv) => {
  const { values } = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false })
  if (values['rotation-key'] && values['no-rotation-key']) throw new Error('--rotation-key and --no-rotation-key contradict each other')
  return values
}

const HOST_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/

export const validHostname = (value) => HOST_RE.test(value)

/**
 * Asks what flags did not say. `known` holds the values fixed by an earlier
 * run (they are not asked again); `defaults` the suggestions.
 */
export const resolveAnswers = async (flags, known, defaults) => {
  const interactive = process.stdin.isTTY && process.stdout.isTTY && !flags.yes
  const rl = interactive ? createInterface({ input: process.stdin, output: process.stdout }) : null
  const ask = async (name, question, fallback, check) => {
    const flag = flags[name]
    if (flag !== undefined) return flag
    if (known[name] !== undefined) return known[name]
    if (!rl) {
      if (fallback !== undefined && fallback !== '') return fallback
      throw new Error(`--${name} is required when not running on a terminal (see npm run setup -- --help)`)
    }
    for (;;) {
      const answer = (await rl.question(`${question}${fallback ? ` [${fallback}]` : ''}: `)).trim() || fallback || ''
      const problem = check?.(answer)
      if (!problem) return answer
      console.log(`  ${problem}`)
    }
  }
  try {
    const hostname = (
      await ask('hostname', 'Host name the PDS will be served on (e.g. pds.example.com)', defaults.hostname, (v) =>
        validHostname(v.toLowerCase()) ? null : 'a host name like pds.example.com',
      )
    ).toLowerCase()
    const handle = (await ask('handle', 'Handle of your account', known.handle ?? hostname)).toLowerCase()
    const did = await ask('did', 'Identity: "plc" (new did:plc, recommended), "web" (did:web on the host), or an existing DID', defaults.did ?? 'plc', (v) =>
      /^(web|plc|did:(web|plc):[a-zA-Z0-9._:%-]+)$/.test(v) ? null : 'answer web, plc or a did:plc:… / did:web:… you already have',
    )
    return { hostname, handle, did }
  } finally {
    rl?.close()
  }
}
