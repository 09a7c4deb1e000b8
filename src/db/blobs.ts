/**
 * Blob metadata and record→blob references. Bytes live in R2 (src/blobs);
 * this is only the index, written with the commit that references a blob.
 */
import { and, asc, gt, inArray, sql } from 'drizzle-orm'
import type { BatchItem } from 'drizzle-orm/batch'
import type { Db } from './client'
import { d1ErrorText, schema } from './client'
import { chunk, MAX_PARAMS } from './repo'

const { blob, recordBlob } = schema

export interface BlobRow {
  cid: string
  r2Key: string
  mimeType: string
  size: number
}

const blobColumns = { cid: blob.cid, r2Key: blob.r2Key, mimeType: blob.mimeType, size: blob.size }

/** A blob some record references (uploads no record uses yet are not served, as in the reference). */
export const getReferencedBlobRow = async (db: Db, cid: string): Promise<BlobRow | null> => {
  const [row] = await db.orm
    .select(blobColumns)
    .from(blob)
    .where(and(sql`${blob.cid} = ${cid}`, sql`EXISTS (SELECT 1 FROM ${recordBlob} WHERE ${recordBlob.blobCid} = ${cid})`))
    .limit(1)
  return row ?? null
}

/**
 * Records an upload. If the same bytes are already stored, the existing row
 * wins (and gets a fresh temporary lifetime); returns the R2 key in use.
 */
export const upsertBlob = async (db: Db, row: BlobRow, now: string): Promise<string> => {
  const [kept] = await db.orm
    .insert(blob)
    .values({ ...row, createdAt: now })
    .onConflictDoUpdate({ target: blob.cid, set: { createdAt: now, dereferencedAt: sql`NULL` } })
    .returning({ r2Key: blob.r2Key })
  return kept.r2Key
}

/**
 * Commit statements for blob references, in order: mark the blobs of records
 * being replaced or deleted as possibly unreferenced, drop those references,
 * add the new ones (a trigger refuses a blob we do not hold) and unmark them.
 */
export const blobReferenceStatements = (
  db: Db,
  w: { touchedUris: string[]; refs: { uri: string; cid: string }[]; rev: string; now: string },
): BatchItem<'sqlite'>[] => {
  const s: BatchItem<'sqlite'>[] = []
  for (const uris of chunk(w.touchedUris, MAX_PARAMS - 1)) {
    s.push(
      db.orm
        .update(blob)
        .set({ dereferencedAt: w.now })
        .where(inArray(blob.cid, db.orm.select({ cid: recordBlob.blobCid }).from(recordBlob).where(inArray(recordBlob.recordUri, uris)))),
    )
    s.push(db.orm.delete(recordBlob).where(inArray(recordBlob.recordUri, uris)))
  }
  for (const part of chunk(w.refs, Math.floor(MAX_PARAMS / 3))) {
    s.push(db.orm.insert(recordBlob).values(part.map((r) => ({ recordUri: r.uri, blobCid: r.cid, rev: w.rev }))).onConflictDoNothing())
  }
  for (const cids of chunk([...new Set(w.refs.map((r) => r.cid))], MAX_PARAMS)) {
    s.push(db.orm.update(blob).set({ dereferencedAt: null }).where(inArray(blob.cid, cids)))
  }
  return s
}

/** The record_blob trigger refused a reference: the blob was removed (by the GC) meanwhile. */
export const isMissingBlobError = (err: unknown): boolean => /blob not found/.test(d1ErrorText(err))

/** Blob CIDs referenced by records (written after `since`), by CID, for sync.listBlobs. */
export const listReferencedBlobCids = async (db: Db, opts: { since?: string; cursor?: string; limit: number }): Promise<string[]> => {
  const rows = await db.orm
    .selectDistinct({ cid: recordBlob.blobCid })
    .from(recordBlob)
    .where(and(opts.since ? gt(recordBlob.rev, opts.since) : undefined, opts.cursor ? gt(recordBlob.blobCid, opts.cursor) : undefined))
    .orderBy(asc(recordBlob.blobCid))
    .limit(opts.limit)
  return rows.map((r) => r.cid)
}

/** References to blobs we do not hold (after an import), for repo.listMissingBlobs. */
export const listMissingBlobRefs = (db: Db, opts: { cursor?: string; limit: number }): Promise<{ cid: string; recordUri: string }[]> =>
  db.orm
    .select({ cid: recordBlob.blobCid, recordUri: recordBlob.recordUri })
    .from(recordBlob)
    .where(
      and(
        sql`NOT EXISTS (SELECT 1 FROM ${blob} WHERE ${blob.cid} = ${recordBlob.blobCid})`,
        opts.cursor ? gt(recordBlob.blobCid, opts.cursor) : undefined,
      ),
    )
    .orderBy(asc(recordBlob.blobCid))
    .limit(opts.limit)

/**
 * Deletes (and returns the R2 keys of) blobs no record references that were
 * either dereferenced or never referenced and older than `tempBefore`. The
 * reference check is repeated in the DELETE itself, so a commit that
 * references a blob meanwhile keeps it.
 */
export const deleteCollectableBlobs = async (db: Db, opts: { tempBefore: string; limit: number }): Promise<string[]> => {
  const unreferenced = sql`NOT EXISTS (SELECT 1 FROM ${recordBlob} WHERE ${recordBlob.blobCid} = ${blob.cid})`
  const victims = db.orm
    .select({ cid: blob.cid })
    .from(blob)
    .where(and(sql`(${blob.dereferencedAt} IS NOT NULL OR ${blob.createdAt} < ${opts.tempBefore})`, unreferenced))
    .limit(opts.limit)
  const deleted = await db.orm
    .delete(blob)
    .where(and(inArray(blob.cid, victims), unreferenced))
    .returning({ r2Key: blob.r2Key })
  return deleted.map((r) => r.r2Key)
}
