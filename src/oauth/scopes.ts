/**
 * Scopes of an authorization request and of the tokens it leads to
 * (atproto permission spec): the request may only ask for scopes the client
 * declared, must ask for `atproto`, and loses values this server cannot
 * interpret (dropped silently, as the reference does, so a client written for
 * a newer spec still signs in). `include:` permission sets are resolved at
 * the push (an unresolvable one is `invalid_scope` there) and expanded into
 * their `repo:`/`rpc:` permissions whenever tokens are issued, so a set's
 * change reaches a session at its next refresh.
 */
import { IncludeScope, isAtprotoOauthScope, type LexiconPermissionSet } from '@atproto/oauth-scopes'
import type { OAuthContext } from './context'
import { invalidScope } from './errors'
import { PermissionSetError, resolvePermissionSet } from './permission-sets'

const split = (scope: string | undefined): string[] => (scope ? scope.split(' ').filter(Boolean) : [])
const dedupe = (values: string[]): string[] => [...new Set(values)]

/** The requested scope, checked against the client's declared scope and normalised; throws `invalid_scope`. */
export const checkRequestedScope = (requested: string | undefined, clientScope: string | undefined): string => {
  const declared = split(clientScope)
  const values = split(requested)
  if (!values.includes('atproto')) throw invalidScope('The "atproto" scope is required')
  if (values.includes('openid')) throw invalidScope('OpenID Connect is not supported')
  for (const value of values) {
    if (!declared.includes(value)) throw invalidScope(`Scope "${value}" is not declared in the client metadata`)
  }
  return dedupe(values.filter(isAtprotoOauthScope)).join(' ')
}

/** The `include:` values of a scope. */
export const includeScopes = (scope: string): IncludeScope[] =>
  split(scope)
    .map((value) => IncludeScope.fromString(value))
    .filter((include): include is IncludeScope => include !== null)

/** Resolves every permission set a scope includes (nsid → set); throws `invalid_scope` naming the one that failed. */
export const resolveIncludes = async (ctx: OAuthContext, scope: string): Promise<Map<string, LexiconPermissionSet>> => {
  const sets = new Map<string, LexiconPermissionSet>()
  for (const include of includeScopes(scope)) {
    if (sets.has(include.nsid)) continue
    try {
      sets.set(include.nsid, await resolvePermissionSet(ctx, include.nsid))
    } catch (err) {
      if (err instanceof PermissionSetError) throw invalidScope(err.message)
      throw err
    }
  }
  return sets
}

/** `include:` scopes replaced by the permissions of their sets (those outside the set's authority, or unknown, are dropped by the library). */
export const expandWithSets = (scope: string, sets: Map<string, LexiconPermissionSet>): string => {
  const expanded: string[] = []
  const others: string[] = []
  for (const value of split(scope)) {
    const include = IncludeScope.fromString(value)
    if (!include) others.push(value)
    else {
      const set = sets.get(include.nsid)
      if (set) expanded.push(...include.toScopes(set))
    }
  }
  return dedupe([...expanded, ...others]).join(' ')
}

/**
 * The scope tokens carry for an approved `requestScope`. At a refresh,
 * `previous` is what the session had: if a set cannot be resolved now, the
 * session keeps it rather than breaking (the spec: expiry of a cache must not
 * break existing sessions).
 */
export const tokenScope = async (ctx: OAuthContext, requestScope: string, previous?: string): Promise<string> => {
  if (includeScopes(requestScope).length === 0) return requestScope
  try {
    return expandWithSets(requestScope, await resolveIncludes(ctx, requestScope))
  } catch (err) {
    if (previous !== undefined) return previous
    throw err
  }
}
