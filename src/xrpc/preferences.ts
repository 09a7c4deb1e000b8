/**
 * app.bsky.actor.getPreferences / putPreferences, stored in D1 as the
 * reference PDS stores them: only `app.bsky.*` types, each with a `$type`;
 * personal details (birth date) only with full access, and the declared-age
 * preference derived from it, never stored. A request addressed to another
 * AppView (`atproto-proxy`) goes there instead.
 */
import { lexToJson } from '@atproto/lex-json'
import { accessAuth } from '../auth/verifier'
import { listPreferences, replacePreferences, type StoredPref } from '../db/account'
import type { Config } from '../env'
import { InvalidRequestError } from '../errors'
import { app } from '../lexicons'
import type { XrpcRouter } from './router'

const NAMESPACE = 'app.bsky'
const PERSONAL_DETAILS = 'app.bsky.actor.defs#personalDetailsPref'
const DECLARED_AGE = 'app.bsky.actor.defs#declaredAgePref'

const inNamespace = (name: string): boolean => name === NAMESPACE || name.startsWith(`${NAMESPACE}.`)
const allowed = (type: string, fullAccess: boolean): boolean => fullAccess || type !== PERSONAL_DETAILS
/** True when the client asked for an AppView other than ours: the call is forwarded there as it is. */
const addressedElsewhere = (req: Request, cfg: Config): boolean => {
  const proxyHeader = req.headers.get('atproto-proxy')
  return proxyHeader !== null && proxyHeader !== '' && (cfg.appView === null || proxyHeader !== `${cfg.appView.did}#bsky_appview`)
}

const ageOn = (birthDate: string, today: Date): number => {
  const born = new Date(birthDate)
  let age = today.getFullYear() - born.getFullYear()
  const months = today.getMonth() - born.getMonth()
  if (months < 0 || (months === 0 && today.getDate() < born.getDate())) age--
  return age
}

export const registerPreferenceMethods = (x: XrpcRouter): void => {
  x.query(
    app.bsky.actor.getPreferences.main,
    accessAuth,
    async ({ deps, auth }) => {
      const prefs = (await listPreferences(deps.db)).filter((p) => inNamespace(p.name)).map((p) => p.value)
      const details = prefs.find((p) => p.$type === PERSONAL_DETAILS)
      if (typeof details?.birthDate === 'string') {
        const age = ageOn(details.birthDate, new Date())
        prefs.push({ $type: DECLARED_AGE, isOverAge13: age >= 13, isOverAge16: age >= 16, isOverAge18: age >= 18 })
      }
      return { preferences: prefs.filter((p) => allowed(String(p.$type), auth.mayManageAccount())) }
    },
    { forwardIf: addressedElsewhere },
  )

  x.procedure(
    app.bsky.actor.putPreferences.main,
    accessAuth,
    async ({ deps, auth, input }) => {
      const values = input.preferences.map((pref) => lexToJson(pref as never) as Record<string, unknown>)
      for (const pref of values) if (typeof pref.$type !== 'string') throw new InvalidRequestError('Preference is missing a $type')
      const types = values.map((pref) => pref.$type as string)
      if (!types.every(inNamespace)) throw new InvalidRequestError(`Some preferences are not in the ${NAMESPACE} namespace`)
      const fullAccess = auth.mayManageAccount()
      const forbidden = types.filter((type) => !allowed(type, fullAccess))
      if (forbidden.length > 0) throw new InvalidRequestError(`Do not have authorization to set preferences: ${forbidden.join(', ')}`)
      const stored: StoredPref[] = values.filter((pref) => pref.$type !== DECLARED_AGE).map((value) => ({ name: value.$type as string, value }))
      // An app password cannot see personal details, so its put must not erase them.
      await replacePreferences(deps.db, { namespace: NAMESPACE, keep: fullAccess ? [] : [PERSONAL_DETAILS] }, stored)
    },
    { forwardIf: addressedElsewhere },
  )
}
