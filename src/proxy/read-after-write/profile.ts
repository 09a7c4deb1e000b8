/**
 * Read-after-write for app.bsky.actor.getProfile and getProfiles (reference
 * PDS: api/app/bsky/actor/getProfile.ts, getProfiles.ts): the owner's
 * profile view shows the newer profile record's displayName, description,
 * avatar and banner. Counts, viewer state and labels stay the AppView's.
 */
import type { LocalRecords, ProfileView } from './types'
import { type Viewer, withProfileDetailed } from './views'

/** app.bsky.actor.getProfile: only when the profile asked for is the owner's. */
export const mungeProfile = (body: ProfileView, local: LocalRecords, viewer: Viewer): ProfileView => {
  if (!local.profile || body.did !== viewer.did) return body
  return withProfileDetailed(viewer, body, local.profile.record)
}

interface ProfilesBody {
  profiles: ProfileView[]
  [key: string]: unknown
}

/** app.bsky.actor.getProfiles: the owner's entry, wherever it is in the list. */
export const mungeProfiles = (body: ProfilesBody, local: LocalRecords, viewer: Viewer): ProfilesBody => {
  const profile = local.profile
  if (!profile) return body
  return {
    ...body,
    profiles: body.profiles.map((view) => (view.did === viewer.did ? withProfileDetailed(viewer, view, profile.record) : view)),
  }
}
