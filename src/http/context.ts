/**
 * What every handler receives: typed config, a counted D1 client, the repo
 * context, and the stores over the other bindings. Built once per request by
 * the middleware (src/http/middleware.ts); handlers never touch a raw binding.
 */
import type { BlobStore } from '../blobs/store'
import type { KvCache } from '../cache/kv-cache'
import type { AccountRow } from '../db/account-row'
import type { Db } from '../db/client'
import type { EmailSender } from '../email/account-email'
import type { Config, WorkerEnv } from '../env'
import type { FirehoseHub } from '../firehose/hub'
import type { RepoContext } from '../repo/commit'

export interface Deps {
  config: Config
  db: Db
  repo: RepoContext
  /** The hosted account (status, current handle), read once per request on first use. */
  account(): Promise<AccountRow>
  blobs: BlobStore
  cache: KvCache
  /** The firehose Durable Object (subscriptions, subscriber counts). */
  firehose: DurableObjectStub<FirehoseHub>
  /** Failed-login protection (the Workers rate-limiting binding). */
  loginLimiter: RateLimit
  /** Sends the email methods' codes; null when this deployment cannot send email. */
  email: EmailSender | null
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
