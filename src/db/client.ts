/**
 * The D1 client: drizzle over the `DB` binding, counting round trips.
 *
 * In production every D1 call is a network round trip and counts against the
 * per-request subrequest limit, so the count is part of each request's log
 * line and of the benchmark. A `batch()` is one round trip however many
 * statements it holds, and it is D1's only atomic unit.
 */
import { sql, type AnyColumn, type SQL } from 'drizzle-orm'
import { drizzle, type DrizzleD1Database } from 'drizzle-orm/d1'
import type { BatchItem } from 'drizzle-orm/batch'
import * as schema from '../../drizzle/schema'

export { schema }

export interface DbStats {
  /** Round trips to D1 (a batch counts once). */
  queries: number
  rowsRead: number
  rowsWritten: number
}

/** A statement drizzle cannot express (recursive queries, JSON functions, inlined literals). */
export interface SqlStatement {
  sql: string
  /** Uint8Array binds as a BLOB. */
  params?: (string | number | null | Uint8Array)[]
}

export interface Db {
  orm: DrizzleD1Database
  stats: DbStats
  /** Runs statements as one atomic D1 batch (one round trip). */
  batch(statements: BatchItem<'sqlite'>[]): Promise<unknown[]>
  /**
   * Runs plain SQL statements as one atomic D1 batch (one round trip);
   * returns each statement's rows as D1 gives them (column names, no
   * mapping). Drizzle statements may be mixed in: they are rendered to SQL.
   */
  batchSql<T = Record<string, unknown>>(statements: (SqlStatement | BatchItem<'sqlite'>)[]): Promise<T[][]>
  /** As batchSql, with each statement's whole D1 result (its `meta`: rows written, last row id). */
  batchSqlResults(statements: (SqlStatement | BatchItem<'sqlite'>)[]): Promise<D1Result[]>
}

/** `?, ?, ...`: the placeholders of an IN list or a VALUES row of `n` values. */
export const placeholders = (n: number): string => Array.from({ length: n }, () => '?').join(', ')

/** A drizzle statement as plain SQL (what its `toSQL()` renders). */
const asSqlStatement = (item: SqlStatement | BatchItem<'sqlite'>): SqlStatement => {
  const builder = item as unknown as { toSQL?: () => { sql: string; params: unknown[] } }
  if (typeof builder.toSQL !== 'function') return item as SqlStatement
  const { sql: text, params } = builder.toSQL()
  return { sql: text, params: params as SqlStatement['params'] }
}

type Meta = { rows_read?: number; rows_written?: number }

const countMeta = (stats: DbStats, result: unknown): void => {
  const meta = (result as { meta?: Meta } | null)?.meta
  if (!meta) return
  stats.rowsRead += meta.rows_read ?? 0
  stats.rowsWritten += meta.rows_written ?? 0
}

const RAW = Symbol('raw statement')

/** Wraps the binding so every terminal call is counted, whatever issued it. */
const countingD1 = (d1: D1Database, stats: DbStats): D1Database => {
  const wrapStatement = (stmt: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(stmt, {
      get(target, prop, receiver) {
        if (prop === RAW) return target
        const value = Reflect.get(target, prop, receiver)
        if (prop === 'bind') {
          return (...args: unknown[]) => wrapStatement((value as D1PreparedStatement['bind']).apply(target, args))
        }
        if (prop === 'all' || prop === 'run' || prop === 'first' || prop === 'raw') {
          return async (...args: unknown[]) => {
            stats.queries++
            const result = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)
            countMeta(stats, result)
            return result
          }
        }
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
  return new Proxy(d1, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver)
      if (prop === 'prepare') {
        return (query: string) => wrapStatement(target.prepare(query))
      }
      if (prop === 'batch') {
        return async (statements: D1PreparedStatement[]) => {
          stats.queries++
          // Unwrap: the binding checks that statements are its own objects.
          const results = await target.batch(statements.map(unwrapStatement))
          for (const result of results) countMeta(stats, result)
          return results
        }
      }
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

const unwrapStatement = (stmt: D1PreparedStatement): D1PreparedStatement =>
  ((stmt as unknown as Record<symbol, D1PreparedStatement>)[RAW] ?? stmt)

/** Opens a counted client for one request (cheap: drizzle holds no connection). */
export const openDb = (d1: D1Database): Db => {
  const stats: DbStats = { queries: 0, rowsRead: 0, rowsWritten: 0 }
  // No `schema` option: we never use drizzle's relational queries, and building
  // their config on every request showed up in CPU profiles.
  const counted = countingD1(d1, stats)
  // Made on first use: a record write builds its SQL itself and never needs it.
  let drizzled: DrizzleD1Database | undefined
  const orm = (): DrizzleD1Database => (drizzled ??= drizzle(counted))
  const batchSqlResults = async (statements: (SqlStatement | BatchItem<'sqlite'>)[]): Promise<D1Result[]> => {
    if (statements.length === 0) return []
    return counted.batch(
      statements.map((item) => {
        const s = asSqlStatement(item)
        return counted.prepare(s.sql).bind(...(s.params ?? []))
      }),
    )
  }
  return {
    get orm() {
      return orm()
    },
    stats,
    batch: (statements) =>
      statements.length === 0 ? Promise.resolve([]) : orm().batch(statements as [BatchItem<'sqlite'>, ...BatchItem<'sqlite'>[]]),
    batchSql: async <T>(statements: (SqlStatement | BatchItem<'sqlite'>)[]) =>
      (await batchSqlResults(statements)).map((r) => (r.results ?? []) as T[]),
    batchSqlResults,
  }
}

/** What D1 said when a statement failed (message and cause), for matching constraint names. */
export const d1ErrorText = (err: unknown): string =>
  String((err as { message?: string })?.message ?? err) + String((err as { cause?: unknown })?.cause ?? '')

const hexDecoder = (Uint8Array as unknown as { fromHex?: (hex: string) => Uint8Array }).fromHex
const fromHex = (hex: string): Uint8Array => {
  if (hexDecoder) return hexDecoder(hex)
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  return out
}

const hexEncoder = (Uint8Array.prototype as unknown as { toHex?: () => string }).toHex
/**
 * Lowercase hex of `bytes`: for BLOB literals in SQL text, and for bytes
 * bound as a parameter and turned back by SQLite (`unhex(?)`). The D1 binding
 * sends a Uint8Array parameter as a JSON array of numbers, converted element
 * by element on both sides; a commit's blocks and event cost several times
 * more CPU that way.
 */
export const hexBytes = (bytes: Uint8Array): string => {
  if (hexEncoder) return hexEncoder.call(bytes)
  let out = ''
  for (let i = 0; i < bytes.length; i++) out += bytes[i].toString(16).padStart(2, '0')
  return out
}

/**
 * Selects a BLOB column as bytes, efficiently. D1 hands BLOBs to JavaScript
 * as arrays of numbers (8+ bytes of heap per byte, converted element by
 * element); a hex string crosses as one compact string and decodes natively.
 * It made getRepo several times cheaper in CPU and memory.
 */
export const blobBytes = (column: AnyColumn): SQL.Aliased<Uint8Array> | SQL<Uint8Array> =>
  sql<string>`hex(${column})`.mapWith((hex: string) => fromHex(hex)) as unknown as SQL<Uint8Array>
