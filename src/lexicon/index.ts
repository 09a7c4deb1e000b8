/**
 * The official lexicons (the documents shipped by `@atproto/api`) compiled
 * into `@atproto/lex-schema` validators by `@atproto/lex-document`: the same
 * validator library the reference PDS uses, so a bad record or param gets
 * the reference's error message word for word. Validators are built lazily,
 * once per isolate, per NSID.
 */
import { schemas } from '@atproto/api'
import { LexiconIterableIndexer, LexiconSchemaBuilder, type LexiconDocument } from '@atproto/lex-document'
import { l } from '@atproto/lex-schema'

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/**
 * `@atproto/api` ships its documents with codegen-style refs ("lex:nsid",
 * and "nsid" meaning "nsid#main"); the schema builder wants "nsid#def".
 */
const normaliseRef = (ref: string): string => {
  const bare = ref.replace(/^lex:/, '')
  return bare.includes('#') ? bare : `${bare}#main`
}

const normaliseRefs = (value: Json): Json => {
  if (Array.isArray(value)) return value.map(normaliseRefs)
  if (value === null || typeof value !== 'object') return value
  const out: { [key: string]: Json } = {}
  for (const [key, child] of Object.entries(value)) out[key] = normaliseRefs(child)
  if (out.type === 'ref' && typeof out.ref === 'string') out.ref = normaliseRef(out.ref)
  if (out.type === 'union' && Array.isArray(out.refs)) out.refs = out.refs.map((r) => normaliseRef(String(r)))
  return out
}

const documents = (schemas as unknown as Json[]).map(normaliseRefs) as unknown as LexiconDocument[]
const documentsById = new Map(documents.map((doc) => [doc.id as string, doc]))
const builder = new LexiconSchemaBuilder(new LexiconIterableIndexer(documents))

const mainType = (nsid: string): string | undefined =>
  (documentsById.get(nsid)?.defs as Record<string, { type?: string }> | undefined)?.main?.type

export type MethodType = 'query' | 'procedure' | 'subscription'

/** The lexicon type of an XRPC method, or null if we have no lexicon for it. */
export const methodType = (nsid: string): MethodType | null => {
  const type = mainType(nsid)
  return type === 'query' || type === 'procedure' || type === 'subscription' ? type : null
}

/** Record types we validate, like the reference PDS: the record lexicons of the bsky app and atproto. */
export const isKnownRecordType = (nsid: string): boolean =>
  mainType(nsid) === 'record' && /^(app\.bsky|chat\.bsky|com\.atproto)\./.test(nsid)

const compiled = new Map<string, Promise<unknown>>()
const compile = <T>(nsid: string): Promise<T> => {
  let schema = compiled.get(nsid)
  if (!schema) {
    schema = builder.buildFullRef(`${nsid}#main`).then(async (s) => {
      await builder.done() // refs resolve asynchronously
      return s
    })
    compiled.set(nsid, schema)
  }
  return schema as Promise<T>
}

/** The record validator for a known record type, else null. */
export const recordSchema = (nsid: string): Promise<l.RecordSchema | null> =>
  isKnownRecordType(nsid) ? compile<l.RecordSchema>(nsid) : Promise.resolve(null)

/** The compiled query or procedure for an XRPC method we have a lexicon for. */
export const methodSchema = (nsid: string): Promise<l.Query | l.Procedure | null> => {
  const type = methodType(nsid)
  return type === 'query' || type === 'procedure' ? compile<l.Query | l.Procedure>(nsid) : Promise.resolve(null)
}
