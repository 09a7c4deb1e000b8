/**
 * Requested scopes and permission sets (src/oauth/scopes.ts) and their plain
 * words (src/oauth/scope-descriptions.ts): only declared scopes, `atproto`
 * required, unknown values dropped; a set expands into the repo:/rpc:
 * permissions under its own namespace (the spec's example).
 */
import type { LexiconPermissionSet } from '@atproto/oauth-scopes'
import { describe, expect, it } from 'vitest'
import { OAuthError } from '../../src/oauth/errors'
import { lexiconAuthority } from '../../src/oauth/permission-sets'
import { describeScope } from '../../src/oauth/scope-descriptions'
import { checkRequestedScope, expandWithSets } from '../../src/oauth/scopes'

const SET: LexiconPermissionSet = {
  type: 'permission-set',
  title: 'Example app: full access',
  detail: 'Post and read feeds in Example.',
  permissions: [
    { type: 'permission', resource: 'repo', collection: ['app.example.post'] },
    { type: 'permission', resource: 'repo', collection: ['com.other.post'] },
    { type: 'permission', resource: 'rpc', lxm: ['app.example.getFeed'], inheritAud: true },
    { type: 'permission', resource: 'rpc', lxm: ['app.example.getFeedSkeleton'], aud: '*' },
    { type: 'permission', resource: 'blob', accept: ['*/*'] },
    { type: 'permission', resource: 'made-up', what: 'ever' },
  ],
}

describe('requested scopes', () => {
  it('only what the client declared, atproto required, unknown values dropped', () => {
    expect(checkRequestedScope('atproto transition:generic', 'atproto transition:generic transition:chat.bsky')).toBe('atproto transition:generic')
    expect(checkRequestedScope('atproto future:thing atproto', 'atproto future:thing')).toBe('atproto')
    const code = (fn: () => unknown) => {
      try {
        fn()
      } catch (err) {
        return err instanceof OAuthError ? `${err.error}: ${err.description}` : String(err)
      }
      return null
    }
    expect(code(() => checkRequestedScope('transition:generic', 'atproto transition:generic'))).toBe('invalid_scope: The "atproto" scope is required')
    expect(code(() => checkRequestedScope('atproto transition:chat.bsky', 'atproto'))).toBe('invalid_scope: Scope "transition:chat.bsky" is not declared in the client metadata')
    expect(code(() => checkRequestedScope(undefined, 'atproto'))).toMatch(/atproto/)
  })
})

describe('permission sets', () => {
  it('the authority of an NSID is its domain part reversed', () => {
    expect(lexiconAuthority('app.example.authFull')).toBe('example.app')
    expect(lexiconAuthority('com.example.sub.authBasic')).toBe('sub.example.com')
  })

  it('expand into the permissions under the set\'s namespace; the rest is ignored', () => {
    const sets = new Map([['app.example.authFull', SET]])
    expect(expandWithSets('atproto include:app.example.authFull?aud=did:web:api.example.com%23svc', sets).split(' ')).toEqual([
      'repo:app.example.post',
      'rpc:app.example.getFeed?aud=did:web:api.example.com%23svc',
      'rpc:app.example.getFeedSkeleton?aud=*',
      'atproto',
    ])
  })
})

describe('plain words', () => {
  it('groups what a scope allows, naming known collections', () => {
    const groups = describeScope('atproto repo:app.bsky.feed.post?action=create&action=delete blob:image/* transition:chat.bsky account:email', new Map(), 'alice.test')
    const text = JSON.stringify(groups)
    expect(groups[0].items[0]).toContain('@alice.test')
    expect(text).toContain('Create and delete posts (app.bsky.feed.post)')
    expect(text).toContain('Upload images')
    expect(text).toContain('act on your behalf with chat.bsky')
    expect(text).toContain('See your email address')
    expect(groups.find((g) => g.title === 'Direct messages')?.sensitive).toBe(true)
  })

  it('a permission set shows its title, detail and what it expands to', () => {
    const groups = describeScope('atproto include:app.example.authFull', new Map([['app.example.authFull', SET]]), 'alice.test')
    const set = groups.find((g) => g.title === 'Example app: full access')
    expect(set?.detail).toBe('Post and read feeds in Example.')
    expect(set?.items.join(' | ')).toContain('app.example.post records')
    expect(set?.items.join(' | ')).not.toContain('com.other.post')
  })
})
