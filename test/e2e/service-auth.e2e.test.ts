/**
 * Service auth end to end: com.atproto.server.getServiceAuth mints tokens that
 * another service accepts (the loopback echo service checks them with
 * @atproto/xrpc-server's verifyJwt against this PDS's DID document), and
 * com.atproto.repo.uploadBlob accepts such a token addressed to this PDS, as
 * the Bluesky video service uploads on a user's behalf. Rules and messages
 * follow the reference (api/com/atproto/server/getServiceAuth.ts and
 * auth-verifier.ts's verifyServiceJwt in @atproto/pds 0.5.35); every check
 * runs against both servers (the reference's account is a did:plc and its
 * service DID is did:web:localhost).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Secp256k1Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'
import { type PdsProcess, startPds, stopPds } from './harness'
import { blobCid, getBlob, makeMp4, sha256Hex, uploadBlobRaw } from './helpers/blobs'
import { type EchoService, startEchoService } from './helpers/echo-service'
import { onEachPeer, ourPeer, type Peer as BasePeer, type ReferencePds, referencePeer, spawnReference } from './helpers/reference-peer'
import { createSession, decodeJwt, decodeJwtHeader, expectStatus, expectXrpcError, request, show, type XrpcResponse, xget, xpost } from './xrpc-client'

interface Peer extends BasePeer {
  /** The DID uploadBlob tokens must be addressed to (describeServer's did). */
  serviceDid: string
}

const HANDLE = 'alice.test'
const PASSWORD = 'service-auth-password-1'
const UPLOAD = 'com.atproto.repo.uploadBlob'

let echo: EchoService
let pds: PdsProcess
let refPds: ReferencePds | undefined
let ours: Peer
let ref: Peer | undefined

const serviceDidOf = async (p: { url: string }): Promise<string> =>
  expectStatus(await xget(p, 'com.atproto.server.describeServer'), 200).body.did

beforeAll(async () => {
  echo = await startEchoService()
  ;[pds, refPds] = await Promise.all([
    startPds({
      handle: HANDLE,
      password: PASSWORD,
      vars: { BSKY_APPVIEW_URL: echo.url, BSKY_APPVIEW_DID: echo.did, PLC_URL: echo.url },
    }),
    spawnReference({ handle: HANDLE, password: PASSWORD }),
  ])
  ours = { ...(await ourPeer(pds)), serviceDid: await serviceDidOf(pds) }
  if (refPds) {
    ref = { ...referencePeer(refPds), serviceDid: await serviceDidOf(refPds) }
    echo.setPlcUrl(refPds.plcUrl)
  }
}, 150_000)

afterAll(async () => {
  await Promise.all([stopPds(pds), refPds?.stop(), echo?.stop()])
})

/** Runs the same check on our PDS and on the reference; failures are labelled with the server. */
const onBoth = (check: (p: Peer) => Promise<void>): Promise<void> => onEachPeer(ref ? [ours, ref] : [ours], check)

type Params = Record<string, string | number | undefined>
/** getServiceAuth with the account session, another token, or (null) none. */
const serviceAuth = (p: Peer, params: Params, token: string | null = p.token): Promise<XrpcResponse> =>
  xget(p, 'com.atproto.server.getServiceAuth', params, token ?? undefined)
const mintVia = async (p: Peer, params: Params, token: string = p.token): Promise<string> => {
  const res = await serviceAuth(p, params, token)
  if (res.status !== 200 || typeof res.body?.token !== 'string') throw new Error(`getServiceAuth ${JSON.stringify(params)}: ${show(res)}`)
  return res.body.token
}
const nowS = (): number => Math.floor(Date.now() / 1000)

/** Presents a token to the echo service, which verifies it as `nsid`'s audience-checking service would. */
const presentToEcho = (jwt: string, nsid: string): Promise<XrpcResponse> =>
  request({ url: echo.url }, `/xrpc/${nsid}`, { headers: { authorization: `Bearer ${jwt}` } })

const appSession = async (p: Peer, name: string, privileged: boolean): Promise<string> => {
  const created = expectStatus(await xpost(p, 'com.atproto.server.createAppPassword', { name, privileged }, p.token), 200)
  return (await createSession(p, p.handle, created.body.password)).accessJwt
}

describe('getServiceAuth tokens are accepted by the service they name', () => {
  test('aud + lxm: ES256K, iss = the account, 60 s, random jti; verifyJwt accepts it', async () => {
    await onBoth(async (p) => {
      const jwt = await mintVia(p, { aud: echo.did, lxm: 'com.example.echo.ping' })
      expect(decodeJwtHeader(jwt)).toEqual({ typ: 'JWT', alg: 'ES256K' })
      const payload = decodeJwt(jwt)
      expect({ iss: payload.iss, aud: payload.aud, lxm: payload.lxm, ttl: payload.exp - payload.iat }).toEqual({
        iss: p.did,
        aud: echo.did,
        lxm: 'com.example.echo.ping',
        ttl: 60,
      })
      expect(payload.jti).toMatch(/^[0-9a-f]{32}$/)
      expect(decodeJwt(await mintVia(p, { aud: echo.did, lxm: 'com.example.echo.ping' })).jti).not.toBe(payload.jti)
      const res = expectStatus(await presentToEcho(jwt, 'com.example.echo.ping'), 200)
      expect(res.body.jwtPayload).toEqual(payload)
    })
    expect(echo.requests.find((r) => r.jwtPayload?.iss === pds.did)?.issuerKey).toBe(pds.didKey)
  })

  test('a chosen exp is kept, and a did#service audience is accepted as given', async () => {
    await onBoth(async (p) => {
      const exp = nowS() + 600
      const jwt = await mintVia(p, { aud: `${echo.did}#echo`, lxm: 'com.example.echo.later', exp })
      expect(decodeJwt(jwt)).toMatchObject({ aud: `${echo.did}#echo`, exp, lxm: 'com.example.echo.later' })
      expectStatus(await presentToEcho(jwt, 'com.example.echo.later'), 200)
      expect(echo.requests.at(-1)?.audience).toBe(`${echo.did}#echo`)
    })
  })

  test('without lxm: no lxm claim, and a service that requires one refuses it', async () => {
    await onBoth(async (p) => {
      const jwt = await mintVia(p, { aud: echo.did })
      const payload = decodeJwt(jwt)
      expect('lxm' in payload).toBe(false)
      expect(payload.exp - payload.iat).toBe(60)
      expectXrpcError(await presentToEcho(jwt, 'com.example.echo.ping'), 401, 'BadJwtLexiconMethod')
      echo.expectToken('com.example.echo.any', { aud: echo.did, lxm: null })
      expectStatus(await presentToEcho(jwt, 'com.example.echo.any'), 200)
    })
  })
})

describe('getServiceAuth refusals', () => {
  test('bad audiences and expirations, protected methods, no session', async () => {
    await onBoth(async (p) => {
      const cases: [Params, number, string, string | undefined][] = [
        [{ aud: 'not-a-did' }, 400, 'InvalidRequest', 'aud must be a valid atproto DID or did#serviceId reference'],
        [{ aud: 'did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme' }, 400, 'InvalidRequest', 'aud must be a valid atproto DID or did#serviceId reference'],
        [{ aud: 'did:plc:abc' }, 400, 'InvalidRequest', 'aud must be a valid atproto DID or did#serviceId reference'],
        [{}, 400, 'InvalidRequest', undefined],
        [{ aud: echo.did, exp: 'abc' }, 400, 'InvalidRequest', undefined],
        [{ aud: echo.did, lxm: 'a.b.c', exp: nowS() - 5 }, 400, 'BadExpiration', 'expiration is in past'],
        [{ aud: echo.did, lxm: 'a.b.c', exp: nowS() + 3700 }, 400, 'BadExpiration', 'cannot request a token with an expiration more than an hour in the future'],
        [{ aud: echo.did, exp: nowS() + 120 }, 400, 'BadExpiration', 'cannot request a method-less token with an expiration more than a minute in the future'],
        [{ aud: echo.did, lxm: 'com.atproto.server.createAppPassword' }, 400, 'InvalidRequest', 'cannot request a service auth token for the following protected method: com.atproto.server.createAppPassword'],
        [{ aud: echo.did, lxm: 'com.atproto.server.getSession' }, 400, 'InvalidRequest', 'cannot request a service auth token for the following protected method: com.atproto.server.getSession'],
      ]
      for (const [params, status, error, message] of cases) {
        try {
          expectXrpcError(await serviceAuth(p, params), status, error, message)
        } catch (err) {
          throw new Error(`${JSON.stringify(params)}: ${(err as Error).message}`)
        }
      }
      expectXrpcError(await serviceAuth(p, { aud: echo.did }, null), 401, 'AuthMissing', 'Authentication Required')
      // An hour minus a little, with a method, is fine.
      expect(decodeJwt(await mintVia(p, { aud: echo.did, lxm: 'a.b.c', exp: nowS() + 3500 })).lxm).toBe('a.b.c')
    })
  })

  test('an ordinary app password cannot get tokens for privileged methods; a privileged one can', async () => {
    await onBoth(async (p) => {
      const plain = await appSession(p, 'svc-plain', false)
      for (const lxm of ['chat.bsky.convo.sendMessage', 'com.atproto.server.createAccount']) {
        expectXrpcError(
          await serviceAuth(p, { aud: echo.did, lxm }, plain),
          400,
          'InvalidRequest',
          `insufficient access to request a service auth token for the following method: ${lxm}`,
        )
      }
      expect(decodeJwt(await mintVia(p, { aud: p.serviceDid, lxm: UPLOAD }, plain)).iss).toBe(p.did)
      const privileged = await appSession(p, 'svc-privileged', true)
      expect(decodeJwt(await mintVia(p, { aud: echo.did, lxm: 'chat.bsky.convo.sendMessage' }, privileged)).lxm).toBe(
        'chat.bsky.convo.sendMessage',
      )
    })
  })
})

describe('uploadBlob with a service token, as the video service does', () => {
  test('a token for this PDS uploads a blob the account can then use in a record', async () => {
    await onBoth(async (p) => {
      const video = makeMp4()
      const jwt = await mintVia(p, { aud: p.serviceDid, lxm: UPLOAD })
      const up = expectStatus(await uploadBlobRaw(p, video, 'video/mp4', jwt), 200)
      expect(up.body).toEqual({
        blob: { $type: 'blob', ref: { $link: blobCid(video) }, mimeType: 'video/mp4', size: video.byteLength },
      })
      const record = {
        $type: 'app.bsky.feed.post',
        text: 'uploaded by the video service',
        createdAt: new Date().toISOString(),
        embed: { $type: 'app.bsky.embed.video', video: up.body.blob },
      }
      expectStatus(await xpost(p, 'com.atproto.repo.createRecord', { repo: p.did, collection: 'app.bsky.feed.post', record }, p.token), 200)
      const served = expectStatus(await getBlob(p, p.did, blobCid(video)), 200)
      expect(sha256Hex(served.bytes)).toBe(sha256Hex(video))
    })
  })

  test('refused: wrong lxm, wrong or fragment audience, no lxm, another key', async () => {
    await onBoth(async (p) => {
      const body = makeMp4()
      const upload = (jwt: string) => uploadBlobRaw(p, body, 'video/mp4', jwt)
      expectXrpcError(
        await upload(await mintVia(p, { aud: p.serviceDid, lxm: 'com.atproto.repo.createRecord' })),
        401,
        'BadJwtLexiconMethod',
        'bad jwt lexicon method ("lxm"). must match: com.atproto.repo.uploadBlob',
      )
      for (const aud of [echo.did, `${p.serviceDid}#atproto_pds`]) {
        expectXrpcError(await upload(await mintVia(p, { aud, lxm: UPLOAD })), 401, 'BadJwtAudience', 'jwt audience does not match service did')
      }
      // Without lxm it is not recognisably a service token: the access-token check refuses it.
      expectXrpcError(await upload(await mintVia(p, { aud: p.serviceDid })), 400, 'InvalidToken', 'Token could not be verified')
      const stranger = await Secp256k1Keypair.create()
      const forged = await createServiceJwt({ iss: p.did, aud: p.serviceDid, lxm: UPLOAD, keypair: stranger })
      expectXrpcError(await upload(forged), 401, 'BadJwtSignature', 'jwt signature does not match jwt issuer')
    })
  })

  test('an issuer other than the account is refused with 401', async () => {
    // The reference (multi-account) resolves any issuer and fails on its DID
    // document here: 401 AuthenticationRequired "missing or bad key in did doc".
    // A single-user PDS trusts only its account, and says so with the name
    // xrpc-server's verifier uses for an issuer outside its list.
    const stranger = await Secp256k1Keypair.create()
    const keyless = await createServiceJwt({ iss: echo.did, aud: ours.serviceDid, lxm: UPLOAD, keypair: stranger })
    expectXrpcError(await uploadBlobRaw(ours, makeMp4(), 'video/mp4', keyless), 401, 'UntrustedIss', 'Untrusted issuer')
    if (ref) {
      const refKeyless = await createServiceJwt({ iss: echo.did, aud: ref.serviceDid, lxm: UPLOAD, keypair: stranger })
      expectXrpcError(await uploadBlobRaw(ref, makeMp4(), 'video/mp4', refKeyless), 401, 'AuthenticationRequired', 'missing or bad key in did doc')
    }
  })

  test('a service token is no access token: other methods refuse it', async () => {
    await onBoth(async (p) => {
      const jwt = await mintVia(p, { aud: p.serviceDid, lxm: 'com.atproto.repo.createRecord' })
      const record = { $type: 'app.bsky.feed.post', text: 'x', createdAt: new Date().toISOString() }
      expectXrpcError(
        await xpost(p, 'com.atproto.repo.createRecord', { repo: p.did, collection: 'app.bsky.feed.post', record }, jwt),
        400,
        'InvalidToken',
        'Token could not be verified',
      )
      const upload = await mintVia(p, { aud: p.serviceDid, lxm: UPLOAD })
      expectXrpcError(await xget(p, 'com.atproto.server.getSession', undefined, upload), 400, 'InvalidToken', 'Token could not be verified')
    })
  })

  test('signed with the account key but expired, or typed as an access token: refused (ours, minted by hand)', async () => {
    const keypair = await Secp256k1Keypair.import(pds.signingKeyHex)
    const body = makeMp4()
    const expired = await createServiceJwt({ iss: pds.did, aud: pds.did, lxm: UPLOAD, exp: nowS() - 1, keypair })
    expectXrpcError(await uploadBlobRaw(pds, body, 'video/mp4', expired), 401, 'JwtExpired', 'jwt expired')
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
    const signingInput = `${b64({ typ: 'at+jwt', alg: 'ES256K' })}.${b64({ iss: pds.did, aud: pds.did, lxm: UPLOAD, exp: nowS() + 60 })}`
    const typed = `${signingInput}.${Buffer.from(await keypair.sign(new TextEncoder().encode(signingInput))).toString('base64url')}`
    expectXrpcError(await uploadBlobRaw(pds, body, 'video/mp4', typed), 401, 'BadJwtType', 'Invalid jwt type "at+jwt"')
    // The well-formed twin of both is accepted, so the refusals above are about exp and typ alone.
    const good = await createServiceJwt({ iss: pds.did, aud: pds.did, lxm: UPLOAD, keypair })
    expectStatus(await uploadBlobRaw(pds, body, 'video/mp4', good), 200)
  })
})
