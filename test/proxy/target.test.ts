/**
 * Choosing where a forwarded call goes (src/proxy/target.ts) and the service
 * tokens that go with it (src/auth/service-jwt.ts): the `atproto-proxy`
 * header's shape errors in the reference's order and words, the default
 * services, and a token that verifies only for its own audience, method and
 * lifetime and only with the account's key.
 */
import { Secp256k1Keypair, verifySignature } from '@atproto/crypto'
import { describe, expect, it } from 'vitest'
import { createServiceJwt, isServiceJwt, verifyServiceJwt } from '../../src/auth/service-jwt'
import type { Config } from '../../src/env'
import { isIn, PRIVILEGED_METHODS, PROTECTED_METHODS } from '../../src/auth/method-classes'
import { KvCache } from '../../src/cache/kv-cache'
import { XrpcError } from '../../src/errors'
import { resolveProxyTarget } from '../../src/proxy/target'
import { testConfig, workerEnv } from '../repo/fixtures'

const cache = new KvCache(workerEnv.CACHE)

const failure = async (promise: Promise<unknown>): Promise<{ status: number; error: string; message: string } | null> => {
  try {
    await promise
    return null
  } catch (err) {
    if (!(err instanceof XrpcError)) throw err
    return { status: err.status, error: err.error, message: err.message }
  }
}

const withServices = async (): Promise<Config> => ({
  ...(await testConfig()),
  appView: { url: 'https://appview.example', did: 'did:web:appview.example' },
  modService: { url: 'https://mod.example', did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' },
})

const decode = (part: string): Record<string, unknown> => JSON.parse(atob(part.replace(/-/g, '+').replace(/_/g, '/')))

describe('resolveProxyTarget', () => {
  it('sends app.bsky, chat.bsky and unknown methods to the AppView and reports to the moderation service by default', async () => {
    const cfg = await withServices()
    for (const nsid of ['app.bsky.feed.getTimeline', 'chat.bsky.convo.listConvos', 'com.example.anything']) {
      expect(await resolveProxyTarget(cfg, cache, nsid, null)).toEqual({ url: 'https://appview.example', did: 'did:web:appview.example', serviceId: 'bsky_appview' })
    }
    expect(await resolveProxyTarget(cfg, cache, 'com.atproto.moderation.createReport', undefined)).toEqual({
      url: 'https://mod.example',
      did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa',
      serviceId: 'atproto_labeler',
    })
  })

  it('answers "No service configured" when the default service is switched off', async () => {
    const cfg = { ...(await withServices()), appView: null }
    expect(await failure(resolveProxyTarget(cfg, cache, 'app.bsky.feed.getTimeline', ''))).toEqual({
      status: 400,
      error: 'InvalidRequest',
      message: 'No service configured for app.bsky.feed.getTimeline',
    })
  })

  it('checks the header shape with the reference messages, in its order', async () => {
    const cfg = await withServices()
    const cases: [string, string][] = [
      ['#bsky_appview', 'no did specified in proxy header'],
      ['did:web:appview.example', 'no service id specified in proxy header'],
      ['did:web:appview.example#', 'no service id specified in proxy header'],
      ['did:web:a#b#c', 'invalid proxy header format'],
      ['did:web:a b#c', 'proxy header cannot contain spaces'],
      ['did:foo:bar#svc', 'could not resolve proxy did'],
    ]
    for (const [header, message] of cases) {
      expect(await failure(resolveProxyTarget(cfg, cache, 'app.bsky.feed.getTimeline', header))).toEqual({ status: 400, error: 'InvalidRequest', message })
    }
  })

  it('reaches the configured AppView by its DID without resolving it', async () => {
    const cfg = await withServices()
    expect(await resolveProxyTarget(cfg, cache, 'app.bsky.feed.getTimeline', 'did:web:appview.example#bsky_appview')).toEqual({
      url: 'https://appview.example',
      did: 'did:web:appview.example',
      serviceId: 'bsky_appview',
    })
  })

  it('matches protected and privileged methods case-insensitively', () => {
    expect(isIn(PROTECTED_METHODS, 'com.atproto.server.GETSESSION')).toBe(true)
    expect(isIn(PRIVILEGED_METHODS, 'chat.bsky.convo.sendMessage')).toBe(true)
    expect(isIn(PRIVILEGED_METHODS, 'app.bsky.feed.getTimeline')).toBe(false)
  })
})

describe('service tokens', () => {
  it('are ES256K JWTs with iat, iss, aud, exp = iat + 60, lxm and a random jti, signed by the repo key', async () => {
    const cfg = await testConfig()
    const token = await createServiceJwt(cfg.signingKey, { iss: cfg.did, aud: 'did:web:appview.example', lxm: 'app.bsky.feed.getTimeline' })
    const [h, p, sig] = token.split('.')
    expect(decode(h)).toEqual({ typ: 'JWT', alg: 'ES256K' })
    const payload = decode(p)
    expect(Object.keys(payload)).toEqual(['iat', 'iss', 'aud', 'exp', 'lxm', 'jti'])
    expect(payload).toMatchObject({ iss: cfg.did, aud: 'did:web:appview.example', lxm: 'app.bsky.feed.getTimeline' })
    expect(payload.exp).toBe((payload.iat as number) + 60)
    expect(payload.jti).toMatch(/^[0-9a-f]{32}$/)
    const other = await createServiceJwt(cfg.signingKey, { iss: cfg.did, aud: 'did:web:appview.example', lxm: null })
    expect(decode(other.split('.')[1]).jti).not.toBe(payload.jti)
    expect('lxm' in decode(other.split('.')[1])).toBe(false)
    const sigBytes = Uint8Array.from(atob(sig.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0))
    expect(await verifySignature(cfg.signingKey.did(), new TextEncoder().encode(`${h}.${p}`), sigBytes)).toBe(true)
    expect(isServiceJwt(token)).toBe(true)
    expect(isServiceJwt(other)).toBe(false)
  })

  it('verify only for this PDS, the named method, before expiry, and with the account key', async () => {
    const cfg = await testConfig()
    const lxm = 'com.atproto.repo.uploadBlob'
    const mint = (over: Partial<{ aud: string; lxm: string | null; exp: number; iss: string }>, key = cfg.signingKey) =>
      createServiceJwt(key, { iss: over.iss ?? cfg.did, aud: over.aud ?? cfg.serviceDid, lxm: over.lxm === undefined ? lxm : over.lxm, exp: over.exp })
    expect(await verifyServiceJwt(cfg, await mint({}), lxm, async () => cfg.signingKey.did())).toEqual({ iss: cfg.did })
    const name = async (token: Promise<string>) => (await failure(verifyServiceJwt(cfg, await token, lxm, async () => cfg.signingKey.did())))?.error
    expect(await name(mint({ aud: 'did:web:elsewhere.example' }))).toBe('BadJwtAudience')
    expect(await name(mint({ lxm: 'com.atproto.repo.createRecord' }))).toBe('BadJwtLexiconMethod')
    expect(await name(mint({ lxm: null }))).toBe('BadJwtLexiconMethod')
    expect(await name(mint({ exp: Math.floor(Date.now() / 1000) - 5 }))).toBe('JwtExpired')
    expect(await name(mint({ iss: 'did:web:someone.else' }))).toBe('UntrustedIss')
    expect(await name(mint({}, await Secp256k1Keypair.create()))).toBe('BadJwtSignature')
    const [h, p, s] = (await mint({})).split('.')
    const tampered = `${h}.${p.slice(0, -2)}${p.endsWith('A') ? 'Bw' : 'Aw'}.${s}`
    expect(['BadJwt', 'BadJwtSignature']).toContain(await name(Promise.resolve(tampered)))
  })
})
