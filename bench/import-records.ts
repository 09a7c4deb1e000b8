/**
 * A lived-in repo for the importRepo benchmark, seeded on the reference PDS
 * with applyWrites (200 creates a call, its limit). Three records in four are
 * posts of 100-300 characters (app.bsky.feed.post lexicon: at most 300
 * graphemes), some with link, mention and tag facets (byte offsets into the
 * UTF-8 text, as the lexicon says), external-link and quote embeds, replies
 * into earlier posts; the rest are likes of posts (own and others') and
 * follows. Likes, follows, replies and quotes give the import backlinks to
 * index. Deterministic: the same count gives records of the same shapes.
 */
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { xpost } from '../test/e2e/xrpc-client'
import { prng } from '../test/e2e/helpers/firehose-workload'
import type { Side } from '../test/e2e/helpers/migration'

const WORDS = (
  'the a of and to in is it that for on with as this was at by from be have not are but or an they we you ' +
  'posting today morning coffee weather build server protocol network relay feed timeline thread reply quote ' +
  'decentralized identity handle repo record commit signature bluesky atproto garden bicycle train station ' +
  'reading book music concert weekend friends family kitchen recipe bread photo light evening walk river ' +
  'debugging deploy release notes finally works again thanks everyone great question interesting idea'
).split(' ')
const EMOJI = ['🌱', '☕', '🚲', '📚', '✨', '🎶']
const BASE32_SORT = '234567abcdefghijklmnopqrstuvwxyz'
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'
const utf8 = new TextEncoder()

interface StrongRef {
  uri: string
  cid: string
}

/** A made-up but well-formed reference to someone else's post (its CID hashes some bytes). */
const foreignPost = async (n: number): Promise<StrongRef> => {
  const did = `did:plc:${Array.from({ length: 24 }, (_, i) => BASE32[(n * 7 + i * 13) % 32]).join('')}`
  const rkey = `3k${Array.from({ length: 11 }, (_, i) => BASE32_SORT[(n >> (i % 5)) % 32]).join('')}`
  const cid = CID.createV1(0x71, await sha256.digest(utf8.encode(`foreign post ${n}`)))
  return { uri: `at://${did}/app.bsky.feed.post/${rkey}`, cid: cid.toString() }
}

const fakeDid = (n: number): string => `did:plc:${Array.from({ length: 24 }, (_, i) => BASE32[(n * 31 + i * 5) % 32]).join('')}`

/** Text of about `target` characters, with the facets it carries (byte ranges into its UTF-8). */
const postText = (rand: () => number, i: number): { text: string; facets: unknown[] } => {
  const target = 100 + Math.floor(rand() * 200)
  const parts: { text: string; feature?: Record<string, unknown> }[] = []
  if (i % 9 === 4) parts.push({ text: `@friend${i % 97}.test`, feature: { $type: 'app.bsky.richtext.facet#mention', did: fakeDid(i % 97) } }, { text: ' ' })
  let words = ''
  const tail: typeof parts = []
  if (i % 4 === 1) tail.push({ text: ' ' }, { text: `https://example.com/notes/${i}`, feature: { $type: 'app.bsky.richtext.facet#link', uri: `https://example.com/notes/${i}` } })
  if (i % 11 === 3) tail.push({ text: ' ' }, { text: '#atproto', feature: { $type: 'app.bsky.richtext.facet#tag', tag: 'atproto' } })
  const fixed = [...parts, ...tail].reduce((n, p) => n + p.text.length, 0)
  while (words.length + fixed < target - 12) words += `${words ? ' ' : ''}${WORDS[Math.floor(rand() * WORDS.length)]}`
  if (i % 5 === 2) words += ` ${EMOJI[i % EMOJI.length]}`
  parts.push({ text: words }, ...tail)
  let text = ''
  const facets: unknown[] = []
  for (const p of parts) {
    const byteStart = utf8.encode(text).byteLength
    text += p.text
    if (p.feature) facets.push({ index: { byteStart, byteEnd: byteStart + utf8.encode(p.text).byteLength }, features: [p.feature] })
  }
  return { text, facets }
}

/** The i-th record's collection and value; `earlier` are posts already created (for replies, quotes, likes). */
const recordAt = async (i: number, rand: () => number, earlier: StrongRef[]): Promise<{ collection: string; value: Record<string, unknown> }> => {
  const createdAt = new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString()
  const slot = i % 20
  const own = earlier.length > 0 ? earlier[Math.floor(rand() * earlier.length)] : undefined
  if (slot === 15 || slot === 16 || slot === 17 || slot === 18) {
    const subject = slot === 18 && own ? own : await foreignPost(i)
    return { collection: 'app.bsky.feed.like', value: { $type: 'app.bsky.feed.like', subject, createdAt } }
  }
  if (slot === 19) return { collection: 'app.bsky.graph.follow', value: { $type: 'app.bsky.graph.follow', subject: fakeDid(i), createdAt } }
  const { text, facets } = postText(rand, i)
  const value: Record<string, unknown> = { $type: 'app.bsky.feed.post', text, createdAt, langs: ['en'] }
  if (facets.length > 0) value.facets = facets
  if (i % 6 === 5 && own) value.reply = { root: own, parent: own }
  if (i % 8 === 3) {
    value.embed = { $type: 'app.bsky.embed.external', external: { uri: `https://example.com/articles/${i}`, title: `Article ${i}`, description: text.slice(0, 80) } }
  } else if (i % 13 === 7) {
    value.embed = { $type: 'app.bsky.embed.record', record: own ?? (await foreignPost(i)) }
  }
  return { collection: 'app.bsky.feed.post', value }
}

/** Creates `total` records on `side` (its account `did`), `batch` creates per applyWrites; returns per-call ms. */
export const seedLivedInRepo = async (side: Side, did: string, total: number, batch = 200, onProgress?: (done: number) => void): Promise<number[]> => {
  const rand = prng(total)
  const posts: StrongRef[] = []
  const times: number[] = []
  for (let done = 0; done < total; done += batch) {
    const n = Math.min(batch, total - done)
    const writes = []
    for (let i = done; i < done + n; i++) writes.push({ $type: 'com.atproto.repo.applyWrites#create', ...(await recordAt(i, rand, posts)) })
    const t0 = performance.now()
    const res = await xpost(side, 'com.atproto.repo.applyWrites', { repo: did, writes }, side.token)
    if (res.status !== 200) throw new Error(`applyWrites on the source: ${res.status} ${res.text.slice(0, 400)}`)
    times.push(performance.now() - t0)
    for (const r of res.body.results as StrongRef[]) if (r.uri.includes('/app.bsky.feed.post/')) posts.push({ uri: r.uri, cid: r.cid })
    onProgress?.(done + n)
  }
  return times
}
