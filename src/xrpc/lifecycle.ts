/**
 * The account's arrival and departure (atproto.com/guides/account-migration),
 * as the reference PDS answers them: createAccount for the account migrated
 * in (with the old PDS's service token), importRepo, checkAccountStatus,
 * activateAccount and deactivateAccount.
 */
import { activateAccount, deactivateAccountStatements, identityPointsHere } from '../account/lifecycle'
import { createSessionTokens } from '../auth/session'
import { createAccountAuth, fullAccessAuth, accessAuth } from '../auth/verifier'
import { countAccountState } from '../db/account'
import { setHandleStatement } from '../db/account-row'
import { changeAddress, getEmailState } from '../email/account-email'
import { AuthRequiredError, InvalidRequestError, RateLimitExceededError } from '../errors'
import { requestCrawl } from '../firehose/crawl'
import type { Deps } from '../http/context'
import { atprotoSigningKey, resolveDid } from '../identity/resolver'
import { com } from '../lexicons'
import { verifyPassword } from '../password-setting'
import { importRepo } from '../repo/import/import-repo'
import type { XrpcRouter } from './router'

/** The reference refuses longer passwords at account creation. */
const MAX_NEW_PASSWORD_LENGTH = 256
const CAR_TYPE = 'application/vnd.ipld.car'

/** The did:key the account's DID document lists now (fresh, never cached: it decides what we accept). */
const currentKey = async (deps: Deps): Promise<string> => {
  const doc = await resolveDid(deps.config, deps.cache, deps.config.did, { fresh: true })
  const key = atprotoSigningKey(doc)
  if (!key) throw new InvalidRequestError(`The DID document of ${deps.config.did} lists no #atproto key`)
  return key
}

export const registerLifecycleMethods = (x: XrpcRouter): void => {
  /**
   * The account migrated in: only this PDS's DID, only with a service token
   * the old PDS issued for it (signed by the key its DID document lists),
   * and only with the owner password this PDS was set up with. The account
   * stays deactivated until activateAccount. Running it again before
   * activation is harmless (a resumed migration), after it is AlreadyExists.
   */
  x.procedure(com.atproto.server.createAccount.main, createAccountAuth, async ({ deps, input, auth, req }) => {
    const cfg = deps.config
    const ip = req.headers.get('cf-connecting-ip') ?? 'local'
    if (!(await deps.loginLimiter.limit({ key: `createAccount-${ip}` })).success) throw new RateLimitExceededError('Too many attempts, try again in a minute')
    if (input.plcOp !== undefined) throw new InvalidRequestError('Unsupported input: "plcOp"')
    if (!input.did) {
      throw new InvalidRequestError(`This PDS hosts one account, ${cfg.did}; it arrives by migration (createAccount with its did and a service token)`)
    }
    if (input.did !== cfg.did) throw new InvalidRequestError(`This PDS hosts only ${cfg.did}, not ${input.did}`)
    if (!auth || auth.did !== input.did) throw new AuthRequiredError(`Missing auth to create account with did: ${input.did}`)
    const password = input.password ?? ''
    if (password.length > MAX_NEW_PASSWORD_LENGTH) throw new InvalidRequestError('Password too long. Maximum length is 256 characters.')
    if (!(await verifyPassword(cfg.password, password))) {
      throw new InvalidRequestError(
        "The password must be this PDS's owner password (the PDS_PASSWORD secret): a single-user PDS has one password, set by its owner",
      )
    }
    const account = await deps.account()
    if (account.status !== 'deactivated') throw new InvalidRequestError('Repo already exists', 'AlreadyExists')
    const handle = input.handle.toLowerCase()
    const email = input.email?.trim().toLowerCase()
    const statements = [setHandleStatement(deps.db, cfg.did, handle)]
    await deps.db.batch(statements)
    if (email && email !== (await getEmailState(deps.db, cfg)).address) await changeAddress(deps.db, email)
    const [tokens, didDoc] = await Promise.all([
      createSessionTokens(deps.db, cfg, cfg.did),
      resolveDid(cfg, deps.cache, cfg.did, { fresh: true }).catch(() => undefined),
    ])
    return { handle, did: cfg.did, ...(didDoc ? { didDoc } : {}), ...tokens }
  })

  /** The whole repo as a CAR, streamed (src/repo/import): only while the account is deactivated. */
  x.procedure(
    com.atproto.repo.importRepo.main,
    fullAccessAuth,
    async ({ deps, req }) => {
      const account = await deps.account()
      if (account.status === 'active') {
        throw new InvalidRequestError('The account is active here: a repo is imported before activateAccount, while the account is deactivated')
      }
      const type = req.headers.get('content-type')?.split(';')[0].trim().toLowerCase() ?? ''
      if (type !== CAR_TYPE) throw new InvalidRequestError(`Wrong request encoding (Content-Type): ${type || 'none'}`)
      if (!req.body || req.headers.get('content-length') === '0') throw new InvalidRequestError('A request body is expected but none was provided')
      await importRepo({ db: deps.db, did: deps.config.did, currentKey: () => currentKey(deps) }, req.body)
    },
    { rawInput: true },
  )

  // What migration tools ask before and after moving an account (figures are true counts).
  x.query(com.atproto.server.checkAccountStatus.main, accessAuth, async ({ deps }) => {
    const [account, counts, validDid] = await Promise.all([deps.account(), countAccountState(deps.db), identityPointsHere(deps.config, deps.cache)])
    return {
      activated: account.status === 'active',
      validDid,
      repoCommit: counts.root?.cid ?? '',
      repoRev: counts.root?.rev ?? '',
      repoBlocks: counts.blocks,
      indexedRecords: counts.records,
      privateStateValues: counts.prefs,
      expectedBlobs: counts.expectedBlobs,
      importedBlobs: counts.importedBlobs,
    }
  })

  x.procedure(com.atproto.server.activateAccount.main, fullAccessAuth, async ({ deps }) => {
    const account = await deps.account()
    if (account.status === 'takendown' || account.status === 'suspended') throw new InvalidRequestError('user not found', 'AccountNotFound')
    await activateAccount({ config: deps.config, db: deps.db, repo: deps.repo, cache: deps.cache }, account)
    // The account is live here now: relays should come and look, whatever the hourly throttle says.
    deps.waitUntil(requestCrawl(deps.config.relayHosts, deps.config.hostname))
  })

  x.procedure(com.atproto.server.deactivateAccount.main, fullAccessAuth, async ({ deps, input }) => {
    const account = await deps.account()
    await deps.db.batchSql(deactivateAccountStatements(deps.db, account.did, input.deleteAfter ?? null))
    deps.waitUntil(deps.firehose.notify())
  })
}
