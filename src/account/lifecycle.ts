/**
 * Account lifecycle (atproto.com/guides/account-lifecycle): activation once
 * the account has been migrated in, deactivation when it leaves (or pauses).
 *
 * Activation checks, as the reference does, that the DID document now names
 * this PDS and its signing key (and, for did:plc, this PDS's rotation key),
 * then in ONE batch: the account becomes active, the repo head is re-signed
 * with this PDS's key under a new rev (src/repo/plan-resign.ts), and
 * `#account` (active), `#identity` and a `#sync` of the new commit are
 * appended to the firehose. Relays are asked to crawl. Deactivation is one
 * batch too: the status and an `#account` event.
 */
import type { BatchItem } from 'drizzle-orm/batch'
import type { KvCache } from '../cache/kv-cache'
import { setAccountStatusStatement, type AccountRow } from '../db/account-row'
import type { Db, SqlStatement } from '../db/client'
import { appendEventStatements } from '../db/state'
import type { Config } from '../env'
import { InvalidRequestError } from '../errors'
import { encodeAccountEvent, encodeIdentityEvent, encodeSyncEvent } from '../firehose/events'
import { getPlcData } from '../identity/plc'
import { atprotoSigningKey, resolveDid, serviceEndpoint } from '../identity/resolver'
import { runCommit, type RepoContext } from '../repo/commit'
import { planResign } from '../repo/plan-resign'

export interface LifecycleContext {
  config: Config
  db: Db
  repo: RepoContext
  cache: KvCache
}

/** What the DID document says now, as far as hosting goes (read afresh, never from a cache). */
const currentIdentity = async (cfg: Config, cache: KvCache): Promise<{ endpoint: string | null; signingKey: string | null; rotationKeys: string[] | null }> => {
  if (cfg.did.startsWith('did:plc:')) {
    const data = await getPlcData(cfg.plcUrl, cfg.did)
    return { endpoint: data.services?.atproto_pds?.endpoint ?? null, signingKey: data.verificationMethods?.atproto ?? null, rotationKeys: data.rotationKeys ?? [] }
  }
  const doc = await resolveDid(cfg, cache, cfg.did, { fresh: true }).catch(() => null)
  if (!doc) throw new InvalidRequestError('Could not resolve DID')
  return { endpoint: serviceEndpoint(doc, 'atproto_pds'), signingKey: atprotoSigningKey(doc), rotationKeys: null }
}

/** The reference's assertValidDidDocumentForService: the identity names this PDS, its signing key (and its rotation key). */
export const assertIdentityPointsHere = async (cfg: Config, cache: KvCache): Promise<void> => {
  const id = await currentIdentity(cfg, cache)
  if (id.rotationKeys && !id.rotationKeys.includes(cfg.plcRotationKey.did())) {
    throw new InvalidRequestError('Server rotation key not included in PLC DID data')
  }
  if (id.endpoint?.replace(/\/+$/, '') !== cfg.serviceUrl) {
    throw new InvalidRequestError('DID document atproto_pds service endpoint does not match PDS public url')
  }
  if (id.signingKey !== cfg.signingKey.did()) {
    throw new InvalidRequestError('DID document verification method does not match expected signing key')
  }
  // What sessions and describeRepo show comes from the document: let them see the new one.
  await resolveDid(cfg, cache, cfg.did, { fresh: true }).catch(() => undefined)
}

/** True when the identity points here (checkAccountStatus's validDid). */
export const identityPointsHere = async (cfg: Config, cache: KvCache): Promise<boolean> =>
  assertIdentityPointsHere(cfg, cache).then(
    () => true,
    () => false,
  )

/** activateAccount: the checks, then status, re-signed head and events in one batch. */
export const activateAccount = async (ctx: LifecycleContext, account: AccountRow): Promise<void> => {
  await assertIdentityPointsHere(ctx.config, ctx.cache)
  const { did } = account
  await runCommit(ctx.repo, () =>
    planResign(ctx.repo, {
      extra: [setAccountStatusStatement(ctx.db, did, { status: 'active', deactivatedAt: null, deleteAfter: null })],
      events: async (commit, now) => [
        { type: 'account', bytes: encodeAccountEvent({ did, active: true, time: now }) },
        { type: 'identity', bytes: encodeIdentityEvent({ did, handle: account.handle, time: now }) },
        { type: 'sync', bytes: await encodeSyncEvent({ did, commit: commit.cid, commitBytes: commit.commitBytes, rev: commit.rev, time: now }) },
      ],
    }),
  )
}

/** deactivateAccount: the status and an `#account` event, in one batch. */
export const deactivateAccountStatements = (
  db: Db,
  did: string,
  deleteAfter: string | null,
  now = new Date().toISOString(),
): (SqlStatement | BatchItem<'sqlite'>)[] => [
  setAccountStatusStatement(db, did, { status: 'deactivated', deactivatedAt: now, deleteAfter }),
  ...appendEventStatements('account', encodeAccountEvent({ did, active: false, status: 'deactivated', time: now }), now),
]
