/**
 * The account's DID document as this PDS would publish it (did:web) and the
 * answer to "is this identifier our account?". The atproto DID spec asks for
 * an `#atproto` Multikey verification method holding the repo signing key and
 * an `#atproto_pds` service pointing at this PDS.
 */
import type { Config } from '../env'

export interface DidDocument {
  '@context': string[]
  id: string
  alsoKnownAs: string[]
  verificationMethod: { id: string; type: string; controller: string; publicKeyMultibase: string }[]
  service: { id: string; type: string; serviceEndpoint: string }[]
}

export const buildDidDocument = (cfg: Config, handle: string): DidDocument => ({
  '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1', 'https://w3id.org/security/suites/secp256k1-2019/v1'],
  id: cfg.did,
  alsoKnownAs: [`at://${handle}`],
  verificationMethod: [
    {
      id: `${cfg.did}#atproto`,
      type: 'Multikey',
      controller: cfg.did,
      publicKeyMultibase: cfg.signingKey.did().slice('did:key:'.length),
    },
  ],
  service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: cfg.serviceUrl }],
})

/** True for did:web DIDs this deployment serves itself (so their document is ours to build). */
export const isOwnDidWeb = (cfg: Config): boolean => cfg.did === cfg.serviceDid

/** The account DID if `identifier` (a DID, or its current handle in any case) names our account. */
export const resolveOwnAccount = (cfg: Config, handle: string, identifier: string): string | null => {
  if (identifier === cfg.did) return cfg.did
  if (identifier.toLowerCase() === handle) return cfg.did
  return null
}
