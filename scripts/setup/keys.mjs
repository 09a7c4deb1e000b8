/**
 * Key material for setup: the repo signing key (secp256k1, the PDS_SIGNING_KEY
 * secret), the PDS's PLC rotation key (the PDS_PLC_ROTATION_KEY secret), the
 * owner's optional PLC rotation key (kept by the owner only, never sent to
 * Cloudflare), the JWT secret and the login password, of which only the
 * salted PBKDF2 hash is stored (the same format src/password-setting.ts checks).
 *
 * Existing values always win: a key that exists is never replaced, because a
 * new signing key would orphan the repo's signatures and Cloudflare secrets
 * cannot be read back to compare.
 */
import { randomBytes, randomInt } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { Secp256k1Keypair } from '@atproto/crypto'
import { hashPassword, parsePasswordSetting, verifyPassword } from '../../src/password-setting.ts'

const hex = (bytes) => Buffer.from(bytes).toString('hex')

export const newSecp256k1Hex = async () => hex(await (await Secp256k1Keypair.create({ exportable: true })).export())

/** did:key of a private key given as 64 hex characters. */
export const didKeyOf = async (privateKeyHex) => (await Secp256k1Keypair.import(privateKeyHex)).did()

export const newJwtSecret = () => randomBytes(32).toString('hex')

/** 4 groups of 4 from a 32-letter alphabet without look-alikes: 80 bits, easy to type on a phone. */
export const newPassword = () => {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789'
  const groups = []
  for (let g = 0; g < 4; g++) groups.push(Array.from({ length: 4 }, () => alphabet[randomInt(alphabet.length)]).join(''))
  return groups.join('-')
}

export const isPasswordHash = (value) => typeof value === 'string' && value.startsWith('pbkdf2-sha256$')

/**
 * The PDS_PASSWORD to store. Keeps the current hash when no new password is
 * given or the given one already matches it (so re-running is a no-op);
 * replaces a plain-text value by its hash.
 */
export const passwordSetting = async (current, given) => {
  if (current && given === undefined) {
    return { value: isPasswordHash(current) ? current : await hashPassword(current), plain: null, changed: !isPasswordHash(current) }
  }
  if (current && given !== undefined && (await verifyPassword(await parsePasswordSetting(current), given))) {
    return { value: isPasswordHash(current) ? current : await hashPassword(given), plain: null, changed: !isPasswordHash(current) }
  }
  const plain = given ?? newPassword()
  return { value: await hashPassword(plain), plain: given === undefined ? plain : null, changed: true }
}

// ---------------------------------------------------------------- the owner's key backup

export const BACKUP_NOTE =
  'Keep this file somewhere safe and offline (a password manager, an encrypted USB stick). ' +
  'The signing key signs your repo; the rotation keys control your did:plc identity (yours first, then the PDS\'s). ' +
  'Anyone holding them can impersonate you; without them you cannot recover the account. ' +
  'Cloudflare secrets cannot be read back, so this file is the only copy outside the PDS.'

export const backupText = (b) =>
  `${JSON.stringify(
    {
      note: BACKUP_NOTE,
      createdAt: b.createdAt,
      did: b.did,
      handle: b.handle,
      hostname: b.hostname,
      signingKey: { privateKeyHex: b.signingKeyHex, didKey: b.signingDidKey },
      rotationKey: b.rotationKeyHex ? { privateKeyHex: b.rotationKeyHex, didKey: b.rotationDidKey } : null,
      pdsRotationKey: b.pdsRotationKeyHex ? { privateKeyHex: b.pdsRotationKeyHex, didKey: b.pdsRotationDidKey } : null,
    },
    null,
    2,
  )}\n`

/** Keys from a backup written by setup (for a new checkout of an existing PDS). */
export const readBackup = (path) => {
  if (!existsSync(path)) throw new Error(`no key backup at ${path}`)
  const b = JSON.parse(readFileSync(path, 'utf8'))
  const key = b?.signingKey?.privateKeyHex
  if (!/^[0-9a-f]{64}$/i.test(key ?? '')) throw new Error(`${path} holds no signing key`)
  return {
    signingKeyHex: key,
    rotationKeyHex: b.rotationKey?.privateKeyHex ?? null,
    pdsRotationKeyHex: b.pdsRotationKey?.privateKeyHex ?? null,
    did: b.did,
    handle: b.handle,
    hostname: b.hostname,
  }
}
