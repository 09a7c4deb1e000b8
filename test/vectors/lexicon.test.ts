/**
 * Interop vectors `lexicon/*` (https://atproto.com/specs/lexicon): lexicon
 * documents, and record data checked against the `catalog/` lexicons, with
 * `@atproto/lexicon`, the validator the PDS runs on records it writes.
 * The `syntax/*` lists are also run through the lexicon string formats,
 * since that, not `@atproto/syntax` directly, is what checks a record's
 * `format: "datetime"` (etc.) fields.
 */
import { Lexicons, jsonToLex, parseLexiconDoc, type LexiconDoc } from '@atproto/lexicon'
import recordInvalidJson from '@vectors/lexicon/record-data-invalid.json'
import recordValidJson from '@vectors/lexicon/record-data-valid.json'
import lexiconInvalidJson from '@vectors/lexicon/lexicon-invalid.json'
import lexiconValidJson from '@vectors/lexicon/lexicon-valid.json'
import { describe, expect, it } from 'vitest'
import { errorOf, expectOnlyKnownGaps, show, syntaxLines } from './vectors'

interface RecordCase {
  name: string
  rkey: string
  data: { $type: string } & Record<string, unknown>
}
interface LexiconCase {
  name: string
  lexicon: unknown
}
const recordValid = recordValidJson as RecordCase[]
const recordInvalid = recordInvalidJson as RecordCase[]
const lexiconValid = lexiconValidJson as LexiconCase[]
const lexiconInvalid = lexiconInvalidJson as LexiconCase[]

const catalogFiles = import.meta.glob<unknown>('@vectors/lexicon/catalog/*.json', { eager: true, import: 'default' })

const catalogDocs = Object.entries(catalogFiles).map(([path, doc]) => ({
  name: `catalog/${path.split('/').pop()}`,
  lexicon: doc,
}))

/**
 * A fresh Lexicons of the catalog (`Lexicons.add` mutates the docs it is
 * given). Added unparsed, as the PDS loads its schemas: `parseLexiconDoc`
 * refuses two catalog docs (see below).
 */
const catalog = (): Lexicons => {
  if (catalogDocs.length === 0) throw new Error('interop vector lexicon/catalog is empty')
  return new Lexicons(catalogDocs.map(({ lexicon }) => structuredClone(lexicon) as LexiconDoc))
}

/**
 * Validates a record the way the PDS will: JSON → lex values
 * (`{$link}` → CID, `{$bytes}` → bytes, blobs → BlobRef), then the record
 * schema named by its `$type`.
 *
 * TODO: point at the PDS's own record preparation once src/repo has it.
 */
const validateRecord = (lexicons: Lexicons, data: RecordCase['data']): void => {
  lexicons.assertValidRecord(data.$type, jsonToLex(data))
}

describe('interop vectors: lexicon', () => {
  it('lexicon documents: valid (and the catalog) parse, invalid are rejected', async () => {
    expect(lexiconValid.length + lexiconInvalid.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const { name, lexicon } of [...lexiconValid, ...catalogDocs]) {
      const error = await errorOf(() => new Lexicons([parseLexiconDoc(structuredClone(lexicon))]))
      if (error !== null) failures.push(`valid "${name}": ${error}`)
    }
    for (const { name, lexicon } of lexiconInvalid) {
      if ((await errorOf(() => parseLexiconDoc(structuredClone(lexicon)))) === null) failures.push(`invalid "${name}"`)
    }
    expectOnlyKnownGaps(failures, {
      'invalid "defined unknown"': 'parseLexiconDoc accepts a named def of type "unknown"',
      'valid "catalog/record.json"': 'parseLexiconDoc refuses an inline object as an object property',
      'valid "catalog/procedure.json"': 'parseLexiconDoc refuses an inline object as an object property',
    })
  })

  it('record data: valid records pass their lexicon, invalid ones are rejected', async () => {
    expect(recordValid.length).toBeGreaterThan(0)
    expect(recordInvalid.length).toBeGreaterThan(0)
    const lexicons = catalog()
    const failures: string[] = []
    for (const { name, data } of recordValid) {
      const error = await errorOf(() => validateRecord(lexicons, data))
      if (error !== null) failures.push(`valid "${name}": ${error}`)
    }
    for (const { name, data } of recordInvalid) {
      if ((await errorOf(() => validateRecord(lexicons, data))) === null) failures.push(`invalid "${name}"`)
    }
    expectOnlyKnownGaps(failures, {
      // The reference PDS enforces blob maxSize/accept when it associates the
      // uploaded blob with the record, not in lexicon validation; ours must too.
      'invalid "blob too large"': 'Lexicons does not check a blob ref against maxSize',
      'invalid "blob wrong type"': 'Lexicons does not check a blob ref against accept',
    })
  })

  it('string formats: syntax vectors through the lexicon format validators', async () => {
    const formats: Record<string, string> = {
      handle: 'handle',
      did: 'did',
      nsid: 'nsid',
      aturi: 'at-uri',
      recordkey: 'record-key',
      tid: 'tid',
      datetime: 'datetime',
      atidentifier: 'at-identifier',
      language: 'language',
      uri: 'uri',
      cid: 'cid',
    }
    const defs = Object.fromEntries(
      Object.entries(formats).map(([prefix, format]) => [
        prefix,
        { type: 'object', required: ['v'], properties: { v: { type: 'string', format } } },
      ]),
    )
    const lexicons = new Lexicons([{ lexicon: 1, id: 'test.vectors.formats', defs } as LexiconDoc])
    const accepted = (prefix: string, input: string): boolean =>
      lexicons.validate(`lex:test.vectors.formats#${prefix}`, { v: input }).success

    const failures: string[] = []
    for (const prefix of Object.keys(formats)) {
      for (const input of syntaxLines(`${prefix}_syntax_valid.txt`)) {
        if (!accepted(prefix, input)) failures.push(`${prefix} valid ${show(input)}`)
      }
      const invalidFiles = [`${prefix}_syntax_invalid.txt`]
      if (prefix === 'datetime' || prefix === 'language') invalidFiles.push(`${prefix}_parse_invalid.txt`)
      for (const file of invalidFiles) {
        for (const input of syntaxLines(file)) {
          if (accepted(prefix, input)) failures.push(`${prefix} invalid ${show(input)}`)
        }
      }
    }
    // What a record field with that format lets through (or refuses) today.
    // datetime: the lexicon uses the lenient check (no timezone, "+0000").
    // language: isValidLanguage checks shape only.
    // uri, cid: as in syntax.test.ts, plus CID.parse accepts CIDv0.
    expectOnlyKnownGaps(failures, {
      'datetime invalid "1985-04-12T23:20:50.123"': 'lenient datetime: no timezone',
      'datetime invalid "1985-04-12T23:20:50"': 'lenient datetime: no timezone',
      'datetime invalid "1985-04-12T23:20:5Z"': 'lenient datetime: one-digit seconds',
      'datetime invalid "1985-04-12T23:20:50.123+0000"': 'lenient datetime: offset without colon',
      'datetime invalid "0000-01-01T00:00:00+01:00"': 'lenient datetime: normalises to a negative year',
      'language invalid "jaja"': 'isValidLanguage: 4-letter primary subtag',
      'language invalid "JA"': 'isValidLanguage: upper-case primary subtag',
      'language invalid "de-DE-1901-1901"': 'isValidLanguage: repeated variant',
      'language invalid "en-rozaj-ROZAJ"': 'isValidLanguage: repeated variant',
      'language invalid "en-a-foo-a-bar"': 'isValidLanguage: repeated extension singleton',
      'language invalid "en-u-co-phonebk-U-ca-buddhist"': 'isValidLanguage: repeated extension singleton',
      'uri valid "content-type:text/plan"': 'isValidUri rejects "-" in a scheme',
      'uri valid "microsoft.windows.camera:thing"': 'isValidUri rejects "." in a scheme',
      [`uri invalid ${show(`https://example.com/${'x'.repeat(8200)}`)}`]: 'isValidUri: no length limit',
      'cid valid "mBcDxtdWx0aWhhc2g+"': 'CID.parse: base64 multibase',
      'cid valid "7134036155352661643226414134664076"': 'CID.parse: base10 multibase',
      'cid valid "f017012202c5f688262e0ece8569aa6f94d60aad55ca8d9d83734e4a7430d0cff6588ec2b"':
        'CID.parse: base16 multibase',
      'cid valid "z7x3CtScH765HvShXT"': 'not a decodable CID',
      'cid invalid "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"': 'CID.parse accepts CIDv0',
    })
  })
})
