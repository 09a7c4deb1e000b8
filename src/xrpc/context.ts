/**
 * What every handler receives: typed config, a counted D1 client and the
 * repo context, built once per request by the middleware in src/index.ts.
 */
import type { Config, WorkerEnv } from '../env'
import type { Db } from '../db/client'
import type { RepoContext } from '../repo/commit'

export interface Deps {
  config: Config
  db: Db
  env: WorkerEnv
  repo: RepoContext
  /** Schedules work that may finish after the response (ctx.waitUntil). */
  waitUntil(promise: Promise<unknown>): void
}

export interface AppEnv {
  Bindings: WorkerEnv
  Variables: {
    deps: Deps
    requestId: string
    authDid?: string
  }
}
