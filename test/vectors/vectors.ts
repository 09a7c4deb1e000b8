/**
 * Loading and checking the atproto interop vectors
 * (github.com/bluesky-social/atproto-interop-tests, vendored in
 * `test/vectors/interop` with its licence and source note, reached through
 * the `@vectors` alias of vitest.config.ts).
 *
 * workerd has no filesystem, so vite inlines the files at transform time:
 * JSON through ordinary imports, text lists through `import.meta.glob`.
 * Each test runs every vector of a file, collects the ones whose outcome
 * differs from the expectation and asserts that list is empty, so a failure
 * names every offending input at once.
 */
import { base64 } from 'multiformats/bases/base64'
import { expect } from 'vitest'

const syntaxFiles = import.meta.glob<string>('@vectors/syntax/*.txt', {
  query: '?raw',
  import: 'default',
  eager: true,
})

/**
 * The inputs of one `syntax/*.txt` list: every line except blank lines and
 * `#` comments, untrimmed (leading/trailing spaces are part of several
 * vectors).
 */
export const syntaxLines = (file: string): string[] => {
  const key = Object.keys(syntaxFiles).find((path) => path.endsWith(`/syntax/${file}`))
  if (key === undefined) throw new Error(`interop vector syntax/${file} not found`)
  const lines = syntaxFiles[key].split('\n').filter((line) => line !== '' && !line.startsWith('#'))
  if (lines.length === 0) throw new Error(`interop vector syntax/${file} has no cases`)
  return lines
}

/** Decodes the unpadded standard base64 the vectors use for bytes. */
export const fromBase64 = (text: string): Uint8Array => base64.baseDecode(text.replace(/=+$/, ''))

/** A short, unambiguous rendering of a vector input for failure lists. */
export const show = (input: unknown): string => {
  const text = JSON.stringify(input) ?? String(input)
  return text.length > 100 ? `${text.slice(0, 60)}…(${text.length} chars)` : text
}

/** Runs `check` on a throwing validator: true if it returns, false if it throws. */
export const accepts = (check: (input: string) => unknown, input: string): boolean => {
  try {
    check(input)
    return true
  } catch {
    return false
  }
}

/** Awaits `fn` and renders a thrown error as a message (null if it returned). */
export const errorOf = async (fn: () => unknown): Promise<string | null> => {
  try {
    await fn()
    return null
  } catch (err) {
    return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
  }
}

/**
 * Asserts that the failures are exactly the documented library gaps: a new
 * failure fails the test, and so does a gap that no longer fails (the entry
 * must then be removed). `known` maps a failure (or its part before ": ",
 * where the rest is an error message) to the reason it is tolerated.
 */
export const expectOnlyKnownGaps = (failures: string[], known: Record<string, string> = {}): void => {
  const isKnown = (failure: string, gap: string): boolean => failure === gap || failure.startsWith(`${gap}: `)
  const unexpected = failures.filter((failure) => !Object.keys(known).some((gap) => isKnown(failure, gap)))
  const fixed = Object.keys(known).filter((gap) => !failures.some((failure) => isKnown(failure, gap)))
  expect({ unexpected, noLongerFailing: fixed }).toEqual({ unexpected: [], noLongerFailing: [] })
}
