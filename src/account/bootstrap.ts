/**
 * First start of a deployment: a fresh identity gets its genesis commit
 * (an empty signed repo, announced on the firehose) before the first request
 * is served. Reads never create it; they answer on what exists.
 */
import { getRoot } from '../db/repo'
import { createGenesis, type RepoContext } from '../repo/commit'

/** Makes sure the account's repo exists; true when this call created it. */
export const bootstrapAccount = async (ctx: RepoContext): Promise<boolean> => {
  if (await getRoot(ctx.db)) return false
  return (await createGenesis(ctx)) !== null
}
