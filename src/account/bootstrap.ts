/**
 * First start of a deployment: the account row is created once, and what it
 * holds depends on the identity the deployment is configured with
 * (atproto.com/guides/account-migration):
 *
 * - a fresh identity, whose DID document already names this PDS and its
 *   signing key (a did:web of this host, or the did:plc `npm run setup`
 *   created), starts active with its genesis commit (an empty signed repo,
 *   announced on the firehose);
 * - an existing identity, whose DID document still points elsewhere, starts
 *   deactivated and EMPTY: no genesis commit, no #commit, waiting for the
 *   account to be migrated in (createAccount, importRepo, activateAccount);
 * - a deployment from before the account row existed (it has a repo) is
 *   recorded as active, as it was.
 *
 * Reads never create anything: they answer on what exists.
 */
import type { KvCache } from '../cache/kv-cache'
import { getAccount, insertAccountStatement, type AccountRow } from '../db/account-row'
import { getRoot } from '../db/repo'
import type { Config } from '../env'
import { XrpcError } from '../errors'
import { atprotoSigningKey, resolveDid, serviceEndpoint } from '../identity/resolver'
import { createGenesis, type RepoContext } from '../repo/commit'

/** True when the DID document names this PDS and its signing key: the identity was made for this deployment. */
const pointsHere = async (cfg: Config, cache: KvCache): Promise<boolean> => {
  let doc
  try {
    doc = await resolveDid(cfg, cache, cfg.did, { fresh: true })
  } catch (err) {
    // Without the document nothing can be decided; the next request tries again.
    throw new XrpcError(503, `The DID document of ${cfg.did} cannot be resolved yet: ${(err as Error).message}`, 'NotEnoughResources')
  }
  return serviceEndpoint(doc, 'atproto_pds') === cfg.serviceUrl && atprotoSigningKey(doc) === cfg.signingKey.did()
}

/**
 * One database holds one account. A deployment whose configured DID is not the
 * one its database was made for (PDS_DID or, for a did:web, PDS_HOSTNAME
 * changed; locally, `npm run dev` on another port) would serve and sign one
 * identity's records as another's, so it answers nothing but this error.
 */
const assertSameIdentity = (row: AccountRow, cfg: Config): void => {
  if (row.did === cfg.did) return
  throw new XrpcError(
    500,
    `This PDS is configured as ${cfg.did}, but its database holds the account ${row.did}. ` +
      'Configure the DID (and hostname) the database was made for, or give this identity its own database.',
    'InternalServerError',
  )
}

/** Makes sure the account row exists (and a fresh identity's repo); returns the row. */
export const bootstrapAccount = async (ctx: RepoContext, cfg: Config, cache: KvCache): Promise<AccountRow> => {
  const existing = await getAccount(ctx.db)
  if (existing) {
    assertSameIdentity(existing, cfg)
    return existing
  }
  const now = new Date().toISOString()
  const row = (status: 'active' | 'deactivated'): AccountRow => ({
    did: cfg.did,
    handle: cfg.handle,
    status,
    createdAt: now,
    deactivatedAt: status === 'active' ? null : now,
    deleteAfter: null,
  })
  if (await getRoot(ctx.db)) {
    await ctx.db.batch([insertAccountStatement(ctx.db, row('active'))])
  } else if (await pointsHere(cfg, cache)) {
    // The row goes in the genesis commit's batch: never one without the other.
    await createGenesis(ctx, [insertAccountStatement(ctx.db, row('active'))])
  } else {
    await ctx.db.batch([insertAccountStatement(ctx.db, row('deactivated'))])
  }
  const created = await getAccount(ctx.db)
  if (!created) throw new Error('the account row is missing after first start')
  return created
}
