// Smoke test of the reference PDS oracle: start it, log in with @atproto/api, write a post, read it
// back, stop. Prints OK and exits 0 on success.
//   /work/main/node_modules/node/bin/node test/peers/smoke.mjs
import assert from 'node:assert/strict'
import { ensureInstalled } from './ensure-installed.mjs'
import { startReferencePds } from './reference-pds.mjs'

await ensureInstalled() // @atproto/api below is one of test/peers' own dependencies
const { AtpAgent } = await import('@atproto/api')

const t0 = performance.now()
const ref = await startReferencePds({ handle: 'alice.test', password: 'smoke-password' })
const startupMs = Math.round(performance.now() - t0)
try {
  const health = await fetch(`${ref.url}/xrpc/_health`)
  assert.equal(health.status, 200)
  assert.ok((await health.json()).version, '_health reports a version')

  const agent = new AtpAgent({ service: ref.url })
  await agent.login({ identifier: ref.handle, password: ref.password }) // com.atproto.server.createSession
  assert.equal(agent.session?.did, ref.did)
  assert.match(ref.did, /^did:plc:/)

  // The DID was registered with our in-memory PLC directory and points at this PDS.
  const doc = await (await fetch(`${ref.plcUrl}/${ref.did}`)).json()
  assert.equal(doc.service?.[0]?.serviceEndpoint, ref.url)

  const text = `hello from the reference PDS ${Date.now()}`
  const created = await agent.com.atproto.repo.createRecord({
    repo: ref.did,
    collection: 'app.bsky.feed.post',
    record: { $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() },
  })
  const rkey = created.data.uri.split('/').pop()
  const got = await agent.com.atproto.repo.getRecord({ repo: ref.did, collection: 'app.bsky.feed.post', rkey })
  assert.equal(got.data.value.text, text)
  assert.equal(got.data.cid, created.data.cid)

  // A wrong password must fail the way clients expect.
  await assert.rejects(new AtpAgent({ service: ref.url }).login({ identifier: ref.handle, password: 'nope' }), {
    error: 'AuthenticationRequired',
  })
  console.log(`OK (start-up ${startupMs} ms, ${ref.did}, ${created.data.uri})`)
} finally {
  await ref.stop()
}
