/**
 * Lookups by NSID into the generated lexicon schemas (src/lexicons, made by
 * `npm run lexicons` from the official lexicons with `@atproto/lex-builder`).
 * They are `@atproto/lex-schema` validators, the library the reference PDS
 * validates with, so a bad record gets the reference's message word for
 * word. Routes use the generated methods directly; these lookups serve the
 * places that only have a name: the collection of a record being written,
 * the method whose AppView answer is being read.
 */
import type { l } from '@atproto/lex-schema'
import { methodSchemas, recordSchemas } from '../lexicons/registry'

const records: ReadonlyMap<string, l.RecordSchema> = new Map(Object.entries(recordSchemas))
const methods: ReadonlyMap<string, l.Query | l.Procedure> = new Map(Object.entries(methodSchemas))

/**
 * The validator of a record type this PDS validates, like the reference: the
 * record lexicons of the Bluesky app and atproto. Null for any other collection.
 */
export const recordSchema = (nsid: string): l.RecordSchema | null => records.get(nsid) ?? null

/** The schema of a query or procedure we carry a lexicon for, else null. */
export const methodSchema = (nsid: string): l.Query | l.Procedure | null => methods.get(nsid) ?? null
