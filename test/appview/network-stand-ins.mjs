// What the AppView launcher (appview.mjs) puts in place of the parts of the network missing on loopback.
//
// Handle resolution: the AppView verifies a handle by DNS or https://<handle>/.well-known/atproto-did,
// neither of which reaches `*.test` handles here; it asks the PDS hosting the handle instead.
//
// A relay's host rule: the launcher subscribes to each PDS directly, as a relay would, so it must also do
// what a relay does before it forwards an account's commit, `#sync` or `#account` event: take it only from
// the PDS the account's DID document names now (indigo cmd/relay `preProcessEvent` -> `EnsureAccountHost`:
// on a mismatch, re-resolve the DID once, then drop the event). `#identity` passes whatever its host, as
// through a relay (the AppView re-resolves the handle itself). Without this rule an account that moves
// between two PDSes the AppView reads is hidden by it: the old PDS's `#account` (deactivated), sent when the
// account is retired there, arrives after the new PDS's `#account` (active) and wins.

/**
 * Points an identity resolver's handle check at the PDS hosting each handle (see above).
 * `hosts` maps a handle to the base URL of its PDS; other handles keep the resolver's own behaviour.
 * `movedTo`: base URLs also asked, in order, when the handle's own PDS does not answer for it.
 */
export function resolveHandlesOnLoopback(idResolver, hosts, movedTo, request) {
  const original = idResolver.handle.resolve.bind(idResolver.handle)
  const ask = async (base, handle) => {
    try {
      const res = await request(new URL('/.well-known/atproto-did', base), { headers: { host: handle } })
      const text = (await res.body.text()).trim()
      return res.statusCode === 200 && text.startsWith('did:') ? text : undefined
    } catch {
      return undefined
    }
  }
  idResolver.handle.resolve = async (handle) => {
    const base = hosts.get(handle.toLowerCase())
    if (!base) return original(handle)
    // An account that migrates to one of `movedTo` keeps its handle: the handle's host moved with it.
    for (const url of [base, ...movedTo]) {
      const did = await ask(url, handle)
      if (did) return did
    }
    return undefined
  }
}

/** The `#atproto_pds` endpoint of a DID document, or undefined. */
const pdsEndpoint = (doc) =>
  doc?.service?.find((s) => s.id === '#atproto_pds' || s.id === `${doc.id}#atproto_pds`)?.serviceEndpoint

/**
 * Wraps the IndexingService methods one subscription calls for commits, `#sync` and `#account`, so that
 * they run only for accounts whose DID document names the PDS on `port` (all PDSes here are on loopback,
 * so the port is the host). `log` receives one line per dropped event.
 */
export function acceptOnlyFromCurrentHost(indexingSvc, idResolver, port, log) {
  const fromThisHost = async (did) => {
    // Cached document first; on a mismatch, a fresh one (the account may just have moved here).
    for (const forceRefresh of [false, true]) {
      const doc = await idResolver.did.resolve(did, forceRefresh).catch(() => null)
      const endpoint = pdsEndpoint(doc)
      if (endpoint && new URL(endpoint).port === String(port)) return true
    }
    return false
  }
  const didOf = {
    indexRecord: (uri) => uri.host,
    deleteRecord: (uri) => uri.host,
    setCommitLastSeen: (did) => did,
    updateActorStatus: (did) => did,
    deleteActor: (did) => did,
  }
  for (const [name, did] of Object.entries(didOf)) {
    const original = indexingSvc[name].bind(indexingSvc)
    indexingSvc[name] = async (...args) => {
      if (await fromThisHost(did(args[0]))) return original(...args)
      log(`dropped ${name}(${did(args[0])}) from the PDS on port ${port}: its DID document names another PDS`)
    }
  }
}
