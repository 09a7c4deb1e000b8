/**
 * Token scopes, as the reference PDS names them. Full access is the owner's
 * password; app passwords get `appPass`, or `appPassPrivileged` when they may
 * also reach direct messages.
 */
export enum AuthScope {
  Access = 'com.atproto.access',
  Refresh = 'com.atproto.refresh',
  AppPass = 'com.atproto.appPass',
  AppPassPrivileged = 'com.atproto.appPassPrivileged',
}

/** Scopes that may call ordinary methods (everything but account management). */
export const ACCESS_STANDARD: readonly AuthScope[] = [AuthScope.Access, AuthScope.AppPassPrivileged, AuthScope.AppPass]
/** Scopes that may reach privileged methods (direct messages). */
export const ACCESS_PRIVILEGED: readonly AuthScope[] = [AuthScope.Access, AuthScope.AppPassPrivileged]

export const isAccessPrivileged = (scope: AuthScope): boolean => ACCESS_PRIVILEGED.includes(scope)
/** Account management: the owner's password only. */
export const ACCESS_FULL: readonly AuthScope[] = [AuthScope.Access]
