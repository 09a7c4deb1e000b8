/**
 * Client ids and metadata documents (src/oauth/client-metadata.ts): which
 * ids are accepted, the atproto rules on metadata, redirect URI matching (a
 * loopback URI registered without a port matches any port), and the SSRF
 * address and host-name rules of src/oauth/safe-fetch.ts.
 */
import { describe, expect, it } from 'vitest'
import { clientKind, loopbackClientMetadata, redirectUriMatches, validateClientMetadata } from '../../src/oauth/client-metadata'
import { OAuthError } from '../../src/oauth/errors'
import { assertFetchableUrl, isLocalOnlyHostname, isPublicAddress, SafeFetchError } from '../../src/oauth/safe-fetch'

const CLIENT_ID = 'https://app.example.net/oauth-client-metadata.json'

const webClient = (overrides: Record<string, unknown> = {}) => ({
  client_id: CLIENT_ID,
  client_name: 'Example',
  client_uri: 'https://app.example.net',
  redirect_uris: ['https://app.example.net/callback'],
  scope: 'atproto transition:generic',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
  application_type: 'web',
  dpop_bound_access_tokens: true,
  ...overrides,
})

const errorOf = (fn: () => unknown): string | null => {
  try {
    fn()
    return null
  } catch (err) {
    if (err instanceof OAuthError) return `${err.error}: ${err.description}`
    throw err
  }
}

describe('client ids', () => {
  it('loopback ids and https document URLs are accepted', () => {
    expect(clientKind('http://localhost')).toBe('loopback')
    expect(clientKind('http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&scope=atproto')).toBe('loopback')
    expect(clientKind(CLIENT_ID)).toBe('discoverable')
  })

  it('IP addresses, http, ports on localhost, paths "/", non-URLs are not client ids; local names are not public ones', () => {
    for (const id of [
      'https://127.0.0.1/client.json',
      'https://10.0.0.1/client.json',
      'http://app.example.net/client.json',
      'http://localhost:3000',
      'https://app.example.net/',
      'https://app.example.net/client.json#x',
      'https://printer.local/client.json',
      'https://intranet/client.json',
      'not a url',
      '',
    ]) {
      expect(errorOf(() => clientKind(id)), id).toMatch(/^invalid_client_metadata: Invalid client ID/)
    }
    for (const id of ['https://app.test/client.json', 'https://box.internal/client.json', 'https://router.lan/client.json']) {
      expect(errorOf(() => clientKind(id)), id).toMatch(/^invalid_client_id/)
    }
  })
})

describe('metadata rules', () => {
  it('a good web client and the loopback client pass', () => {
    expect(validateClientMetadata(CLIENT_ID, 'discoverable', webClient()).client_name).toBe('Example')
    const id = 'http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&scope=atproto+transition%3Ageneric'
    const meta = validateClientMetadata(id, 'loopback', loopbackClientMetadata(id))
    expect(meta.redirect_uris).toEqual(['http://127.0.0.1/cb'])
    expect(meta.token_endpoint_auth_method).toBe('none')
  })

  it('each atproto rule is enforced with a clear message', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ dpop_bound_access_tokens: false }, /dpop_bound_access_tokens must be true/],
      [{ scope: 'transition:generic' }, /"atproto" scope is required/],
      [{ token_endpoint_auth_method: 'client_secret_basic' }, /not supported/],
      [{ token_endpoint_auth_method: undefined }, /not supported/],
      [{ client_id: 'https://other.example.net/c.json' }, /does not match/],
      [{ client_id: undefined }, /client_id is required/],
      [{ grant_types: ['authorization_code', 'implicit'] }, /not supported/],
      [{ redirect_uris: ['http://app.example.net/cb'] }, /127\.0\.0\.1/],
      [{ redirect_uris: ['http://127.0.0.1/cb'] }, /only allowed for native/],
      [{ redirect_uris: ['https://localhost/cb'] }, /.+/],
      [{ client_uri: 'https://elsewhere.example.net' }, /same origin/],
      [{ token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'ES256K', jwks_uri: 'https://app.example.net/jwks' }, /ES256K" is not supported/],
      [{ token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'ES256' }, /needs jwks or jwks_uri/],
      [{ jwks: { keys: [] }, jwks_uri: 'https://app.example.net/jwks' }, /.+/],
      [{ application_type: 'native', token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'ES256', jwks_uri: 'https://app.example.net/jwks' }, /Native clients must use/],
      [{ application_type: 'native', redirect_uris: ['com.other.app:/cb'] }, /net\.example\.app:/],
    ]
    for (const [overrides, message] of cases) {
      expect(errorOf(() => validateClientMetadata(CLIENT_ID, 'discoverable', webClient(overrides))), JSON.stringify(overrides)).toMatch(message)
    }
    // A private-use scheme that is the client's host reversed is fine for a native app.
    expect(errorOf(() => validateClientMetadata(CLIENT_ID, 'discoverable', webClient({ application_type: 'native', redirect_uris: ['net.example.app:/cb'] })))).toBeNull()
  })
})

describe('redirect URI matching', () => {
  it('exact matches; a loopback URI without a port matches any port, nothing else', () => {
    expect(redirectUriMatches('https://app.example.net/cb', 'https://app.example.net/cb')).toBe(true)
    expect(redirectUriMatches('https://app.example.net/cb', 'https://app.example.net/cb2')).toBe(false)
    expect(redirectUriMatches('http://127.0.0.1/cb', 'http://127.0.0.1:54321/cb')).toBe(true)
    expect(redirectUriMatches('http://127.0.0.1/cb', 'http://127.0.0.1:54321/other')).toBe(false)
    expect(redirectUriMatches('http://127.0.0.1/cb', 'http://127.0.0.1:54321/cb?x=1')).toBe(false)
    expect(redirectUriMatches('http://127.0.0.1:8080/cb', 'http://127.0.0.1:9090/cb')).toBe(false)
    expect(redirectUriMatches('http://127.0.0.1/cb', 'http://[::1]:1234/cb')).toBe(false)
    expect(redirectUriMatches('https://app.example.net/cb', 'https://app.example.net:8443/cb')).toBe(false)
  })
})

describe('what the server will fetch', () => {
  it('public addresses only', () => {
    for (const ip of ['93.184.216.34', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) expect(isPublicAddress(ip), ip).toBe(true)
    for (const ip of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '::1', 'fe80::1', 'fc00::1', '::ffff:127.0.0.1', '2001:db8::1']) {
      expect(isPublicAddress(ip), ip).toBe(false)
    }
  })

  it('https, default port, a public DNS name', () => {
    expect(() => assertFetchableUrl(new URL('https://app.example.net/c.json'))).not.toThrow()
    for (const url of ['http://app.example.net/c.json', 'https://app.example.net:8443/c.json', 'https://1.2.3.4/c.json', 'https://[::1]/c.json', 'https://u:p@app.example.net/c.json', 'https://box.internal/c.json']) {
      expect(() => assertFetchableUrl(new URL(url)), url).toThrow(SafeFetchError)
    }
    expect(isLocalOnlyHostname('localhost')).toBe(true)
    expect(isLocalOnlyHostname('app.example.net')).toBe(false)
  })
})
