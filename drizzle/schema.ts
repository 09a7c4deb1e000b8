/**
 * D1 tables of the PDS (drizzle-orm schema; `npm run db:generate` writes the
 * SQL migrations in `migrations/`). Only `src/db` imports this file.
 *
 * One account lives here, so no table is keyed by DID except `repo_root`.
 * Everything a commit touches (blocks, root, record index, backlinks, the
 * commit chain and the firehose event) is written in one `batch()`.
 */
import { sql } from 'drizzle-orm'
import { customType, index, integer, primaryKey, sqliteTable, text } from 'drizzle-orm/sqlite-core'

/** BLOB column read back as Uint8Array whatever D1 hands us (ArrayBuffer or number[]). */
export const bytes = customType<{ data: Uint8Array; driverData: ArrayBuffer | number[] | Uint8Array }>({
  dataType: () => 'blob',
  toDriver: (value) => value,
  fromDriver: (value) => {
    if (value instanceof Uint8Array) return value
    if (value instanceof ArrayBuffer) return new Uint8Array(value)
    return Uint8Array.from(value)
  },
})

/** The current signed commit of the repo: read fresh before every write. */
export const repoRoot = sqliteTable('repo_root', {
  did: text('did').primaryKey(),
  cid: text('cid').notNull(),
  rev: text('rev').notNull(),
  indexedAt: text('indexed_at').notNull(),
})

/**
 * Every commit ever made, linked to its parent. `prev` is UNIQUE: a parent can
 * be built on only once, so a writer that built on a stale root makes its whole
 * batch fail instead of forking the repo. The genesis commit uses prev = ''.
 * A trigger (in the migration) also refuses a rev that does not increase.
 */
export const commitChain = sqliteTable('commit_chain', {
  cid: text('cid').primaryKey(),
  rev: text('rev').notNull().unique(),
  prev: text('prev').notNull().unique(),
  committedAt: text('committed_at').notNull(),
})

/**
 * Repo blocks (MST nodes, records, commits). A block that leaves the repo is
 * not deleted at once but marked with the rev that removed it, so a getRepo
 * stream that started before that commit still finds it; the hourly cron
 * deletes marked blocks once they are old.
 */
export const block = sqliteTable(
  'block',
  {
    cid: text('cid').primaryKey(),
    rev: text('rev').notNull(),
    size: integer('size').notNull(),
    content: bytes('content').notNull(),
    removedRev: text('removed_rev'),
    removedAt: text('removed_at'),
  },
  // Partial: live blocks (removed_at NULL) cost no index write; only the GC reads it.
  (t) => [index('block_rev_idx').on(t.rev), index('block_removed_idx').on(t.removedAt).where(sql`${t.removedAt} IS NOT NULL`)],
)

/** Index of the records currently in the repo (values live in `block`). */
export const record = sqliteTable(
  'record',
  {
    uri: text('uri').primaryKey(),
    collection: text('collection').notNull(),
    rkey: text('rkey').notNull(),
    cid: text('cid').notNull(),
    rev: text('rev').notNull(),
    indexedAt: text('indexed_at').notNull(),
  },
  // rev: read-after-write looks up the records newer than the AppView's rev.
  (t) => [index('record_collection_rkey_idx').on(t.collection, t.rkey), index('record_cid_idx').on(t.cid), index('record_rev_idx').on(t.rev)],
)

/** Follow/block/like/repost subjects, so a duplicate one replaces the older (as the reference PDS does). */
export const backlink = sqliteTable(
  'backlink',
  {
    uri: text('uri').notNull(),
    path: text('path').notNull(),
    linkTo: text('link_to').notNull(),
  },
  (t) => [primaryKey({ columns: [t.uri, t.path] }), index('backlink_link_idx').on(t.path, t.linkTo)],
)

/**
 * Refresh tokens. D1, not KV, holds them: KV is eventually consistent, and a
 * rotated or revoked refresh token must be refused on the very next request.
 */
export const refreshToken = sqliteTable(
  'refresh_token',
  {
    id: text('id').primaryKey(),
    did: text('did').notNull(),
    expiresAt: text('expires_at').notNull(),
    nextId: text('next_id'),
    appPasswordName: text('app_password_name'),
    /**
     * The session this token belongs to, the same across rotations. Access
     * tokens carry it (`sid`), so a revoked session is refused on its next
     * request: it is live while any of its refresh tokens exists.
     */
    sessionId: text('session_id'),
  },
  (t) => [index('refresh_token_did_idx').on(t.did), index('refresh_token_session_idx').on(t.sessionId)],
)

/**
 * The firehose log: written in the same batch as the commit it describes, so
 * nothing is delivered that did not commit and nothing committed is lost.
 */
export const repoSeq = sqliteTable(
  'repo_seq',
  {
    seq: integer('seq').primaryKey({ autoIncrement: true }),
    eventType: text('event_type').notNull(),
    event: bytes('event').notNull(),
    sequencedAt: text('sequenced_at').notNull(),
    /** 0: the body is in `event`; N: it is split over N `repo_seq_chunk` rows (bodies over D1's row size). */
    chunks: integer('chunks').notNull().default(0),
  },
  (t) => [index('repo_seq_sequenced_at_idx').on(t.sequencedAt)],
)

/** Pieces of event bodies too large for one D1 row (a 200-op commit with big records). */
export const repoSeqChunk = sqliteTable(
  'repo_seq_chunk',
  {
    seq: integer('seq').notNull(),
    idx: integer('idx').notNull(),
    data: bytes('data').notNull(),
  },
  (t) => [primaryKey({ columns: [t.seq, t.idx] })],
)

/** Small server facts that must survive deploys, e.g. the handle last announced on the firehose. */
export const pdsState = sqliteTable('pds_state', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
  updatedAt: text('updated_at').notNull(),
})

/**
 * Blobs (bytes in R2 under `r2Key`). A blob no record references is
 * temporary: the cron deletes it once `dereferencedAt` is set (its last
 * reference went away) or, if it was never referenced, once it is older than
 * the temporary-blob TTL.
 */
export const blob = sqliteTable(
  'blob',
  {
    cid: text('cid').primaryKey(),
    r2Key: text('r2_key').notNull(),
    mimeType: text('mime_type').notNull(),
    size: integer('size').notNull(),
    createdAt: text('created_at').notNull(),
    dereferencedAt: text('dereferenced_at'),
  },
  (t) => [index('blob_created_at_idx').on(t.createdAt)],
)

/** Which record references which blob; a trigger refuses a reference to a blob we do not have. */
export const recordBlob = sqliteTable(
  'record_blob',
  {
    recordUri: text('record_uri').notNull(),
    blobCid: text('blob_cid').notNull(),
    rev: text('rev').notNull(),
  },
  (t) => [primaryKey({ columns: [t.recordUri, t.blobCid] }), index('record_blob_cid_idx').on(t.blobCid), index('record_blob_rev_idx').on(t.rev)],
)

/**
 * App passwords. Only a hash is kept: SHA-256 of the account DID and the
 * password, enough for a random 80-bit secret and a direct lookup at login
 * (a slow salted hash would need one derivation per stored password).
 */
export const appPassword = sqliteTable('app_password', {
  name: text('name').primaryKey(),
  passwordHash: text('password_hash').notNull().unique(),
  createdAt: text('created_at').notNull(),
  privileged: integer('privileged', { mode: 'boolean' }).notNull().default(false),
})

/** The owner's `app.bsky.*` preferences, in the order the client sent them. */
export const accountPref = sqliteTable('account_pref', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  name: text('name').notNull(),
  valueJson: text('value_json').notNull(),
})

/**
 * The one account hosted here: its status and current handle. D1, not KV,
 * because a deactivation must hold on the very next request. `PDS_HANDLE`
 * is only the handle a fresh deployment starts with; updateHandle changes it
 * here. A deployment for an existing DID starts `deactivated` and empty until
 * the account is migrated in and activated.
 */
export const account = sqliteTable('account', {
  did: text('did').primaryKey(),
  handle: text('handle').notNull(),
  /** active | deactivated | takendown | suspended */
  status: text('status').notNull(),
  createdAt: text('created_at').notNull(),
  deactivatedAt: text('deactivated_at'),
  /** When the owner asked for the data to be deleted after deactivating (stored, as the reference does). */
  deleteAfter: text('delete_after'),
})

/**
 * A repo import in progress (com.atproto.repo.importRepo). The CAR's blocks
 * are streamed here in bounded batches, each MST node with its children and
 * leaves (JSON) and each record with its blob references and backlinks
 * (JSON), so the tree can be walked, checked and indexed inside D1 (recursive
 * SQL) with nothing held in the Worker's memory. Only a final atomic batch
 * moves the result into the repo, so a truncated or corrupt CAR leaves the
 * repo as it was. Rows are keyed by an import id and deleted when it ends.
 */
export const importBlock = sqliteTable(
  'import_block',
  {
    importId: text('import_id').notNull(),
    cid: text('cid').notNull(),
    content: bytes('content').notNull(),
    /** MST node: `{"c": [child CIDs], "k": [[key, record CID], ...]}`. */
    nodeJson: text('node_json'),
    /** Record: `{"t": $type, "b": [blob CIDs], "l": [[path, subject], ...]}`. */
    recordJson: text('record_json'),
  },
  (t) => [primaryKey({ columns: [t.importId, t.cid] })],
)

/** The MST nodes reachable from the imported commit (the walk's result). */
export const importNode = sqliteTable(
  'import_node',
  {
    importId: text('import_id').notNull(),
    cid: text('cid').notNull(),
  },
  (t) => [primaryKey({ columns: [t.importId, t.cid] })],
)

/** The imported tree's records, with the blob references and backlinks found in each (JSON arrays). */
export const importRecord = sqliteTable(
  'import_record',
  {
    importId: text('import_id').notNull(),
    uri: text('uri').notNull(),
    collection: text('collection').notNull(),
    rkey: text('rkey').notNull(),
    cid: text('cid').notNull(),
    blobsJson: text('blobs_json').notNull(),
    backlinksJson: text('backlinks_json').notNull(),
    /** Set by the final batch: 1 when the repo here did not already hold this record at this CID. */
    changed: integer('changed').notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.importId, t.uri] })],
)

// ---------------------------------------------------------------------------
// OAuth (atproto OAuth: the authorization server, its sessions, the pages).
// Everything here must hold on the very next request from any isolate (a used
// code, a rotated refresh token, a replayed DPoP proof, a revoked app), so it
// lives in D1, never in eventually consistent KV. Secrets are stored only as
// keyed hashes (src/oauth/keys.ts): a copy of the database holds no usable
// code, token or cookie. Times are ISO strings, as elsewhere in this schema.
// ---------------------------------------------------------------------------

/**
 * Pushed authorization requests (PAR), from the client's push until their
 * code is exchanged: the validated parameters, how the client authenticated,
 * the DPoP key the tokens will be bound to, and, once the owner approved, the
 * hash of the single-use code.
 */
export const oauthRequest = sqliteTable(
  'oauth_request',
  {
    id: text('id').primaryKey(),
    clientId: text('client_id').notNull(),
    /** JSON: {method: 'none'} or {method: 'private_key_jwt', kid, alg, jkt}. */
    clientAuth: text('client_auth').notNull(),
    /** JSON: the authorization request parameters as validated at PAR. */
    parameters: text('parameters').notNull(),
    dpopJkt: text('dpop_jkt').notNull(),
    /** The signed-in browser the request was first used from (set by its first POST). */
    deviceId: text('device_id'),
    codeHash: text('code_hash').unique(),
    authorizedAt: text('authorized_at'),
    expiresAt: text('expires_at').notNull(),
  },
  (t) => [index('oauth_request_expires_idx').on(t.expiresAt)],
)

/**
 * One row per OAuth session (an approved authorization): the scope granted,
 * the client and DPoP key it is bound to, and the hashes of its current access
 * token and refresh token. Rotation replaces both, so a previous access token
 * stops working at once; deleting the row revokes everything.
 */
export const oauthSession = sqliteTable(
  'oauth_session',
  {
    id: text('id').primaryKey(),
    did: text('did').notNull(),
    clientId: text('client_id').notNull(),
    clientAuth: text('client_auth').notNull(),
    dpopJkt: text('dpop_jkt').notNull(),
    /** The scope the owner approved, as requested (include: sets unexpanded). */
    requestScope: text('request_scope').notNull(),
    /** What the tokens may do: `include:` sets expanded into repo:/rpc: permissions. */
    scope: text('scope').notNull(),
    /** Hash of the code this session came from: presenting it again revokes the session. */
    codeHash: text('code_hash').notNull().unique(),
    accessHash: text('access_hash').notNull().unique(),
    accessExpiresAt: text('access_expires_at').notNull(),
    refreshHash: text('refresh_hash').notNull().unique(),
    createdAt: text('created_at').notNull(),
    /** Last token issue (creation or refresh): the "last used" of the account page. */
    refreshedAt: text('refreshed_at').notNull(),
    /** No refresh after this (the session's lifetime or its inactivity limit, whichever comes first). */
    expiresAt: text('expires_at').notNull(),
  },
  (t) => [index('oauth_session_client_idx').on(t.clientId), index('oauth_session_expires_idx').on(t.expiresAt)],
)

/** Refresh tokens rotated away: presenting one again is a replay and ends its session. */
export const oauthUsedRefresh = sqliteTable(
  'oauth_used_refresh',
  {
    hash: text('hash').primaryKey(),
    sessionId: text('session_id').notNull(),
    expiresAt: text('expires_at').notNull(),
  },
  (t) => [index('oauth_used_refresh_session_idx').on(t.sessionId), index('oauth_used_refresh_expires_idx').on(t.expiresAt)],
)

/**
 * Values that may be used once (DPoP proof `jti`s, client-assertion `jti`s,
 * PKCE code challenges), `namespace:value` → until when a second use is
 * refused. A use after that time may take the key over.
 */
export const oauthReplay = sqliteTable(
  'oauth_replay',
  {
    key: text('key').primaryKey(),
    expiresAt: text('expires_at').notNull(),
  },
  (t) => [index('oauth_replay_expires_idx').on(t.expiresAt)],
)

/** Apps the owner approved, with what they were allowed (listed and revoked on /account). */
export const oauthGrant = sqliteTable('oauth_grant', {
  clientId: text('client_id').primaryKey(),
  /** Name, home page and logo as the app's metadata said at approval (the page needs no fetch). */
  clientName: text('client_name'),
  clientUri: text('client_uri'),
  scope: text('scope').notNull(),
  createdAt: text('created_at').notNull(),
  updatedAt: text('updated_at').notNull(),
})

/**
 * Browsers signed in to the authorization and account pages, by the keyed
 * hash of their cookie's secret. A remembered device approves a known app
 * without the password being typed again.
 */
export const oauthDevice = sqliteTable(
  'oauth_device',
  {
    id: text('id').primaryKey(),
    userAgent: text('user_agent'),
    remembered: integer('remembered', { mode: 'boolean' }).notNull(),
    createdAt: text('created_at').notNull(),
    expiresAt: text('expires_at').notNull(),
  },
  (t) => [index('oauth_device_expires_idx').on(t.expiresAt)],
)
