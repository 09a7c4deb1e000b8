/**
 * The discovery documents (src/oauth/metadata.ts) pass the validators the
 * client library applies (`@atproto/oauth-types`), carry what the atproto
 * spec requires, and never offer ES256K (jose cannot verify it in workerd);
 * the nonce source rotates as specified.
 */
import { oauthAuthorizationServerMetadataValidator, oauthProtectedResourceMetadataSchema } from '@atproto/oauth-types'
import { describe, expect, it } from 'vitest'
import { authorizationServerMetadata, protectedResourceMetadata } from '../../src/oauth/metadata'
import { DpopNonces, NONCE_ROTATION_MS } from '../../src/oauth/nonces'
import { newNonces, ORIGIN, randomHmacKey } from './helpers'

describe('authorization server metadata', () => {
  const meta = authorizationServerMetadata(ORIGIN)

  it('is valid for the client library, with the issuer as given', () => {
    const parsed = oauthAuthorizationServerMetadataValidator.parse(meta)
    expect(parsed.issuer).toBe(ORIGIN)
  })

  it('has everything the atproto OAuth spec requires', () => {
    expect(meta.scopes_supported).toContain('atproto')
    expect(meta.scopes_supported).toEqual(expect.arrayContaining(['transition:generic', 'transition:chat.bsky', 'transition:email']))
    expect(meta.response_types_supported).toEqual(['code'])
    expect(meta.grant_types_supported).toEqual(['authorization_code', 'refresh_token'])
    expect(meta.code_challenge_methods_supported).toEqual(['S256'])
    expect(meta.token_endpoint_auth_methods_supported).toEqual(['none', 'private_key_jwt'])
    expect(meta.token_endpoint_auth_signing_alg_values_supported).toContain('ES256')
    expect(meta.dpop_signing_alg_values_supported).toContain('ES256')
    expect(meta.authorization_response_iss_parameter_supported).toBe(true)
    expect(meta.require_pushed_authorization_requests).toBe(true)
    expect(meta.pushed_authorization_request_endpoint).toBe(`${ORIGIN}/oauth/par`)
    expect(meta.client_id_metadata_document_supported).toBe(true)
    expect(meta.protected_resources).toEqual([ORIGIN])
    expect(meta.require_request_uri_registration).not.toBe(false)
  })

  it('never offers ES256K or "none" as a signing algorithm', () => {
    for (const list of [meta.dpop_signing_alg_values_supported, meta.token_endpoint_auth_signing_alg_values_supported]) {
      expect(list).not.toContain('ES256K')
      expect(list).not.toContain('none')
    }
  })
})

describe('protected resource metadata', () => {
  it('names this origin as the resource and exactly one authorization server', () => {
    const meta = oauthProtectedResourceMetadataSchema.parse(protectedResourceMetadata(ORIGIN))
    expect(meta.resource).toBe(ORIGIN)
    expect(meta.authorization_servers).toEqual([ORIGIN])
  })
})

describe('DPoP nonces', () => {
  it('are 43-character base64url strings, the same in every isolate with the same key', async () => {
    const key = await randomHmacKey()
    const a = new DpopNonces(key)
    const b = new DpopNonces(key)
    const now = Date.now()
    expect(await a.next(now)).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(await a.next(now)).toBe(await b.next(now))
    expect(await b.isValid(await a.next(now), now)).toBe(true)
  })

  it('rotate every minute; an issued nonce stays valid 2 to 3 minutes', async () => {
    const nonces = await newNonces()
    const start = Math.floor(Date.now() / NONCE_ROTATION_MS) * NONCE_ROTATION_MS
    const issued = await nonces.next(start)
    expect(await nonces.next(start + NONCE_ROTATION_MS)).not.toBe(issued)
    expect(await nonces.isValid(issued, start + 2 * NONCE_ROTATION_MS + 59_000)).toBe(true)
    expect(await nonces.isValid(issued, start + 3 * NONCE_ROTATION_MS)).toBe(false)
    expect(await nonces.isValid(issued, start - NONCE_ROTATION_MS)).toBe(false)
  })
})
