/**
 * Where a forwarded XRPC call goes, chosen as the reference PDS does: the
 * `atproto-proxy: <did>#<service id>` header names a service in a DID
 * document; without it, moderation reports go to the report service and
 * everything else to the configured AppView. The service token's `aud` is
 * the bare DID of the target.
 */
import type { Config, ServiceConfig } from '../env'
import { DidResolutionError, resolveDid, serviceEndpoint } from '../identity/resolver'
import { InvalidRequestError } from '../xrpc/errors'

export interface ProxyTarget {
  /** Base URL the request is sent to. */
  url: string
  /** DID of the service: the `aud` of the service token. */
  did: string
  serviceId: string
}

/**
 * Account-management methods are served by the PDS itself or not at all:
 * they are never forwarded, whatever the token (as the reference).
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

function lowerSet(items: string[]): ReadonlySet<string> {
  return new Set(items.map((s) => s.toLowerCase()))
}

/** NSIDs are matched case-insensitively, as the reference does. */
export const isIn = (set: ReadonlySet<string>, nsid: string): boolean => set.has(nsid.toLowerCase())

const defaultService = (cfg: Config, nsid: string): { serviceId: string; service: ServiceConfig | null } =>
  nsid === 'com.atproto.moderation.createReport' || nsid.startsWith('tools.ozone.')
    ? { serviceId: 'atproto_labeler', service: cfg.modService }
    : { serviceId: 'bsky_appview', service: cfg.appView }

/** Checks the header's shape, with the reference's messages. */
const parseProxyHeader = (header: string): { did: string; serviceId: string } => {
  const hash = header.indexOf('#')
  if (hash === 0) throw new InvalidRequestError('no did specified in proxy header')
  if (hash === -1 || hash === header.length - 1) throw new InvalidRequestError('no service id specified in proxy header')
  if (header.indexOf('#', hash + 1) !== -1) throw new InvalidRequestError('invalid proxy header format')
  if (header.includes(' ')) throw new InvalidRequestError('proxy header cannot contain spaces')
  return { did: header.slice(0, hash), serviceId: header.slice(hash + 1) }
}

export const resolveProxyTarget = async (cfg: Config, cache: KVNamespace, nsid: string, proxyHeader: string | null | undefined): Promise<ProxyTarget> => {
  if (!proxyHeader) {
    const { serviceId, service } = defaultService(cfg, nsid)
    if (!service) throw new InvalidRequestError(`No service configured for ${nsid}`)
    return { url: service.url, did: service.did, serviceId }
  }
  const { did, serviceId } = parseProxyHeader(proxyHeader)
  // The configured AppView is reached without resolving its DID.
  if (cfg.appView && did === cfg.appView.did && serviceId === 'bsky_appview') return { url: cfg.appView.url, did, serviceId }
  let url: string | null
  try {
    url = serviceEndpoint(await resolveDid(cfg, cache, did), serviceId)
  } catch (err) {
    if (err instanceof DidResolutionError) throw new InvalidRequestError('could not resolve proxy did')
    throw err
  }
  if (!url) throw new InvalidRequestError('could not resolve proxy did service url')
  return { url, did, serviceId }
}
