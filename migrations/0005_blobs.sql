CREATE TABLE `blob` (
	`cid` text PRIMARY KEY NOT NULL,
	`r2_key` text NOT NULL,
	`mime_type` text NOT NULL,
	`size` integer NOT NULL,
	`created_at` text NOT NULL,
	`dereferenced_at` text
);
--> statement-breakpoint
CREATE INDEX `blob_created_at_idx` ON `blob` (`created_at`);--> statement-breakpoint
CREATE TABLE `record_blob` (
	`record_uri` text NOT NULL,
	`blob_cid` text NOT NULL,
	`rev` text NOT NULL,
	PRIMARY KEY(`record_uri`, `blob_cid`)
);
--> statement-breakpoint
CREATE INDEX `record_blob_cid_idx` ON `record_blob` (`blob_cid`);--> statement-breakpoint
CREATE INDEX `record_blob_rev_idx` ON `record_blob` (`rev`);--> statement-breakpoint
-- A record may only reference a blob we hold: a commit racing the blob GC
-- fails as a whole (and the client gets BlobNotFound) instead of committing a
-- record whose blob is gone.
CREATE TRIGGER `record_blob_requires_blob`
BEFORE INSERT ON `record_blob`
WHEN NOT EXISTS (SELECT 1 FROM `blob` WHERE `cid` = NEW.`blob_cid`)
BEGIN
  SELECT RAISE(ABORT, 'blob not found');
END;
