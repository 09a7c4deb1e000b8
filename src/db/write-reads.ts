/**
 * The reads of a record write's first round trip (src/repo/plan-writes.ts),
 * as plain SQL in one batch: the root, the account's status, the password
 * session the write is made under, the blobs its records reference and the
 * older follows/likes/... a new one replaces. They run on every write, so
 * they skip drizzle's query building; rows come back with the field names
 * the callers use.
 */
import type { AccountRow } from './account-row'
import type { BlobRow } from './blobs'
import { placeholders, type Db, type SqlStatement } from './client'
import { backlinkUrisStatement, chunk, MAX_PARAMS, type BacklinkQuery, type RootRow } from './repo'
import { liveSessionStatement } from './tokens'

export interface WriteReadsRequest {
  /** Check that this password session is still live (src/auth/live-session.ts). */
  liveSession: string | null
  blobCids: string[]
  /** Records of a collection (by URI prefix) linking to `linkTo` at `path`. */
  backlinks: BacklinkQuery[]
}

export interface WriteReads {
  root: RootRow | null
  account: AccountRow | null
  /** Null when no session was asked about. */
  sessionLive: boolean | null
  blobs: Map<string, BlobRow>
  /** For each asked backlink, the URIs of the records that have it. */
  backlinkUris: string[][]
}

export const readForWrite = async (db: Db, req: WriteReadsRequest): Promise<WriteReads> => {
  const blobParts = chunk(req.blobCids, MAX_PARAMS)
  const statements: SqlStatement[] = [
    { sql: 'SELECT cid, rev FROM repo_root LIMIT 1' },
    {
      sql: 'SELECT did, handle, status, created_at AS createdAt, deactivated_at AS deactivatedAt, delete_after AS deleteAfter FROM account LIMIT 1',
    },
    ...(req.liveSession === null ? [] : [liveSessionStatement(req.liveSession)]),
    ...blobParts.map((part) => ({
      sql: `SELECT cid, r2_key AS r2Key, mime_type AS mimeType, size FROM blob WHERE cid IN (${placeholders(part.length)})`,
      params: part,
    })),
    ...req.backlinks.map(backlinkUrisStatement),
  ]
  const rows = await db.batchSql(statements)
  let at = 2
  const sessionLive = req.liveSession === null ? null : rows[at++].length > 0
  const blobs = new Map<string, BlobRow>()
  for (let i = 0; i < blobParts.length; i++) for (const b of rows[at++] as unknown as BlobRow[]) blobs.set(b.cid, b)
  const backlinkUris = req.backlinks.map(() => (rows[at++] as { uri: string }[]).map((r) => r.uri))
  return {
    root: (rows[0][0] as unknown as RootRow | undefined) ?? null,
    account: (rows[1][0] as unknown as AccountRow | undefined) ?? null,
    sessionLive,
    blobs,
    backlinkUris,
  }
}
