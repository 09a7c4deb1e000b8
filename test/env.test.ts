/**
 * loadConfig (src/env.ts): a broken setting fails with a ConfigError that
 * names the variable (so the operator can fix it from the logs) and never
 * contains a secret's value; a good env gives typed config, computed once.
 */
import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig, type WorkerEnv } from '../src/env'
import { toXrpcError } from '../src/http/errors'

const base = env as WorkerEnv

/** A copy of the test env with some settings replaced (undefined removes one). */
const withSettings = (changes: Partial<Record<keyof WorkerEnv, string | undefined>>): WorkerEnv => {
  const copy: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) delete copy[key]
    else copy[key] = value
  }
  return copy as unknown as WorkerEnv
}

const failure = async (e: WorkerEnv): Promise<ConfigError> => {
  const err = await loadConfig(e).then(
    () => null,
    (x: unknown) => x,
  )
  expect(err).toBeInstanceOf(ConfigError)
  return err as ConfigError
}

describe('loadConfig', () => {
  it('builds typed config from the test env, once per env object', async () => {
    const cfg = await loadConfig(base)
    expect(cfg.hostname).toBe('localhost:8787')
    expect(cfg.serviceUrl).toBe('http://localhost:8787')
    expect(cfg.did).toBe('did:web:localhost%3A8787')
    expect(cfg.serviceDid).toBe('did:web:localhost%3A8787')
    expect(cfg.handle).toBe('alice.test')
    expect(cfg.signingKey.did()).toBe('did:key:zQ3shTh8CQsTnQuhXRDYXZiEbCwMpVkAuHLf28pNu5bTTA9om')
    expect(cfg.jwtSecret.byteLength).toBeGreaterThanOrEqual(32)
    expect(loadConfig(base)).toBe(loadConfig(base))
  })

  it('a missing JWT_SECRET is named', async () => {
    const err = await failure(withSettings({ JWT_SECRET: undefined }))
    expect(err.message).toMatch(/JWT_SECRET/)
    const blank = await failure(withSettings({ JWT_SECRET: '   ' }))
    expect(blank.message).toMatch(/JWT_SECRET/)
  })

  it('a short JWT_SECRET is named and not echoed', async () => {
    const secret = 'short-secret-value-xyz'
    const err = await failure(withSettings({ JWT_SECRET: secret }))
    expect(err.message).toMatch(/JWT_SECRET/)
    expect(err.message).not.toContain(secret)
  })

  it('a bad signing key is named and not echoed', async () => {
    for (const key of ['zz'.repeat(32), 'abc123', '0'.repeat(64), 'f'.repeat(64), `${'1'.repeat(64)}00`]) {
      const err = await failure(withSettings({ PDS_SIGNING_KEY: key }))
      expect(err.message, key).toMatch(/PDS_SIGNING_KEY/)
      expect(err.message, key).not.toContain(key)
    }
    expect((await failure(withSettings({ PDS_SIGNING_KEY: undefined }))).message).toMatch(/PDS_SIGNING_KEY/)
  })

  it('a bad handle, hostname or DID is named', async () => {
    expect((await failure(withSettings({ PDS_HANDLE: 'not a handle!' }))).message).toMatch(/PDS_HANDLE/)
    expect((await failure(withSettings({ PDS_HANDLE: 'nodot' }))).message).toMatch(/PDS_HANDLE/)
    expect((await failure(withSettings({ PDS_HOSTNAME: 'https://pds.example.com/' }))).message).toMatch(/PDS_HOSTNAME/)
    expect((await failure(withSettings({ PDS_DID: 'did:key:zabc' }))).message).toMatch(/PDS_DID/)
    expect((await failure(withSettings({ PDS_HANDLE: undefined }))).message).toMatch(/PDS_HANDLE/)
  })

  it('a missing or malformed PDS_PASSWORD is named and not echoed', async () => {
    expect((await failure(withSettings({ PDS_PASSWORD: undefined }))).message).toMatch(/PDS_PASSWORD/)
    const malformed = 'pbkdf2-sha256$500$c2FsdA$aGFzaA'
    const err = await failure(withSettings({ PDS_PASSWORD: malformed }))
    expect(err.message).toMatch(/PDS_PASSWORD/)
    expect(err.message).not.toContain('c2FsdA')
  })

  // The contract (src/env.ts header) is an error naming the variable. A hash
  // setting whose salt or hash part is not base64url fails inside atob()
  // instead, and the ConfigError carries atob's message, which names nothing.
  it('a PDS_PASSWORD hash with invalid base64 is named', async () => {
    const err = await failure(withSettings({ PDS_PASSWORD: 'pbkdf2-sha256$10000$c2FsdA$not*base64*at*all*!!' }))
    expect(err.message).toMatch(/PDS_PASSWORD/)
  })

  it('a bad PDS_BLOB_UPLOAD_LIMIT is named', async () => {
    expect((await failure(withSettings({ PDS_BLOB_UPLOAD_LIMIT: '-5' }))).message).toMatch(/PDS_BLOB_UPLOAD_LIMIT/)
    expect((await loadConfig(withSettings({ PDS_BLOB_UPLOAD_LIMIT: '1000' }))).blobUploadLimit).toBe(1000)
  })

  it('PDS_DEV_LOOPBACK_ORIGIN: off by default, a loopback origin for a PDS on localhost, refused anywhere else', async () => {
    expect((await loadConfig(withSettings({ PDS_HOSTNAME: 'localhost:8787' }))).devLoopbackOrigin).toBeNull()
    const local = withSettings({ PDS_HOSTNAME: 'localhost:8787', PDS_DID: 'did:web:localhost%3A8787', PDS_DEV_LOOPBACK_ORIGIN: 'http://127.0.0.1:9999' })
    expect((await loadConfig(local)).devLoopbackOrigin).toBe('http://127.0.0.1:9999')
    const production = withSettings({ PDS_HOSTNAME: 'pds.example.com', PDS_DID: 'did:web:pds.example.com', PDS_DEV_LOOPBACK_ORIGIN: 'http://127.0.0.1:9999' })
    expect((await failure(production)).message).toMatch(/PDS_DEV_LOOPBACK_ORIGIN is for local development only/)
    for (const origin of ['https://127.0.0.1:9999', 'http://10.0.0.1:80', 'http://127.0.0.1:9999/path']) {
      expect((await failure(withSettings({ PDS_HOSTNAME: 'localhost:8787', PDS_DID: 'did:web:localhost%3A8787', PDS_DEV_LOOPBACK_ORIGIN: origin }))).message).toMatch(/PDS_DEV_LOOPBACK_ORIGIN/)
    }
  })

  it('a config failure reaches clients as a 500 naming the setting but no secret', async () => {
    const secret = 'tiny-secret'
    const err = await failure(withSettings({ JWT_SECRET: secret }))
    const xrpc = toXrpcError(err)
    expect(xrpc.status).toBe(500)
    expect(xrpc.message).toMatch(/JWT_SECRET/)
    expect(JSON.stringify(xrpc.body)).not.toContain(secret)
  })

  it('a failed config is not cached: the same env object is re-read', async () => {
    const e = withSettings({ JWT_SECRET: 'too-short' })
    await failure(e)
    ;(e as unknown as Record<string, string>).JWT_SECRET = 'a-long-enough-secret-0123456789abcdef'
    expect((await loadConfig(e)).handle).toBe('alice.test')
  })
})
