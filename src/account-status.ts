/**
 * The account's hosting status as the protocol speaks of it (atproto account
 * spec): `active`, or inactive with a status (`deactivated`, `takendown`,
 * `suspended`). Inactive accounts accept no repo writes; their repo is served
 * only to their owner.
 */
import type { AccountRow, AccountStatus } from './db/account-row'
import { InvalidRequestError } from './errors'

export type { AccountRow, AccountStatus }

/** `{active: true}` or `{active: false, status}`, as getSession, getRepoStatus and #account carry it. */
export const statusView = (row: Pick<AccountRow, 'status'>): { active: boolean; status?: AccountStatus } =>
  row.status === 'active' ? { active: true } : { active: false, status: row.status }

/** A write was refused because the account is not active (the edge answers 401 AccountDeactivated / AccountTakedown). */
export class AccountInactiveError extends Error {
  override name = 'AccountInactiveError'
  constructor(readonly status: AccountStatus) {
    super(status === 'deactivated' ? 'Account is deactivated' : 'Account has been taken down')
  }
}

/** Throws unless the account may write to its repo. */
export const assertActive = (row: Pick<AccountRow, 'status'>): void => {
  if (row.status !== 'active') throw new AccountInactiveError(row.status)
}

/**
 * Like the reference's assertRepoAvailability: an inactive repo is served only
 * to its owner (who exports it to migrate away), everyone else gets the
 * status as a 400 error.
 */
export const assertRepoAvailable = (row: Pick<AccountRow, 'did' | 'status'>, callerDid: string | null): void => {
  if (row.status === 'active' || callerDid === row.did) return
  const [error, verb] = REPO_STATUS_ERRORS[row.status]
  throw new InvalidRequestError(`Repo has been ${verb}: ${row.did}`, error)
}

const REPO_STATUS_ERRORS: Record<Exclude<AccountStatus, 'active'>, [error: string, verb: string]> = {
  deactivated: ['RepoDeactivated', 'deactivated'],
  takendown: ['RepoTakendown', 'takendown'],
  suspended: ['RepoSuspended', 'suspended'],
}
