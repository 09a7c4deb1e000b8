/**
 * Resolving handles (atproto.com/specs/handle): a `_atproto.<handle>` TXT
 * record `did=<did>` (over DNS-over-HTTPS: Workers have no resolver) or
 * `https://<handle>/.well-known/atproto-did`. Someone else's handle is asked
 * of the AppView first when one is configured, as the reference PDS does;
 * the owner's new handle (updateHandle) is always checked the atproto way.
 */
import type { Config } from '../env'
import { dnsQuery, txtDids } from './dns'

const TIMEOUT_MS = 3000
const DID = /^did:[a-z]+:[a-zA-Z0-9._:%-]+$/

export const resolveOtherHandle = async (cfg: Config, handle: string): Promise<string | null> => {
  if (cfg.appView) {
    const res = await fetch(`${cfg.appView.url}/xrpc/com.atproto.identity.resolveHandle?handle=${encodeURIComponent(handle)}`, {
      signal: AbortSignal.timeout(TIMEOUT_MS),
    })
    if (!res.ok) return null
    const body = (await res.json()) as { did?: unknown }
    return typeof body.did === 'string' && DID.test(body.did) ? body.did : null
  }
  return resolveHandleDirectly(cfg, handle)
}

/** The DID a handle resolves to by DNS or HTTPS, or null. */
export const resolveHandleDirectly = async (cfg: Config, handle: string): Promise<string | null> =>
  (await fromDns(cfg, handle)) ?? (await fromWellKnown(handle))

const fromDns = async (cfg: Config, handle: string): Promise<string | null> => {
  const records = await dnsQuery(cfg, `_atproto.${handle}`, 16).catch(() => [])
  // Exactly one did= record counts; several are ambiguous (as the reference resolver).
  const dids = txtDids(records)
  return dids.length === 1 && DID.test(dids[0]) ? dids[0] : null
}

const fromWellKnown = async (handle: string): Promise<string | null> => {
  const res = await fetch(`https://${handle}/.well-known/atproto-did`, { redirect: 'error', signal: AbortSignal.timeout(TIMEOUT_MS) }).catch(() => null)
  if (!res?.ok) return null
  const text = (await res.text()).split('\n')[0].trim()
  return DID.test(text) ? text : null
}
