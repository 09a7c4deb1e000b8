/**
 * Where a forwarded XRPC call goes, chosen as the reference PDS does: the
 * `atproto-proxy: <did>#<service id>` header names a service in a DID
 * document; without it, moderation reports go to the report service and
 * everything else to the configured AppView. The service token's `aud` is
 * the bare DID of the target.
 */
import type { KvCache } from '../cache/kv-cache'
import type { Config, ServiceConfig } from '../env'
import { DidResolutionError, resolveDid, serviceEndpoint } from '../identity/resolver'
import { InvalidRequestError } from '../errors'

export interface ProxyTarget {
  /** Base URL the request is sent to. */
  url: string
  /** DID of the service: the `aud` of the service token. */
  did: string
  serviceId: string
}

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

export const resolveProxyTarget = async (cfg: Config, cache: KvCache, nsid: string, proxyHeader: string | null | undefined): Promise<ProxyTarget> => {
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
