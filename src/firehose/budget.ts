/**
 * Pure rules of the firehose hub (hub.ts): how much a subscriber may be sent
 * before the hub has proof that it left the process, what happens to one that
 * is out of budget, and which `cursor` values subscribeRepos accepts. No I/O,
 * so each rule is tested on its own (test/firehose/budget.test.ts).
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
