/**
 * Records for the import tests (follows, blocks, likes, reposts, posts with
 * images, a profile with an avatar) and the record index the import must
 * build for them, written out here by hand from how the records were made,
 * not with src/repo/prepare.ts or classify.ts, so the tests have an oracle
 * of their own. Compared with the D1 tables by `indexRows`.
 */
import { type Cid, cidForRawBytes } from '@atproto/lex-data'
import { workerEnv } from '../fixtures'
import type { RecordSpec } from './fixtures'

const AT = '2024-05-01T12:00:00.000Z'
const blobRef = (ref: Cid) => ({ $type: 'blob', ref, mimeType: 'image/jpeg', size: 1000 })

export const blobCid = (seed: string): Promise<Cid> => cidForRawBytes(new TextEncoder().encode(seed))

export const follow = (rkey: string, subject: string): RecordSpec => ({
  collection: 'app.bsky.graph.follow',
  rkey,
  record: { $type: 'app.bsky.graph.follow', subject, createdAt: AT },
})

export const block = (rkey: string, subject: string): RecordSpec => ({
  collection: 'app.bsky.graph.block',
  rkey,
  record: { $type: 'app.bsky.graph.block', subject, createdAt: AT },
})

const subjectRef = (uri: string) => ({ uri, cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' })

export const like = (rkey: string, uri: string): RecordSpec => ({
  collection: 'app.bsky.feed.like',
  rkey,
  record: { $type: 'app.bsky.feed.like', subject: subjectRef(uri), createdAt: AT },
})

export const repost = (rkey: string, uri: string): RecordSpec => ({
  collection: 'app.bsky.feed.repost',
  rkey,
  record: { $type: 'app.bsky.feed.repost', subject: subjectRef(uri), createdAt: AT },
})

export const post = (rkey: string, text: string, images: Cid[] = []): RecordSpec => ({
  collection: 'app.bsky.feed.post',
  rkey,
  record: {
    $type: 'app.bsky.feed.post',
    text,
    createdAt: AT,
    ...(images.length ? { embed: { $type: 'app.bsky.embed.images', images: images.map((image) => ({ image: blobRef(image), alt: '' })) } } : {}),
  },
})

export const profile = (avatar: Cid): RecordSpec => ({
  collection: 'app.bsky.actor.profile',
  rkey: 'self',
  record: { $type: 'app.bsky.actor.profile', displayName: 'Alice', avatar: blobRef(avatar) },
})

export interface IndexRows {
  records: { uri: string; cid: string }[]
  backlinks: { uri: string; path: string; link_to: string }[]
  blobs: { record_uri: string; blob_cid: string }[]
}

export const uriOf = (did: string, r: { collection: string; rkey: string }): string => `at://${did}/${r.collection}/${r.rkey}`

type Shape = { subject?: string | { uri: string }; avatar?: { ref: Cid }; embed?: { images: { image: { ref: Cid } }[] } }

/** The backlinks and blob references `records` must leave in the index (records come from `recordCids`). */
export const expectedIndex = (did: string, records: RecordSpec[], recordCids: Map<string, string>): IndexRows => {
  const rows: IndexRows = { records: [], backlinks: [], blobs: [] }
  for (const r of records) {
    const uri = uriOf(did, r)
    const value = r.record as Shape
    rows.records.push({ uri, cid: recordCids.get(`${r.collection}/${r.rkey}`) ?? 'not in the repo' })
    if (r.collection === 'app.bsky.graph.follow' || r.collection === 'app.bsky.graph.block') {
      rows.backlinks.push({ uri, path: 'subject', link_to: value.subject as string })
    }
    if (r.collection === 'app.bsky.feed.like' || r.collection === 'app.bsky.feed.repost') {
      rows.backlinks.push({ uri, path: 'subject.uri', link_to: (value.subject as { uri: string }).uri })
    }
    const blobs = [...(value.embed?.images.map((i) => i.image.ref) ?? []), ...(value.avatar ? [value.avatar.ref] : [])]
    for (const cid of blobs) rows.blobs.push({ record_uri: uri, blob_cid: cid.toString() })
  }
  return sortIndex(rows)
}

const byJson = (a: unknown, b: unknown): number => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1)
const sortIndex = (rows: IndexRows): IndexRows => ({
  records: rows.records.sort(byJson),
  backlinks: rows.backlinks.sort(byJson),
  blobs: rows.blobs.sort(byJson),
})

/** The record index as D1 holds it. */
export const indexRows = async (): Promise<IndexRows> => {
  const [records, backlinks, blobs] = await workerEnv.DB.batch([
    workerEnv.DB.prepare('SELECT uri, cid FROM record'),
    workerEnv.DB.prepare('SELECT uri, path, link_to FROM backlink'),
    workerEnv.DB.prepare('SELECT record_uri, blob_cid FROM record_blob'),
  ])
  return sortIndex({
    records: records.results as IndexRows['records'],
    backlinks: backlinks.results as IndexRows['backlinks'],
    blobs: blobs.results as IndexRows['blobs'],
  })
}
