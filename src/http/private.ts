/**
 * Answers made for a credential are never shared by caches, as the
 * reference PDS marks them: `Cache-Control: private` and `Vary:
 * Authorization`. One rule for local answers and forwarded ones.
 */

/** Marks a response private (idempotent); returns a copy when its headers are immutable. */
export const markPrivate = (res: Response): Response => {
  let out = res
  try {
    setPrivate(out.headers)
  } catch {
    // Headers of a fetched Response are immutable: re-wrap it.
    out = new Response(res.body, res)
    setPrivate(out.headers)
  }
  return out
}

const setPrivate = (headers: Headers): void => {
  headers.set('cache-control', 'private')
  const vary = headers.get('vary')
  if (!vary?.split(',').some((v) => v.trim().toLowerCase() === 'authorization')) headers.append('vary', 'Authorization')
}

/** Adds headers to a response (copying it when its headers are immutable). */
export const withHeaders = (res: Response, headers: Record<string, string>): Response => {
  const entries = Object.entries(headers)
  if (entries.length === 0) return res
  let out = res
  try {
    for (const [name, value] of entries) out.headers.set(name, value)
  } catch {
    out = new Response(res.body, res)
    for (const [name, value] of entries) out.headers.set(name, value)
  }
  return out
}
