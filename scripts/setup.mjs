#!/usr/bin/env node
/**
 * `npm run setup`: from a fresh checkout to a PDS ready to deploy.
 *
 *  1. asks (or takes as flags) the host name, the handle and the kind of DID;
 *  2. generates the signing key, the PLC rotation key (did:plc), the JWT
 *     secret and the password, keeping only the password's salted hash;
 *     writes them to .dev.vars and a key backup the owner must save;
 *  3. creates the did:plc identity on the PLC directory (or uses did:web, or
 *     keeps an existing DID for a migration);
 *  4. writes [vars], binding ids and the Custom Domain routes into wrangler.toml;
 *  5. creates the D1 database, R2 bucket and KV namespace, pushes the secrets
 *     and applies the remote migrations, or prints those commands when
 *     Cloudflare cannot be reached;
 *  6. prints the DNS records to add.
 *
 * Safe to re-run: what exists is kept (keys are never replaced), finished
 * steps are skipped, and files are rewritten only when their bytes change.
 * What earlier runs decided lives in .pds-setup.json (no secrets in it).
 */
import { existsSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { isValidHandle } from '@atproto/syntax'
import * as cf from './setup/cloudflare.mjs'
import {
  PLACEHOLDER_D1_ID,
  PLACEHOLDER_KV_ID,
  devVarsText,
  readDevVars,
  readState,
  readTomlValue,
  setTomlValue,
  setTopLevel,
  stateText,
  writeIfChanged,
} from './setup/files.mjs'
import { backupText, didKeyOf, newJwtSecret, newSecp256k1Hex, passwordSetting, readBackup } from './setup/keys.mjs'
import { parseOptions, resolveAnswers, USAGE } from './setup/options.mjs'
import { createGenesisOp, isPublished, publishGenesisOp } from './setup/plc.mjs'
import { backupNotice, customDomains, dnsRecords, isLoopbackHost, passwordNotice, routesToml } from './setup/report.mjs'

const ROOT = new URL('..', import.meta.url).pathname
const DEFAULT_PLC_URL = 'https://plc.directory'
const DEV_VARS_HEADER = '# Secrets for wrangler dev, and what npm run setup pushes to Cloudflare. Gitignored: never commit.'

const main = async () => {
  const flags = parseOptions(process.argv.slice(2))
  if (flags.help) return console.log(USAGE)
  const dir = resolve(flags.dir ?? ROOT)
  const path = (name) => join(dir, name)
  if (!existsSync(path('wrangler.toml'))) throw new Error(`${dir} has no wrangler.toml (use --dir with a checkout of edge-pds)`)
  const written = []
  const write = (name, text, mode) => writeIfChanged(path(name), text, mode) && written.push(name)

  const state = readState(path('.pds-setup.json')) ?? {}
  const devVars = readDevVars(path('.dev.vars'))
  const restored = flags['from-backup'] ? readBackup(resolve(flags['from-backup'])) : null
  let toml = readFileSync(path('wrangler.toml'), 'utf8')

  // ---- 1. identity answers (fixed once chosen: a new host or DID is a new identity)
  const tomlHost = readTomlValue(toml, '[vars]', 'PDS_HOSTNAME')
  const known = { hostname: state.hostname ?? restored?.hostname, handle: flags.handle ? undefined : state.handle, did: state.did ?? restored?.did }
  for (const key of ['hostname', 'did']) {
    const given = flags[key]
    if (known[key] && given && given !== known[key] && !(key === 'did' && given === state.didMethod)) {
      throw new Error(`--${key} ${given} differs from ${known[key]}, set up earlier: changing it makes a new identity. Start from a fresh checkout for that.`)
    }
  }
  const answers = await resolveAnswers(flags, known, { hostname: tomlHost && !isLoopbackHost(tomlHost) ? tomlHost : undefined })
  const { hostname, handle } = answers
  if (!isValidHandle(handle)) throw new Error(`not a valid handle: ${handle}`)
  const plcUrl = (flags['plc-url'] ?? process.env.PLC_URL ?? DEFAULT_PLC_URL).replace(/\/+$/, '')

  // ---- 2. keys: whatever exists wins
  const signingKeyHex = devVars.PDS_SIGNING_KEY ?? restored?.signingKeyHex ?? (state.signingDidKey ? null : await newSecp256k1Hex())
  if (!signingKeyHex) {
    throw new Error(`.dev.vars lacks PDS_SIGNING_KEY, but a key (${state.signingDidKey}) was set up before: restore it with --from-backup <your key backup>`)
  }
  const signingDidKey = await didKeyOf(signingKeyHex)
  if (state.signingDidKey && state.signingDidKey !== signingDidKey) {
    throw new Error(`the signing key in .dev.vars (${signingDidKey}) is not the one set up before (${state.signingDidKey}); refusing to continue`)
  }
  const password = await passwordSetting(devVars.PDS_PASSWORD, flags.password)
  // The PDS's own PLC rotation key (signPlcOperation, handle changes, migrating away). Made only with a
  // new identity: a deployment set up before it existed keeps signing PLC operations with its signing
  // key, which its genesis operation lists.
  const pdsRotationKeyHex = devVars.PDS_PLC_ROTATION_KEY ?? restored?.pdsRotationKeyHex ?? (state.did ? null : await newSecp256k1Hex())
  const secrets = {
    PDS_SIGNING_KEY: signingKeyHex,
    JWT_SECRET: devVars.JWT_SECRET ?? newJwtSecret(),
    PDS_PASSWORD: password.value,
    ...(pdsRotationKeyHex ? { PDS_PLC_ROTATION_KEY: pdsRotationKeyHex } : {}),
    ...((flags.email ?? devVars.PDS_EMAIL) ? { PDS_EMAIL: flags.email ?? devVars.PDS_EMAIL } : {}),
  }

  // ---- 3. the DID
  let did = known.did
  let didMethod = state.didMethod ?? (answers.did === 'web' || answers.did === 'plc' ? answers.did : 'existing')
  let rotationKeyHex = restored?.rotationKeyHex ?? null
  let plc = state.plc ?? null
  if (!did) {
    if (didMethod === 'web') did = `did:web:${hostname.replace(':', '%3A')}`
    else if (didMethod === 'existing') did = answers.did
    else {
      if (!flags['no-rotation-key'] && !rotationKeyHex) rotationKeyHex = await newSecp256k1Hex()
      const genesis = await createGenesisOp({ signingKeyHex, rotationKeyHex, pdsRotationKeyHex, handle, hostname })
      did = genesis.did
      plc = { url: plcUrl, published: false, op: genesis.op }
    }
  }
  if (didMethod === 'plc' && handle !== state.handle && state.handle) {
    console.warn(`! The handle changed: update alsoKnownAs in your PLC document to at://${handle} as well (the PDS announces it on the firehose).`)
  }
  // An op not yet published may go to another directory than first tried (e.g. --plc-url after an outage).
  if (plc && !plc.published && flags['plc-url']) plc = { ...plc, url: plcUrl }
  const rotationDidKey = rotationKeyHex ? await didKeyOf(rotationKeyHex) : (state.rotationDidKey ?? null)

  // ---- files: .dev.vars, key backup, wrangler.toml
  write('.dev.vars', devVarsText(path('.dev.vars'), secrets, DEV_VARS_HEADER), 0o600)
  const backupFile = state.backupFile ?? 'pds-keys-backup.json'
  let backupWrittenNow = false
  if (!state.backupFile && !existsSync(path(backupFile))) {
    const pdsRotationDidKey = pdsRotationKeyHex ? await didKeyOf(pdsRotationKeyHex) : null
    write(
      backupFile,
      backupText({ createdAt: new Date().toISOString(), did, handle, hostname, signingKeyHex, signingDidKey, rotationKeyHex, rotationDidKey, pdsRotationKeyHex, pdsRotationDidKey }),
      0o600,
    )
    backupWrittenNow = true
  }
  toml = setTomlValue(toml, '[vars]', 'PDS_HOSTNAME', hostname)
  toml = setTomlValue(toml, '[vars]', 'PDS_DID', did)
  toml = setTomlValue(toml, '[vars]', 'PDS_HANDLE', handle)
  if (flags.relays !== undefined) toml = setTomlValue(toml, '[vars]', 'RELAY_HOSTS', flags.relays)
  if (plcUrl !== DEFAULT_PLC_URL) toml = setTomlValue(toml, '[vars]', 'PLC_URL', plcUrl)
  const domains = customDomains(hostname, handle)
  if (domains.length > 0) {
    toml = setTopLevel(toml, 'routes', routesToml(domains), 'Custom Domains: Cloudflare serves the Worker on these names and creates their DNS records (written by npm run setup).')
  }
  write('wrangler.toml', toml)

  // ---- 4. publish the did:plc
  const later = []
  if (plc && !plc.published) {
    const result = await publishGenesisOp(plc.url, did, plc.op)
    if (result.ok || (await isPublished(plc.url, did))) plc = { ...plc, published: true }
    else {
      write('plc-genesis-op.json', `${JSON.stringify(plc.op, null, 2)}\n`)
      console.warn(`! Could not publish ${did} to ${plc.url}: ${result.error}`)
      later.push(`curl -fsS -X POST -H 'content-type: application/json' --data @plc-genesis-op.json ${plc.url}/${did}   # or re-run npm run setup`)
    }
  }

  // ---- 5. Cloudflare
  const cloud = { ...(state.cloudflare ?? {}) }
  const d1Name = readTomlValue(toml, '[[d1_databases]]', 'database_name', /binding\s*=\s*"DB"/) ?? 'edge-pds'
  const bucket = readTomlValue(toml, '[[r2_buckets]]', 'bucket_name', /binding\s*=\s*"BLOBS"/) ?? 'edge-pds-blobs'
  const kvTitle = `${readTomlValue(toml, null, 'name') ?? 'edge-pds'}-cache`
  const needD1 = readTomlValue(toml, '[[d1_databases]]', 'database_id', /binding\s*=\s*"DB"/) === PLACEHOLDER_D1_ID
  const needKv = readTomlValue(toml, '[[kv_namespaces]]', 'id', /binding\s*=\s*"CACHE"/) === PLACEHOLDER_KV_ID
  const cfLater = cf.laterCommands({ d1Name, kvTitle, bucket, secretNames: Object.keys(secrets), needD1, needKv })
  const reach = flags.offline ? { ok: false, reason: '--offline: Cloudflare was not contacted' } : cf.checkCloudflare(dir)
  if (!reach.ok) {
    console.warn(`! ${reach.reason}.`)
    later.push(...cfLater)
  } else {
    try {
      console.log(`Cloudflare: ${reach.account}`)
      if (needD1) toml = setTomlValue(toml, '[[d1_databases]]', 'database_id', cf.ensureD1(dir, d1Name).id, /binding\s*=\s*"DB"/)
      if (needKv) toml = setTomlValue(toml, '[[kv_namespaces]]', 'id', cf.ensureKv(dir, kvTitle).id, /binding\s*=\s*"CACHE"/)
      write('wrangler.toml', toml)
      cf.ensureR2(dir, bucket)
      cloud.r2 = bucket
      const { pushed, kept } = cf.pushMissingSecrets(dir, secrets)
      if (pushed.length) console.log(`Secrets pushed: ${pushed.join(', ')}`)
      if (kept.length) console.log(`Secrets already in Cloudflare, left as they are: ${kept.join(', ')}`)
      cf.applyRemoteMigrations(dir)
      cloud.migrated = true
    } catch (err) {
      console.warn(`! ${err.message}`)
      later.push('npm run setup   # once the problem above is fixed: it continues where it stopped')
    }
  }

  const nextState = {
    version: 1,
    hostname,
    handle,
    did,
    didMethod,
    signingDidKey,
    rotationDidKey,
    ...(plc ? { plc } : {}),
    backupFile,
    ...(Object.keys(cloud).length ? { cloudflare: cloud } : {}),
  }
  write('.pds-setup.json', stateText(nextState))

  // ---- 6. tell the owner
  const rel = relative(process.cwd(), dir) || '.'
  console.log(`
  Host name   ${hostname}
  Handle      ${handle}
  DID         ${did}${plc ? `  (${plc.published ? 'published to' : 'NOT yet published to'} ${plc.url})` : ''}
  Signing key ${signingDidKey}${rotationDidKey ? `\n  Rotation    ${rotationDidKey}` : ''}
  Files       ${written.length ? `wrote ${written.join(', ')}` : 'nothing changed'} in ${rel}
`)
  if (password.plain) console.log(`${passwordNotice(password.plain)}\n`)
  else console.log(`  Password    ${password.changed ? 'the one already in .dev.vars, now stored as a salted hash' : 'unchanged'} (a new one: --password)\n`)
  if (backupWrittenNow) console.log(`${backupNotice(join(rel, backupFile))}\n`)
  console.log(`DNS records:\n${dnsRecords({ hostname, handle, did })}\n`)
  if (didMethod === 'existing') {
    console.log(`Migrating ${did}: see README "Migrating an existing account" (point its DID document at ${signingDidKey} and https://${hostname}).\n`)
  }
  if (later.length) {
    console.log(`Still to do (run in ${rel}):\n${later.map((c) => `  ${c}`).join('\n')}\n`)
  } else {
    console.log('Next: npm run deploy\n')
  }
}

main().catch((err) => {
  console.error(`setup failed: ${err.message}`)
  process.exit(1)
})
