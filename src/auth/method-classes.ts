/**
 * Methods the auth rules single out, as the reference PDS lists them.
 * NSIDs are matched case-insensitively, as the reference does, so no
 * spelling of a protected method is ever forwarded.
 */

function lowerSet(items: string[]): ReadonlySet<string> {
  return new Set(items.map((s) => s.toLowerCase()))
}

/** True when `nsid` is in `set`, whatever its case. */
export const isIn = (set: ReadonlySet<string>, nsid: string): boolean => set.has(nsid.toLowerCase())

/**
 * Account-management methods are served by the PDS itself or not at all:
 * they are never forwarded, and no service token is minted for them.
 */
export const PROTECTED_METHODS: ReadonlySet<string> = lowerSet([
  'com.atproto.admin.sendEmail',
  'com.atproto.identity.requestPlcOperationSignature',
  'com.atproto.identity.signPlcOperation',
  'com.atproto.identity.updateHandle',
  'com.atproto.server.activateAccount',
  'com.atproto.server.confirmEmail',
  'com.atproto.server.createAppPassword',
  'com.atproto.server.deactivateAccount',
  'com.atproto.server.getAccountInviteCodes',
  'com.atproto.server.getSession',
  'com.atproto.server.listAppPasswords',
  'com.atproto.server.requestAccountDelete',
  'com.atproto.server.requestEmailConfirmation',
  'com.atproto.server.requestEmailUpdate',
  'com.atproto.server.revokeAppPassword',
  'com.atproto.server.updateEmail',
])

/** Methods an ordinary app password may not reach: direct messages and account creation. */
export const PRIVILEGED_METHODS: ReadonlySet<string> = lowerSet([
  'chat.bsky.actor.deleteAccount',
  'chat.bsky.actor.exportAccountData',
  'chat.bsky.convo.deleteMessageForSelf',
  'chat.bsky.convo.getConvo',
  'chat.bsky.convo.getConvoForMembers',
  'chat.bsky.convo.getLog',
  'chat.bsky.convo.getMessages',
  'chat.bsky.convo.leaveConvo',
  'chat.bsky.convo.listConvos',
  'chat.bsky.convo.muteConvo',
  'chat.bsky.convo.sendMessage',
  'chat.bsky.convo.sendMessageBatch',
  'chat.bsky.convo.unmuteConvo',
  'chat.bsky.convo.updateRead',
  'com.atproto.server.createAccount',
])
