/**
 * Creating a did:plc identity: the genesis operation of the did:plc method
 * spec (v0.1, https://web.plc.directory/spec/v0.1/did-plc), built here with
 * @atproto/crypto and @ipld/dag-cbor rather than pulling in @did-plc/lib.
 *
 * - the unsigned op {type: 'plc_operation', rotationKeys, verificationMethods,
 *   alsoKnownAs, services, prev: null} is DAG-CBOR encoded and signed by a
 *   rotation key (ECDSA over SHA-256, compact low-S signature), base64url
 *   without padding, as `sig`;
 * - the DID is `did:plc:` + the first 24 characters of the lowercase base32
 *   SHA-256 of the signed op's DAG-CBOR;
 * - the op is published with `POST <directory>/<did>` (JSON body).
 */
import { createHash } from 'node:crypto'
import { Secp256k1Keypair } from '@atproto/crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { base32 } from 'multiformats/bases/base32'

const base64url = (bytes) => Buffer.from(bytes).toString('base64url')

/** The PDS's public URL for a host name (http only for loopback dev hosts, as src/env.ts does). */
export const serviceUrlFor = (hostname) => `${/^(localhost|127\.0\.0\.1)(:\d+)?$/.test(hostname) ? 'http' : 'https'}://${hostname}`

/**
 * Builds and signs the genesis op; returns it with the DID it defines.
 * Rotation keys: the owner's own key first (kept offline; it has priority to
 * override the others within 72 h), then the PDS's PLC rotation key, with
 * which the PDS signs routine updates (a handle change, a migration away).
 * Without a PDS rotation key (an older setup) the signing key takes its place.
 */
export const createGenesisOp = async ({ signingKeyHex, rotationKeyHex, pdsRotationKeyHex, handle, hostname }) => {
  const signing = await Secp256k1Keypair.import(signingKeyHex)
  const pdsRotation = pdsRotationKeyHex ? await Secp256k1Keypair.import(pdsRotationKeyHex) : signing
  const owner = rotationKeyHex ? await Secp256k1Keypair.import(rotationKeyHex) : null
  const unsigned = {
    type: 'plc_operation',
    rotationKeys: [...new Set([owner?.did(), pdsRotation.did()].filter(Boolean))],
    verificationMethods: { atproto: signing.did() },
    alsoKnownAs: [`at://${handle}`],
    services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: serviceUrlFor(hostname) } },
    prev: null,
  }
  const sig = base64url(await (owner ?? pdsRotation).sign(dagCbor.encode(unsigned)))
  const op = { ...unsigned, sig }
  const hash = createHash('sha256').update(dagCbor.encode(op)).digest()
  // base32.baseEncode: RFC 4648 lowercase, no padding, no multibase prefix.
  return { did: `did:plc:${base32.baseEncode(hash).slice(0, 24)}`, op }
}

/** Posts the op to the directory. Never throws: returns what happened, for a clear message. */
export const publishGenesisOp = async (plcUrl, did, op) => {
  const url = `${plcUrl.replace(/\/+$/, '')}/${did}`
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(op),
      signal: AbortSignal.timeout(15_000),
    })
    const body = await res.text()
    return res.ok ? { ok: true } : { ok: false, error: `HTTP ${res.status} ${body.slice(0, 300)}` }
  } catch (err) {
    return { ok: false, error: String(err?.cause?.message ?? err?.message ?? err) }
  }
}

/** Whether the directory already knows the DID (a re-run after a publish whose answer was lost). */
export const isPublished = async (plcUrl, did) => {
  try {
    const res = await fetch(`${plcUrl.replace(/\/+$/, '')}/${did}`, { signal: AbortSignal.timeout(10_000) })
    await res.body?.cancel()
    return res.ok
  } catch {
    return false
  }
}
