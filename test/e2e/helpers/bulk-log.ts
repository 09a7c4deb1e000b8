/**
 * Fills a PDS's firehose log with big commits, fast: one createRecord of a
 * ~950 kB record per commit, in a collection the server stores without a
 * lexicon. The filler is random base64, so a frame does not shrink much if a
 * client negotiates permessage-deflate (a stalled consumer must cost the
 * server what a real log would, not a run of 'x').
 */
import { randomBytes } from 'node:crypto'
import type { AtpAgent } from '@atproto/api'

const COLLECTION = 'com.example.e2e.bulk'
/** Under the server's 1 MB record limit and 2 MB request limit, with room for the JSON around it. */
const RECORD_CHARS = 950_000

/** Appends commits until about `bytes` of records were written; returns how many commits it made. */
export const appendBulkCommits = async (agent: AtpAgent, did: string, bytes: number): Promise<number> => {
  const count = Math.ceil(bytes / RECORD_CHARS)
  for (let i = 0; i < count; i++) {
    const filler = randomBytes((RECORD_CHARS * 3) / 4).toString('base64')
    await agent.com.atproto.repo.createRecord({ repo: did, collection: COLLECTION, record: { $type: COLLECTION, i, filler } })
  }
  return count
}
