/**
 * What an imported block is, decided once as it streams in, so the tree can
 * later be walked and indexed inside D1 without reading blocks back:
 *
 * - an MST node (`{l, e}`, atproto repo spec): its children (the left subtree
 *   and each entry's right subtree) and its leaves (full keys, rebuilt from
 *   the prefix compression, with their record CIDs). Keys must be valid
 *   `<collection>/<rkey>` and ascending;
 * - a record (a map with a string `$type`): the blobs it references and its
 *   backlinks (follow, block, like, repost subjects);
 * - anything else (the commit, stray blocks): neither.
 */
import { decode } from '@atproto/lex-cbor'
import { enumBlobRefs, isCid, isLegacyBlobRef, type LexMap } from '@atproto/lex-data'
import { isValidNsid, isValidRecordKey } from '@atproto/syntax'
import { backlinksOfRecord } from '../prepare'
import { InvalidImportError, type CarBlock } from './car-stream'

export interface ClassifiedBlock {
  /** MST node: `{"c": [child CIDs], "k": [[key, record CID], ...]}`. */
  nodeJson: string | null
  /** Record: `{"t": $type, "b": [blob CIDs], "l": [[path, subject], ...]}`. */
  recordJson: string | null
}

const NEITHER: ClassifiedBlock = { nodeJson: null, recordJson: null }
const DAG_CBOR = 0x71
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

interface MstEntry {
  p: number
  k: Uint8Array
  v: unknown
  t: unknown
}

const isMstNode = (value: unknown): value is { l: unknown; e: MstEntry[] } => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const keys = Object.keys(value)
  return keys.length === 2 && keys.includes('e') && keys.includes('l') && Array.isArray((value as { e: unknown }).e)
}

const validKey = (key: string): boolean => {
  const slash = key.indexOf('/')
  return slash > 0 && key.indexOf('/', slash + 1) === -1 && isValidNsid(key.slice(0, slash)) && isValidRecordKey(key.slice(slash + 1))
}

const nodeJson = (cid: string, node: { l: unknown; e: MstEntry[] }): string => {
  const children: string[] = []
  const leaves: [string, string][] = []
  if (node.l !== null) {
    if (!isCid(node.l)) throw new InvalidImportError(`MST node ${cid} has a malformed left link`)
    children.push(node.l.toString())
  }
  let key = ''
  for (const entry of node.e) {
    if (!Number.isInteger(entry?.p) || !(entry.k instanceof Uint8Array) || !isCid(entry.v) || (entry.t !== null && !isCid(entry.t))) {
      throw new InvalidImportError(`MST node ${cid} has a malformed entry`)
    }
    let suffix: string
    try {
      suffix = utf8.decode(entry.k)
    } catch {
      throw new InvalidImportError(`MST node ${cid} has a key that is not UTF-8`)
    }
    const next = key.slice(0, entry.p) + suffix
    if (!validKey(next)) throw new InvalidImportError(`The repo holds an invalid record path: ${next}`)
    if (next <= key) throw new InvalidImportError(`MST node ${cid} has keys out of order`)
    key = next
    leaves.push([key, entry.v.toString()])
    if (entry.t !== null) children.push((entry.t as { toString(): string }).toString())
  }
  return JSON.stringify({ c: children, k: leaves })
}

const recordJson = (record: LexMap): string => {
  const type = record.$type as string
  const blobs = Array.from(enumBlobRefs(record, { strict: false, allowLegacy: true }), (ref) =>
    isLegacyBlobRef(ref) ? ref.cid : ref.ref.toString(),
  )
  const links = backlinksOfRecord(type, record).map((b) => [b.path, b.linkTo])
  return JSON.stringify({ t: type, b: [...new Set(blobs)], l: links })
}

export const classifyBlock = (block: CarBlock): ClassifiedBlock => {
  if (block.codec !== DAG_CBOR) return NEITHER
  let value: unknown
  try {
    value = decode(block.bytes)
  } catch {
    throw new InvalidImportError(`Block ${block.cid} is not valid dag-cbor`)
  }
  if (isMstNode(value)) return { nodeJson: nodeJson(block.cid, value), recordJson: null }
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && typeof (value as LexMap).$type === 'string') {
    return { nodeJson: null, recordJson: recordJson(value as LexMap) }
  }
  return NEITHER
}
