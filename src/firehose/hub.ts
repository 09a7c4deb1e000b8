/**
 * FirehoseHub: the Durable Object that will hold relays' subscribeRepos
 * WebSockets (hibernation API) and deliver events from the `repo_seq` log.
 * The delivery itself lands with the firehose change; until then the class
 * exists so the binding and its SQLite migration are in place from day one.
 */
import { DurableObject } from 'cloudflare:workers'

export class FirehoseHub extends DurableObject<Env> {
  override async fetch(): Promise<Response> {
    return Response.json({ error: 'MethodNotImplemented', message: 'Method Not Implemented' }, { status: 501 })
  }
}
