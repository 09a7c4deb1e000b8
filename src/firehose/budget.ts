/**
 * Pure rules of the firehose hub (hub.ts): how much a subscriber may be sent
 * before the hub has proof that it left the process, what happens to one that
 * is out of budget, and which `cursor` values subscribeRepos accepts. No I/O,
 * so each rule is tested on its own (test/firehose/budget.test.ts).
 *
 * Why memory stays bounded per subscriber. workerd's `WebSocket.send()` copies
 * the frame into an unbounded queue inside the runtime and returns; there is
 * no `bufferedAmount` (cloudflare/workerd#988), no callback, no error while
 * the peer does not read, and `close()` only queues a close frame behind the
 * data. So a subscriber that never reads keeps every byte it was sent in this
 * object's process until it disconnects (measured: a 100 MB queue stayed in
 * the workerd process until the client read it). The only proof the platform
 * gives that a socket's queue drained is hibernation itself: workerd does not
 * let an object go while any of its sockets still has outgoing messages
 * pending (measured the same way: a full queue kept the object alive for as
 * long as it lasted, an empty one let it hibernate after ~10 s idle). Hence:
 *
 * - each socket counts `unconfirmed`, the frame bytes sent since the last
 *   proof; the constructor, which only runs when the object was rebuilt,
 *   resets every socket's count to 0;
 * - a frame goes out only while the count stays within the budget
 *   (budget.ts: 2 MiB); otherwise the socket is *held*: nothing more is sent
 *   to it, not even live events, and it stays where it is in the log, so the
 *   hub holds nothing for it but the ≤ 2 MiB already queued in the runtime;
 * - an alarm looks at held sockets: after a rebuild (proof for all of them)
 *   they replay from their `lastSeq` and go live again, without gap or
 *   duplicate; one held for 45 s without proof is cut off with
 *   `ConsumerTooSlow`, as the reference PDS does with a full outbox (that
 *   stops it growing; what is already queued goes when the client does);
 * - the log is read in pages of at most 1 MiB of bodies (seq.ts), one page at
 *   a time across all replays, and subscribers replaying the same stretch
 *   share the page's frames, so reading is bounded too, whatever the log size.
 *
 * What a subscriber can make the hub hold is thus its budget, plus one page
 * and 1 MiB of notified events (recent.ts) for all of them, whatever the
 * log's size or how long it stalls (measured:
 * five stalled subscribers with cursor=0 grow wrangler dev's workerd by
 * ~55-60 MiB, most of it local D1's JSON and the live writes, on a 20 MB and
 * on a 40 MB log alike, against 1.2 and 2.4 GiB before). The price: with no
 * delivery signal the hub cannot tell a fast relay from a stalled one, so a
 * relay sent more than the budget before the object next hibernates (a large
 * replay; a live stream while another subscriber is stalled and keeps the
 * object awake) pauses until that happens, ~12 s per budget (a lone relay
 * replayed 41 MB in 122 s with a 4 MiB budget, never cut off; ~4 min with
 * 2 MiB), and is cut off (it
 * reconnects from its cursor and loses nothing) if that does not happen
 * within 45 s.
 */

/** Limits on what one subscriber can make the hub hold. */
export interface SendBudget {
  /** Frame bytes a socket may be sent without proof that the runtime flushed them. */
  maxUnconfirmedBytes: number
  /** How often a held socket is looked at again (an alarm; longer than the runtime's ~10 s idle-to-hibernation delay). */
  holdCheckMs: number
  /** A socket held this long without proof of delivery is cut off with `ConsumerTooSlow`. */
  maxHoldMs: number
}

/**
 * Five stalled subscribers make the runtime hold at most 5 × 2 MiB of frames
 * (the e2e figures, with what reading and framing a replay costs, are in
 * hub.ts). A relay replaying a log (or live on a busy PDS)
 * gets 2 MiB between proofs, and waits at most 45 s for one before it is told
 * it is too slow.
 */
export const DEFAULT_SEND_BUDGET: SendBudget = {
  maxUnconfirmedBytes: 2 * 1024 * 1024,
  holdCheckMs: 12_000,
  maxHoldMs: 45_000,
}

/**
 * Whether a frame of `frameBytes` may go to a socket already holding
 * `unconfirmed` bytes. A socket with nothing outstanding always takes one
 * frame, so a frame larger than the budget cannot wedge it; what it holds is
 * then at most max(budget, largest frame).
 */
export const fitsBudget = (unconfirmed: number, frameBytes: number, budget: SendBudget): boolean =>
  unconfirmed === 0 || unconfirmed + frameBytes <= budget.maxUnconfirmedBytes

export type HoldVerdict = 'resume' | 'wait' | 'cut-off'

/**
 * What to do with a socket held since `heldAt` that still has `unconfirmed`
 * bytes without proof: resume once the proof came (the count was reset), cut
 * it off once it waited `maxHoldMs`, else keep waiting.
 */
export const holdVerdict = (unconfirmed: number, heldAt: number, now: number, budget: SendBudget): HoldVerdict =>
  unconfirmed === 0 ? 'resume' : now - heldAt >= budget.maxHoldMs ? 'cut-off' : 'wait'

export type CursorParam = { ok: true; cursor: number | null } | { ok: false; message: string }

const NSID = 'com.atproto.sync.subscribeRepos'

/**
 * The `cursor` query parameter as the reference server reads it
 * (@atproto/xrpc-server with @atproto/lex-schema's integer coercion): absent
 * or empty means no cursor; otherwise exactly one plain decimal integer
 * (`-?\d+`, a safe integer). `0x10`, ` 1`, `1.5`, `1e3` or two cursors are
 * refused. A negative cursor is accepted, as the reference does, and means
 * "from the first event".
 */
export const parseCursorParam = (values: readonly string[]): CursorParam => {
  const given = values.filter((v) => v !== '')
  if (given.length === 0) return { ok: true, cursor: null }
  const numbers = given.map((v) => (/^-?\d+$/.test(v) ? Number(v) : null))
  const shown = given.length > 1 ? `[${given.join(', ')}]` : numbers[0] === null ? JSON.stringify(given[0]) : String(numbers[0])
  if (given.length > 1 || numbers[0] === null || !Number.isSafeInteger(numbers[0])) {
    return { ok: false, message: `Invalid ${NSID} params: Expected integer value type (got ${shown})` }
  }
  return { ok: true, cursor: Math.max(0, numbers[0]) }
}
