/**
 * What an OAuth session may do, from its scope (src/auth/oauth-credentials.ts
 * and the per-method table src/auth/oauth-methods.ts): granular permissions,
 * the transitional scopes, the refusals (403 `Missing required scope "..."`,
 * and the methods OAuth never reaches), and password sessions unchanged.
 */
import { describe, expect, it } from 'vitest'
import { assertMayCallService, assertMayUploadBlob, assertMayWriteRecords, sessionCredentials, type AccessCredentials } from '../../src/auth/credentials'
import { oauthCredentials } from '../../src/auth/oauth-credentials'
import { assertOAuthMayCall, OAUTH_METHOD_RULES } from '../../src/auth/oauth-methods'
import { AuthScope } from '../../src/auth/scope'
import { InvalidRequestError, XrpcError } from '../../src/errors'

const DID = 'did:plc:abcdefghijklmnopqrstuvwx'
const APPVIEW = 'did:web:api.bsky.app#bsky_appview'
const CHAT = 'did:web:api.bsky.chat#bsky_chat'

const oauth = (scope: string): AccessCredentials => oauthCredentials({ did: DID, clientId: 'https://app.example.net/c.json', scope, sessionId: 'ses-1' })

const refusal = (fn: () => void): { status: number; error: string; message: string } | null => {
  try {
    fn()
    return null
  } catch (err) {
    if (!(err instanceof XrpcError)) throw err
    return { status: err.status, error: err.error, message: err.message }
  }
}

const call = (auth: AccessCredentials, nsid: string, opts: { forwarded?: boolean; proxy?: string } = {}) => () =>
  assertOAuthMayCall(auth, { nsid, forwarded: opts.forwarded ?? false, proxyHeader: opts.proxy ?? null, appViewAud: APPVIEW })

describe('the may-I answers of an OAuth credential', () => {
  it('atproto alone: who you are, nothing else', () => {
    const auth = oauth('atproto')
    expect(auth.mayManageAccount()).toBe(false)
    expect(auth.mayWriteRecord('app.bsky.feed.post', 'create')).toBe(false)
    expect(auth.mayUploadBlob('image/png')).toBe(false)
    expect(auth.mayCallService('app.bsky.feed.getTimeline', APPVIEW)).toBe(false)
    expect(auth.mayReadEmail()).toBe(false)
  })

  it('transition:generic behaves like an app password: everything but chat and account management', () => {
    const auth = oauth('atproto transition:generic')
    expect(auth.mayWriteRecord('com.example.anything', 'delete')).toBe(true)
    expect(auth.mayUploadBlob('video/mp4')).toBe(true)
    expect(auth.mayCallService('app.bsky.feed.getTimeline', APPVIEW)).toBe(true)
    expect(auth.mayCallService('chat.bsky.convo.listConvos', CHAT)).toBe(false)
    expect(auth.mayManageAccount()).toBe(false)
    expect(auth.mayReadEmail()).toBe(false)
    expect(oauth('atproto transition:generic transition:chat.bsky').mayCallService('chat.bsky.convo.listConvos', CHAT)).toBe(true)
    expect(oauth('atproto transition:email').mayReadEmail()).toBe(true)
  })

  it('granular repo, blob and rpc permissions', () => {
    const auth = oauth('atproto repo:app.bsky.feed.post?action=create blob:image/* rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview account:email')
    expect(auth.mayWriteRecord('app.bsky.feed.post', 'create')).toBe(true)
    expect(auth.mayWriteRecord('app.bsky.feed.post', 'delete')).toBe(false)
    expect(auth.mayWriteRecord('app.bsky.feed.like', 'create')).toBe(false)
    expect(auth.mayUploadBlob('image/png')).toBe(true)
    expect(auth.mayUploadBlob('video/mp4')).toBe(false)
    expect(auth.mayCallService('app.bsky.feed.getTimeline', APPVIEW)).toBe(true)
    expect(auth.mayCallService('app.bsky.feed.getTimeline', 'did:web:other.example#bsky_appview')).toBe(false)
    expect(auth.mayCallService('app.bsky.actor.getProfile', APPVIEW)).toBe(false)
    expect(auth.mayReadEmail()).toBe(true)
  })
})

describe('refusals name the scope that was missing (403, as the reference)', () => {
  const auth = oauth('atproto repo:app.bsky.feed.post')
  it('records, blobs, services', () => {
    expect(refusal(() => assertMayWriteRecords(auth, [{ collection: 'app.bsky.feed.like', action: 'create' }]))).toEqual({
      status: 403,
      error: 'ScopeMissingError',
      message: 'Missing required scope "repo:app.bsky.feed.like?action=create"',
    })
    expect(refusal(() => assertMayUploadBlob(auth, 'image/png'))?.message).toBe('Missing required scope "blob:image/png"')
    expect(refusal(() => assertMayCallService(auth, 'app.bsky.feed.getTimeline', APPVIEW, () => new InvalidRequestError('session refusal')))?.message).toBe(
      'Missing required scope "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview"',
    )
  })

  it('password sessions keep their own answers', () => {
    const appPassword = sessionCredentials(DID, AuthScope.AppPass, null)
    expect(refusal(() => assertMayCallService(appPassword, 'chat.bsky.convo.listConvos', CHAT, () => new InvalidRequestError('Bad token method', 'InvalidToken')))).toEqual({
      status: 400,
      error: 'InvalidToken',
      message: 'Bad token method',
    })
    const owner = sessionCredentials(DID, AuthScope.Access, null)
    expect(owner.oauth).toBeNull()
    expect(refusal(call(owner, 'com.atproto.server.createAppPassword'))).toBeNull()
  })
})

describe('the per-method table', () => {
  it('never: app passwords and account lifecycle, whatever the scope', () => {
    const all = oauth('atproto transition:generic transition:chat.bsky transition:email account:email?action=manage identity:*')
    for (const nsid of ['com.atproto.server.createAppPassword', 'com.atproto.server.listAppPasswords', 'com.atproto.server.revokeAppPassword', 'com.atproto.server.deactivateAccount', 'com.atproto.server.updateEmail']) {
      expect(refusal(call(all, nsid)), nsid).toEqual({ status: 403, error: 'Forbidden', message: 'OAuth credentials are not supported for this endpoint' })
    }
  })

  it('account and identity methods by account: and identity:', () => {
    expect(refusal(call(oauth('atproto transition:generic'), 'com.atproto.server.requestEmailConfirmation'))?.message).toBe('Missing required scope "account:email?action=manage"')
    expect(refusal(call(oauth('atproto account:email?action=manage'), 'com.atproto.server.requestEmailConfirmation'))).toBeNull()
    expect(refusal(call(oauth('atproto transition:generic'), 'com.atproto.identity.updateHandle'))?.message).toBe('Missing required scope "identity:handle"')
    expect(refusal(call(oauth('atproto identity:handle'), 'com.atproto.identity.updateHandle'))).toBeNull()
    expect(refusal(call(oauth('atproto identity:handle'), 'com.atproto.identity.signPlcOperation'))?.message).toBe('Missing required scope "identity:*"')
  })

  it('AppView methods answered here need rpc: at the AppView the client addresses', () => {
    const prefs = oauth('atproto rpc:app.bsky.actor.getPreferences?aud=did:web:api.bsky.app%23bsky_appview')
    expect(refusal(call(prefs, 'app.bsky.actor.getPreferences'))).toBeNull()
    expect(refusal(call(prefs, 'app.bsky.actor.putPreferences'))?.status).toBe(403)
    expect(refusal(call(prefs, 'app.bsky.actor.getPreferences', { proxy: 'did:web:other.example#bsky_appview' }))?.status).toBe(403)
    expect(refusal(call(oauth('atproto rpc:app.bsky.feed.getFeed?aud=*'), 'app.bsky.feed.getFeed'))?.message).toBe('Missing required scope "rpc:app.bsky.feed.getFeedSkeleton?aud=did:web:api.bsky.app%23bsky_appview"')
  })

  it('an unlisted method served here is closed; an unlisted forwarded one is checked at forwarding', () => {
    const auth = oauth('atproto transition:generic')
    expect(refusal(call(auth, 'com.atproto.server.someNewMethod'))?.status).toBe(403)
    expect(refusal(call(auth, 'app.bsky.feed.getTimeline', { forwarded: true }))).toBeNull()
    expect(Object.keys(OAUTH_METHOD_RULES).every((nsid) => /^[a-z]+(\.[a-zA-Z]+)+$/.test(nsid))).toBe(true)
  })
})
