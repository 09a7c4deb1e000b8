/**
 * The email methods with a sender configured: wrangler dev runs with a
 * `[[send_email]]` binding (EMAIL) and PDS_EMAIL_FROM, its local email
 * simulation writes each message's text to a file, and the tests read the
 * codes from there as the owner would from their inbox. Confirmation and
 * update follow the reference's rules: codes per purpose, TokenRequired for a
 * confirmed address, the new address unconfirmed, login by the new address.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type PdsProcess, REPO_ROOT, startPds, stopPds } from './harness'
import { createSession, expectStatus, expectXrpcError, xget, xpost } from './xrpc-client'

const FROM = 'pds@mail.example.com'
const FIRST = 'alice@example.com'
const SECOND = 'alice.new@example.org'

/** wrangler.toml plus the send_email binding, next to it so its relative paths still work. */
const writeEmailConfig = (): string => {
  const dir = join(REPO_ROOT, '.tmp')
  mkdirSync(dir, { recursive: true })
  const path = join(dir, 'wrangler.email.toml')
  const toml = readFileSync(join(REPO_ROOT, 'wrangler.toml'), 'utf8')
    .replace('main = "src/index.ts"', 'main = "../src/index.ts"')
    .replace('migrations_dir = "migrations"', 'migrations_dir = "../migrations"')
  writeFileSync(path, `${toml}\n[[send_email]]\nname = "EMAIL"\n`)
  return path
}

interface SentMail {
  from: string
  to: string
  subject: string
  /** The body, read from the file wrangler wrote (gone once that wrangler process stops). */
  text(): string
}

/** Every message the local send_email binding reported, oldest first. */
const sentMails = (pds: PdsProcess): SentMail[] =>
  [...pds.output().matchAll(/send_email binding called with MessageBuilder:\s*From: (.+)\s*To: (.+)\s*Subject: (.+)\s*Text: (\S+)/g)].map((m) => ({
    from: m[1].trim(),
    to: m[2].trim(),
    subject: m[3].trim(),
    text: () => readFileSync(m[4].trim(), 'utf8'),
  }))

const waitForMail = async (pds: PdsProcess, count: number): Promise<SentMail> => {
  for (let i = 0; i < 50; i++) {
    const mails = sentMails(pds)
    if (mails.length >= count) return mails[count - 1]
    await Bun.sleep(100)
  }
  throw new Error(`no email #${count} in wrangler's output`)
}

const codeIn = (mail: SentMail): string => {
  const text = mail.text()
  const code = /\b([A-Z2-7]{5}-[A-Z2-7]{5})\b/.exec(text)?.[1]
  if (!code) throw new Error(`no code in: ${text}`)
  return code
}

let pds: PdsProcess
let token: string

beforeAll(async () => {
  pds = await startPds({ wranglerConfig: writeEmailConfig(), vars: { PDS_EMAIL: FIRST, PDS_EMAIL_FROM: FROM } })
  token = (await createSession(pds, pds.handle, pds.password)).accessJwt
}, 120_000)

afterAll(async () => {
  await stopPds(pds)
})

const session = async () => expectStatus(await xget(pds, 'com.atproto.server.getSession', undefined, token), 200).body

describe('confirming the address', () => {
  test('requestEmailConfirmation mails a XXXXX-XXXXX code from PDS_EMAIL_FROM to the address', async () => {
    expect(await session()).toMatchObject({ email: FIRST, emailConfirmed: false })
    expectStatus(await xpost(pds, 'com.atproto.server.requestEmailConfirmation', undefined, token), 200)
    const mail = await waitForMail(pds, 1)
    expect(mail).toMatchObject({ from: FROM, to: FIRST, subject: 'Email Confirmation' })
    expect(codeIn(mail)).toMatch(/^[A-Z2-7]{5}-[A-Z2-7]{5}$/)
  })

  test('a wrong address or code is refused with the reference errors, and nothing changes', async () => {
    const code = codeIn(await waitForMail(pds, 1))
    expectXrpcError(await xpost(pds, 'com.atproto.server.confirmEmail', { email: 'someone@else.com', token: code }, token), 400, 'InvalidEmail', 'invalid email')
    expectXrpcError(await xpost(pds, 'com.atproto.server.confirmEmail', { email: FIRST, token: 'AAAAA-AAAAA' }, token), 400, 'InvalidToken', 'Token is invalid')
    expect((await session()).emailConfirmed).toBe(false)
  })

  test('the mailed code confirms the address (case-insensitively), and only once', async () => {
    const code = codeIn(await waitForMail(pds, 1))
    expectStatus(await xpost(pds, 'com.atproto.server.confirmEmail', { email: FIRST.toUpperCase(), token: code.toLowerCase() }, token), 200)
    expect(await session()).toMatchObject({ email: FIRST, emailConfirmed: true })
    expectXrpcError(await xpost(pds, 'com.atproto.server.confirmEmail', { email: FIRST, token: code }, token), 400, 'InvalidToken', 'Token is invalid')
  })
})

describe('changing the address', () => {
  test('a confirmed address must approve its replacement: tokenRequired, then TokenRequired without the code', async () => {
    const res = expectStatus(await xpost(pds, 'com.atproto.server.requestEmailUpdate', undefined, token), 200)
    expect(res.body).toEqual({ tokenRequired: true })
    const mail = await waitForMail(pds, 2)
    expect(mail).toMatchObject({ from: FROM, to: FIRST, subject: 'Email Update Requested' })
    expectXrpcError(await xpost(pds, 'com.atproto.server.updateEmail', { email: SECOND }, token), 400, 'TokenRequired', 'confirmation token required')
    expectXrpcError(await xpost(pds, 'com.atproto.server.updateEmail', { email: SECOND, token: 'AAAAA-AAAAA' }, token), 400, 'InvalidToken', 'Token is invalid')
    expectXrpcError(await xpost(pds, 'com.atproto.server.updateEmail', { email: 'not-an-email' }, token), 400, 'InvalidRequest')
    expect((await session()).email).toBe(FIRST)
  })

  test('with the code the new address replaces the old one, unconfirmed, and logging in by address follows it', async () => {
    const code = codeIn(await waitForMail(pds, 2))
    expectStatus(await xpost(pds, 'com.atproto.server.updateEmail', { email: SECOND, token: code }, token), 200)
    expect(await session()).toMatchObject({ email: SECOND, emailConfirmed: false })
    expectStatus(await xpost(pds, 'com.atproto.server.createSession', { identifier: SECOND, password: pds.password }), 200)
    expectXrpcError(await xpost(pds, 'com.atproto.server.createSession', { identifier: FIRST, password: pds.password }), 401, 'AuthenticationRequired')
  })

  test('an unconfirmed address is changed without a code', async () => {
    const res = expectStatus(await xpost(pds, 'com.atproto.server.requestEmailUpdate', undefined, token), 200)
    expect(res.body).toEqual({ tokenRequired: false })
    expect(sentMails(pds)).toHaveLength(2)
    expectStatus(await xpost(pds, 'com.atproto.server.updateEmail', { email: FIRST }, token), 200)
    expect(await session()).toMatchObject({ email: FIRST, emailConfirmed: false })
  })

  test('the state survives a restart (it is in D1, not in the settings)', async () => {
    await pds.restart()
    token = (await createSession(pds, pds.handle, pds.password)).accessJwt
    expect(await session()).toMatchObject({ email: FIRST, emailConfirmed: false })
  }, 120_000)

  test('an app password may confirm but not change the address (the reference scopes)', async () => {
    const app = expectStatus(await xpost(pds, 'com.atproto.server.createAppPassword', { name: 'mail-test' }, token), 200).body
    const appToken = (await createSession(pds, pds.handle, app.password)).accessJwt
    expectXrpcError(await xpost(pds, 'com.atproto.server.requestEmailUpdate', undefined, appToken), 400, 'InvalidToken', 'Bad token scope')
    expectXrpcError(await xpost(pds, 'com.atproto.server.updateEmail', { email: SECOND }, appToken), 400, 'InvalidToken', 'Bad token scope')
    const before = sentMails(pds).length
    expectStatus(await xpost(pds, 'com.atproto.server.requestEmailConfirmation', undefined, appToken), 200)
    expect((await waitForMail(pds, before + 1)).to).toBe(FIRST)
  })
})
