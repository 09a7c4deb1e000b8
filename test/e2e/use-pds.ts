/**
 * The usual per-file setup: one PDS started before the file's tests (with an
 * access token for its owner) and stopped after them.
 */
import { afterAll, beforeAll } from 'bun:test'
import { type PdsProcess, type StartPdsOptions, startPds, stopPds } from './harness'
import { createSession } from './xrpc-client'

export const usePds = (onReady: (pds: PdsProcess, accessJwt: string) => void, opts?: StartPdsOptions): void => {
  let started: PdsProcess | undefined
  beforeAll(async () => {
    started = await startPds(opts)
    onReady(started, (await createSession(started, started.handle, started.password)).accessJwt)
  }, 120_000)
  afterAll(async () => {
    await stopPds(started)
  })
}
