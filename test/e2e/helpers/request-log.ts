/**
 * The PDS's request log as tests read it: the JSON lines wrangler dev
 * printed, and the line of one response (found by its `x-request-id`).
 */
import { expect } from 'bun:test'
import type { PdsProcess } from '../harness'

/** Every JSON object wrangler dev printed (console.log and console.error lines). */
export const logLines = (pds: PdsProcess): Record<string, any>[] =>
  pds
    .output()
    .split('\n')
    .map((line) => line.slice(line.indexOf('{')))
    .filter((line) => line.startsWith('{'))
    .flatMap((line) => {
      try {
        return [JSON.parse(line)]
      } catch {
        return []
      }
    })

/** The log line of one response (waits briefly: output arrives asynchronously). */
export const lineFor = async (pds: PdsProcess, res: { headers: Headers }, pick = (l: Record<string, any>) => 'status' in l): Promise<Record<string, any>> => {
  const id = res.headers.get('x-request-id')
  expect(id).toMatch(/^[0-9a-f-]{36}$/)
  for (let i = 0; i < 50; i++) {
    const line = logLines(pds).find((l) => l.requestId === id && pick(l))
    if (line) return line
    await Bun.sleep(100)
  }
  throw new Error(`no log line for request ${id}:\n${pds.output().slice(-3000)}`)
}
