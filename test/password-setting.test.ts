/**
 * The owner's password setting (src/password-setting.ts): plain and PBKDF2
 * hash forms verify the right password and only it; malformed hash settings
 * are refused with a message that names the setting and never echoes it.
 */
import { describe, expect, it } from 'vitest'
import { base64url } from 'jose'
import { hashPassword, parsePasswordSetting, PBKDF2_MAX_ITERATIONS, verifyPassword } from '../src/password-setting'

describe('plain setting', () => {
  it('verifies the exact password only', async () => {
    const setting = await parsePasswordSetting('correct horse battery staple')
    expect(setting.kind).toBe('plain')
    expect(await verifyPassword(setting, 'correct horse battery staple')).toBe(true)
    for (const wrong of ['correct horse battery stapl', 'correct horse battery staple ', 'Correct horse battery staple', '']) {
      expect(await verifyPassword(setting, wrong)).toBe(false)
    }
  })

  it('does not keep the plaintext', async () => {
    const setting = await parsePasswordSetting('plaintext-marker')
    expect(JSON.stringify({ ...setting, digest: [...(setting as { digest: Uint8Array }).digest] })).not.toContain('plaintext-marker')
  })
})

describe('pbkdf2 hash setting', () => {
  it('a hash made by hashPassword verifies the password, and only it', async () => {
    const hash = await hashPassword('s3cret-pass', 10_000)
    expect(hash).toMatch(/^pbkdf2-sha256\$10000\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]{43}$/)
    const setting = await parsePasswordSetting(hash)
    expect(setting).toMatchObject({ kind: 'hash', iterations: 10_000 })
    expect(await verifyPassword(setting, 's3cret-pass')).toBe(true)
    expect(await verifyPassword(setting, 's3cret-pasS')).toBe(false)
    expect(await verifyPassword(setting, '')).toBe(false)
  })

  it('the default is the most iterations workerd allows, and it works here', async () => {
    const hash = await hashPassword('max')
    expect(hash.split('$')[1]).toBe(String(PBKDF2_MAX_ITERATIONS))
    expect(await verifyPassword(await parsePasswordSetting(hash), 'max')).toBe(true)
  })

  it('two hashes of one password differ (random salt) and both verify', async () => {
    const [a, b] = [await hashPassword('same', 10_000), await hashPassword('same', 10_000)]
    expect(a).not.toBe(b)
    expect(await verifyPassword(await parsePasswordSetting(a), 'same')).toBe(true)
    expect(await verifyPassword(await parsePasswordSetting(b), 'same')).toBe(true)
  })

  it('refuses malformed hash settings, naming PDS_PASSWORD and not the value', async () => {
    const salt = base64url.encode(new Uint8Array(16).fill(7))
    const hash32 = base64url.encode(new Uint8Array(32).fill(9))
    const bad = [
      `pbkdf2-sha256$abc$${salt}$${hash32}`,
      `pbkdf2-sha256$9999$${salt}$${hash32}`,
      `pbkdf2-sha256$${PBKDF2_MAX_ITERATIONS + 1}$${salt}$${hash32}`,
      `pbkdf2-sha256$10000.5$${salt}$${hash32}`,
      `pbkdf2-sha256$10000$$${hash32}`,
      `pbkdf2-sha256$10000$${salt}$`,
      `pbkdf2-sha256$10000$${salt}`,
      `pbkdf2-sha256$10000$${salt}$${base64url.encode(new Uint8Array(31))}`,
    ]
    for (const value of bad) {
      const err = await parsePasswordSetting(value).then(
        () => null,
        (e: unknown) => e as Error,
      )
      expect(err, value).toBeInstanceOf(Error)
      expect(err!.message, value).toMatch(/PDS_PASSWORD/)
      expect(err!.message, value).not.toContain(salt)
      expect(err!.message, value).not.toContain(hash32)
    }
  })
})
