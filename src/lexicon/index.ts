/**
 * The official lexicons (as shipped by `@atproto/api`), loaded once per
 * isolate into an `@atproto/lexicon` `Lexicons`. Used to validate XRPC params
 * and bodies at the edge and records of known collections before they are
 * committed.
 */
import { schemas } from '@atproto/api'
import { Lexicons, type LexiconDoc } from '@atproto/lexicon'

export const lexicons = new Lexicons(schemas as LexiconDoc[])

/** Record types we validate, like the reference PDS: the record lexicons of the bsky app and atproto. */
const knownRecordTypes: ReadonlySet<string> = new Set(
  (schemas as LexiconDoc[])
    .filter((doc) => doc.defs.main?.type === 'record')
    .map((doc) => doc.id)
    .filter((id) => id.startsWith('app.bsky.') || id.startsWith('chat.bsky.') || id.startsWith('com.atproto.')),
)

export const isKnownRecordType = (nsid: string): boolean => knownRecordTypes.has(nsid)

export type MethodType = 'query' | 'procedure' | 'subscription'

/** The lexicon type of an XRPC method, or null if we have no lexicon for it. */
export const methodType = (nsid: string): MethodType | null => {
  const def = lexicons.getDef(nsid)
  return def && (def.type === 'query' || def.type === 'procedure' || def.type === 'subscription') ? def.type : null
}

/** The record key type declared by a record lexicon ("tid", "literal:self", "any", "nsid"...). */
export const recordKeyType = (nsid: string): string | null => {
  const def = lexicons.getDef(nsid)
  return def?.type === 'record' ? (def.key ?? 'any') : null
}
