/**
 * The OAuth queries (src/db/oauth.ts, oauth-account.ts) against the real D1
 * schema: every once-only transition happens once when isolates race
 * (approving a request, redeeming a code, rotating a refresh token), a
 * request stays with the browser that took it, revoking an app removes all it
 * holds, and the cron's clean-up deletes only expired rows, bounded.
 */
import { beforeEach, describe, expect, it } from 'vitest'
import { openDb, type Db } from '../../src/db/client'
import {
  approveRequest,
  bindRequestToDevice,
  claimOnce,
  consumeCode,
  deleteSessions,
  getSessionByRefresh,
  insertRequest,
  insertSession,
  rotateSessionTokens,
  sessionOfUsedRefresh,
  type OAuthSessionRow,
} from '../../src/db/oauth'
import { deleteExpiredOAuthState, insertDevice, listGrants, revokeClient, upsertGrant } from '../../src/db/oauth-account'
import { workerEnv } from '../repo/fixtures'

const OAUTH_TABLES = ['oauth_request', 'oauth_session', 'oauth_used_refresh', 'oauth_replay', 'oauth_grant', 'oauth_device']
const NOW = '2030-01-01T00:00:00.000Z'
const LATER = '2030-01-01T00:05:00.000Z'
const PAST = '2029-12-31T23:00:00.000Z'

let db: Db

beforeEach(async () => {
  await workerEnv.DB.batch(OAUTH_TABLES.map((t) => workerEnv.DB.prepare(`DELETE FROM ${t}`)))
  db = openDb(workerEnv.DB)
})

const request = (id: string, expiresAt = LATER) =>
  insertRequest(db, { id, clientId: 'https://app.example.net/c.json', clientAuth: '{"method":"none"}', parameters: '{}', dpopJkt: 'jkt', expiresAt })

const session = (id: string, overrides: Partial<OAuthSessionRow> = {}): OAuthSessionRow => ({
  id,
  did: 'did:plc:abcdefghijklmnopqrstuvwx',
  clientId: 'https://app.example.net/c.json',
  clientAuth: '{"method":"none"}',
  dpopJkt: 'jkt',
  requestScope: 'atproto',
  scope: 'atproto',
  codeHash: `code-${id}`,
  accessHash: `access-${id}`,
  accessExpiresAt: LATER,
  refreshHash: `refresh-${id}`,
  createdAt: NOW,
  refreshedAt: NOW,
  expiresAt: LATER,
  ...overrides,
})

describe('authorization requests', () => {
  it('two racing approvals: one wins, and the code it stored redeems once', async () => {
    await request('req-1')
    const approvals = await Promise.all(['code-a', 'code-b'].map((codeHash) => approveRequest(db, { id: 'req-1', deviceId: 'dev-1', codeHash, now: NOW, codeExpiresAt: LATER })))
    const winners = approvals.filter((a) => a !== null)
    expect(winners).toHaveLength(1)
    const code = winners[0]?.codeHash as string
    const redemptions = await Promise.all([consumeCode(db, code), consumeCode(db, code)])
    expect(redemptions.filter((r) => r !== null)).toHaveLength(1)
  })

  it('a request taken by one browser cannot be taken or approved by another; an expired one by none', async () => {
    await request('req-2')
    expect(await bindRequestToDevice(db, 'req-2', 'dev-1', LATER, NOW)).toBe(true)
    expect(await bindRequestToDevice(db, 'req-2', 'dev-2', LATER, NOW)).toBe(false)
    expect(await approveRequest(db, { id: 'req-2', deviceId: 'dev-2', codeHash: 'c', now: NOW, codeExpiresAt: LATER })).toBeNull()
    await request('req-3', PAST)
    expect(await bindRequestToDevice(db, 'req-3', 'dev-1', LATER, NOW)).toBe(false)
    expect(await approveRequest(db, { id: 'req-3', deviceId: 'dev-1', codeHash: 'c3', now: NOW, codeExpiresAt: LATER })).toBeNull()
  })
})

describe('sessions', () => {
  it('two racing refreshes with the same token: one rotates, the old token is remembered as used', async () => {
    await insertSession(db, session('ses-1'))
    const rotate = (n: string) =>
      rotateSessionTokens(db, {
        id: 'ses-1',
        oldRefreshHash: 'refresh-ses-1',
        set: { accessHash: `access-${n}`, accessExpiresAt: LATER, refreshHash: `refresh-${n}`, refreshedAt: NOW, expiresAt: LATER, scope: 'atproto', clientAuth: '{"method":"none"}' },
      })
    const results = await Promise.all([rotate('x'), rotate('y')])
    expect(results.filter(Boolean)).toHaveLength(1)
    expect(await getSessionByRefresh(db, 'refresh-ses-1')).toBeNull()
    expect(await sessionOfUsedRefresh(db, 'refresh-ses-1')).toBe('ses-1')
    await deleteSessions(db, ['ses-1'])
    expect(await sessionOfUsedRefresh(db, 'refresh-ses-1')).toBeNull()
  })

  it('revoking an app removes its grant, sessions, used refresh tokens and pending requests, and nothing of other apps', async () => {
    const other = 'https://other.example.net/c.json'
    await insertSession(db, session('ses-a'))
    await insertSession(db, session('ses-b', { clientId: other }))
    await upsertGrant(db, { clientId: 'https://app.example.net/c.json', clientName: 'App', clientUri: null, scope: 'atproto' }, NOW)
    await upsertGrant(db, { clientId: other, clientName: 'Other', clientUri: null, scope: 'atproto' }, NOW)
    await request('req-a')
    await revokeClient(db, 'https://app.example.net/c.json')
    expect((await listGrants(db)).map((g) => g.clientId)).toEqual([other])
    const rows = await workerEnv.DB.prepare('SELECT id FROM oauth_session').all<{ id: string }>()
    expect(rows.results.map((r) => r.id)).toEqual(['ses-b'])
    expect((await workerEnv.DB.prepare('SELECT count(*) AS n FROM oauth_request').first<{ n: number }>())?.n).toBe(0)
  })

  it('a grant keeps every scope the app was ever approved for', async () => {
    await upsertGrant(db, { clientId: 'c', clientName: 'C', clientUri: null, scope: 'atproto transition:generic' }, NOW)
    await upsertGrant(db, { clientId: 'c', clientName: 'C', clientUri: null, scope: 'atproto transition:chat.bsky' }, LATER)
    expect((await listGrants(db))[0]).toMatchObject({ scope: 'atproto transition:generic transition:chat.bsky', createdAt: NOW, updatedAt: LATER })
  })
})

describe('the clean-up', () => {
  it('deletes expired rows only, at most `limit` per table', async () => {
    for (let i = 0; i < 3; i++) await claimOnce(db, `old-${i}`, PAST, '2029-01-01T00:00:00.000Z')
    await claimOnce(db, 'fresh', LATER, NOW)
    await request('req-old', PAST)
    await request('req-new')
    await insertSession(db, session('ses-old', { expiresAt: PAST }))
    await insertDevice(db, { id: 'dev-old', userAgent: null, remembered: false, createdAt: PAST, expiresAt: PAST })
    expect(await deleteExpiredOAuthState(db, NOW, 2)).toBe(2 + 1 + 1 + 1)
    expect(await deleteExpiredOAuthState(db, NOW, 2)).toBe(1)
    expect(await deleteExpiredOAuthState(db, NOW, 2)).toBe(0)
    expect((await workerEnv.DB.prepare('SELECT key FROM oauth_replay').all<{ key: string }>()).results).toEqual([{ key: 'fresh' }])
    expect((await workerEnv.DB.prepare('SELECT id FROM oauth_request').all<{ id: string }>()).results).toEqual([{ id: 'req-new' }])
  })
})
