/**
 * The owner's writes the AppView has not indexed yet, found by comparing the
 * rev the AppView reports (`atproto-repo-rev`) with this repo's records, and
 * the lag header that says how far behind it is (reference PDS:
 * RecordReader.getRecordsSinceRev, read-after-write/util.ts getLocalLag).
 */
import type { Config } from '../../env'
import type { Db } from '../../db/client'
import { listRecordsSinceRev } from '../../db/local-records'
import { getRoot } from '../../db/repo'
import type { LocalRecords, PostRecord, ProfileRecord } from './types'
import type { Viewer } from './views'

/** As many newer records as the reference looks at (oldest first, all collections). */
const MAX_LOCAL_RECORDS = 10

const PROFILE = 'app.bsky.actor.profile'
const POST = 'app.bsky.feed.post'

export interface LocalState {
  local: LocalRecords
  viewer: Viewer
}

const noLocal = (): LocalRecords => ({ count: 0, profile: null, posts: [] })

/**
 * Records newer than `rev`, and what local views need. Reads only the root
 * when the repo is not ahead of the AppView, the common case.
 */
export const loadLocalRecords = async (db: Db, config: Config, handle: string, rev: string): Promise<LocalState> => {
  const viewer: Viewer = { did: config.did, handle, serviceUrl: config.serviceUrl, profile: null }
  const root = await getRoot(db)
  if (!root || root.rev <= rev) return { local: noLocal(), viewer }

  const profileUri = `at://${config.did}/${PROFILE}/self`
  const found = await listRecordsSinceRev(db, { rev, limit: MAX_LOCAL_RECORDS, extraUri: profileUri })
  viewer.profile = found.extra as ProfileRecord | null
  // No record at or before the AppView's rev: its clock is not about this repo.
  if (!found.hasOlder) return { local: noLocal(), viewer }

  const local = noLocal()
  for (const row of found.records) {
    local.count++
    const descript = { uri: row.uri, cid: row.cid, indexedAt: row.indexedAt }
    if (row.uri === profileUri) local.profile = { ...descript, record: row.value as ProfileRecord }
    else if (row.uri.startsWith(`at://${config.did}/${POST}/`)) local.posts.push({ ...descript, record: row.value as PostRecord })
  }
  return { local, viewer }
}

/** Milliseconds since the oldest write the AppView is missing (profile and posts only, as the reference). */
export const localLag = (local: LocalRecords, now = Date.now()): number | undefined => {
  let oldest = local.profile?.indexedAt
  for (const post of local.posts) if (!oldest || post.indexedAt < oldest) oldest = post.indexedAt
  return oldest === undefined ? undefined : now - new Date(oldest).getTime()
}
