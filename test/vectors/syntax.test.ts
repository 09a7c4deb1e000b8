/**
 * Interop vectors `syntax/*.txt`: identifier and string-format syntax
 * (https://atproto.com/specs/handle, did, nsid, at-uri-scheme, record-key,
 * tid, lexicon#string-formats), checked with the libraries the PDS uses:
 * `@atproto/syntax` and multiformats' CID parser.
 *
 * TODO: once src/repo has its own record key / NSID / TID checks, point
 * those rows at them.
 */
import {
  isAtIdentifierString,
  isAtUriString,
  isDatetimeString,
  isValidDid,
  isValidHandle,
  isValidNsid,
  isValidRecordKey,
  isValidTid,
  isValidUri,
  parseLanguageString,
} from '@atproto/syntax'
import { CID } from 'multiformats/cid'
import { describe, it } from 'vitest'
import { expectOnlyKnownGaps, show, syntaxLines } from './vectors'

/** atproto accepts only CIDv1 (v0 "Qm…" strings are invalid in the data model). */
const isCidV1String = (input: string): boolean => {
  try {
    return CID.parse(input).version === 1
  } catch {
    return false
  }
}

interface SyntaxCase {
  /** File name prefix: `<prefix>_syntax_valid.txt` / `_invalid.txt`. */
  prefix: string
  check: (input: string) => boolean
  /** Extra lists whose entries must all be rejected (`*_parse_invalid.txt`). */
  alsoInvalid?: string[]
  /** Documented library gaps: `valid|invalid show(input)` → why. */
  knownGaps?: Record<string, string>
}

const cases: SyntaxCase[] = [
  { prefix: 'handle', check: isValidHandle },
  { prefix: 'did', check: isValidDid },
  { prefix: 'nsid', check: isValidNsid },
  // isAtUriString is the strict parser @atproto/lexicon uses for the at-uri
  // format; the older ensureValidAtUri accepts 22 of the invalid vectors
  // (trailing slashes, "%" and "$" in record keys, "." and ".." rkeys).
  { prefix: 'aturi', check: isAtUriString },
  { prefix: 'recordkey', check: isValidRecordKey },
  { prefix: 'tid', check: isValidTid },
  { prefix: 'datetime', check: isDatetimeString, alsoInvalid: ['datetime_parse_invalid.txt'] },
  { prefix: 'atidentifier', check: isAtIdentifierString },
  // parseLanguageString also rejects the semantic errors (repeated
  // subtags); isValidLanguage, used by @atproto/lexicon, does not.
  {
    prefix: 'language',
    check: (input) => parseLanguageString(input) !== null,
    alsoInvalid: ['language_parse_invalid.txt'],
  },
  {
    prefix: 'uri',
    check: isValidUri,
    knownGaps: {
      'valid "content-type:text/plan"': 'isValidUri rejects "-" in a URI scheme (RFC 3986 allows it)',
      'valid "microsoft.windows.camera:thing"': 'isValidUri rejects "." in a URI scheme (RFC 3986 allows it)',
      [`invalid ${show(`https://example.com/${'x'.repeat(8200)}`)}`]:
        'isValidUri has no 8 KiB length limit',
    },
  },
  {
    prefix: 'cid',
    check: isCidV1String,
    knownGaps: {
      'valid "mBcDxtdWx0aWhhc2g+"': 'base64 multibase: CID.parse reads only base32/base58btc',
      'valid "7134036155352661643226414134664076"': 'base10 multibase: CID.parse reads only base32/base58btc',
      'valid "f017012202c5f688262e0ece8569aa6f94d60aad55ca8d9d83734e4a7430d0cff6588ec2b"':
        'base16 multibase: CID.parse reads only base32/base58btc',
      'valid "z7x3CtScH765HvShXT"': 'syntactically a CID string, but not a decodable CID',
    },
  },
]

describe('interop vectors: syntax', () => {
  for (const { prefix, check, alsoInvalid = [], knownGaps } of cases) {
    it(`${prefix}: valid accepted, invalid rejected`, () => {
      const failures: string[] = []
      for (const input of syntaxLines(`${prefix}_syntax_valid.txt`)) {
        if (!check(input)) failures.push(`valid ${show(input)}`)
      }
      for (const file of [`${prefix}_syntax_invalid.txt`, ...alsoInvalid]) {
        for (const input of syntaxLines(file)) {
          if (check(input)) failures.push(`invalid ${show(input)}`)
        }
      }
      expectOnlyKnownGaps(failures, knownGaps)
    })
  }
})
