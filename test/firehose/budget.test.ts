/**
 * The hub's pure rules (src/firehose/budget.ts): the per-socket send budget,
 * the verdict on a held socket, and the `cursor` parameter as the reference
 * server (@atproto/xrpc-server 0.13 with @atproto/lex-schema) reads it; the
 * expected messages are the reference's own, captured from it.
 */
import { describe, expect, it } from 'vitest'
import { DEFAULT_SEND_BUDGET, fitsBudget, holdVerdict, parseCursorParam, type SendBudget } from '../../src/firehose/budget'

const budget: SendBudget = { maxUnconfirmedBytes: 1000, holdCheckMs: 10, maxHoldMs: 100 }

describe('fitsBudget', () => {
  it('lets frames through up to the budget, and no further', () => {
    expect(fitsBudget(0, 400, budget)).toBe(true)
    expect(fitsBudget(600, 400, budget)).toBe(true)
    expect(fitsBudget(601, 400, budget)).toBe(false)
  })

  it('always lets one frame through to a socket with nothing outstanding, even one over the budget', () => {
    expect(fitsBudget(0, 5000, budget)).toBe(true)
    expect(fitsBudget(1, 5000, budget)).toBe(false)
  })

  it('five stalled subscribers cannot make the runtime queue more than 10 MiB of frames', () => {
    expect(5 * DEFAULT_SEND_BUDGET.maxUnconfirmedBytes).toBeLessThanOrEqual(10 * 1024 * 1024)
  })
})

describe('holdVerdict', () => {
  it('resumes once delivery was proven (the count was reset), whenever that is', () => {
    expect(holdVerdict(0, 1000, 1001, budget)).toBe('resume')
    expect(holdVerdict(0, 1000, 5000, budget)).toBe('resume')
  })

  it('waits while there is no proof, then cuts off after maxHoldMs', () => {
    expect(holdVerdict(10, 1000, 1099, budget)).toBe('wait')
    expect(holdVerdict(10, 1000, 1100, budget)).toBe('cut-off')
  })
})

describe('parseCursorParam', () => {
  it('absent or empty: no cursor (the reference ignores empty parameters)', () => {
    expect(parseCursorParam([])).toEqual({ ok: true, cursor: null })
    expect(parseCursorParam([''])).toEqual({ ok: true, cursor: null })
  })

  it('plain decimal integers, leading zeros allowed; negatives mean the start of the log', () => {
    expect(parseCursorParam(['17'])).toEqual({ ok: true, cursor: 17 })
    expect(parseCursorParam(['01'])).toEqual({ ok: true, cursor: 1 })
    expect(parseCursorParam(['0'])).toEqual({ ok: true, cursor: 0 })
    expect(parseCursorParam(['-1'])).toEqual({ ok: true, cursor: 0 })
  })

  it.each([
    ['0x10', 'got "0x10"'],
    [' 1', 'got " 1"'],
    ['1.5', 'got "1.5"'],
    ['1e3', 'got "1e3"'],
    ['abc', 'got "abc"'],
    ['+1', 'got "+1"'],
    ['99999999999999999999', 'got 100000000000000000000'],
  ])('refuses %j with the reference message', (value, got) => {
    expect(parseCursorParam([value])).toEqual({
      ok: false,
      message: `Invalid com.atproto.sync.subscribeRepos params: Expected integer value type (${got})`,
    })
  })

  it('refuses two cursors', () => {
    expect(parseCursorParam(['1', '2'])).toEqual({
      ok: false,
      message: 'Invalid com.atproto.sync.subscribeRepos params: Expected integer value type (got [1, 2])',
    })
  })
})
