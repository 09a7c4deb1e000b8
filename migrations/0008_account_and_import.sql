CREATE TABLE `account` (
	`did` text PRIMARY KEY NOT NULL,
	`handle` text NOT NULL,
	`status` text NOT NULL,
	`created_at` text NOT NULL,
	`deactivated_at` text,
	`delete_after` text
);
--> statement-breakpoint
CREATE TABLE `import_block` (
	`import_id` text NOT NULL,
	`cid` text NOT NULL,
	`content` blob NOT NULL,
	`node_json` text,
	`record_json` text,
	PRIMARY KEY(`import_id`, `cid`)
);
--> statement-breakpoint
CREATE TABLE `import_node` (
	`import_id` text NOT NULL,
	`cid` text NOT NULL,
	PRIMARY KEY(`import_id`, `cid`)
);
--> statement-breakpoint
CREATE TABLE `import_record` (
	`import_id` text NOT NULL,
	`uri` text NOT NULL,
	`collection` text NOT NULL,
	`rkey` text NOT NULL,
	`cid` text NOT NULL,
	`blobs_json` text NOT NULL,
	`backlinks_json` text NOT NULL,
	`changed` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`import_id`, `uri`)
);
--> statement-breakpoint
-- Custom: an imported repo references blobs that are uploaded after it
-- (com.atproto.repo.listMissingBlobs lists them), so a reference to a blob we
-- do not hold is refused only while the account is active, where it means a
-- commit raced the blob GC.
DROP TRIGGER IF EXISTS `record_blob_requires_blob`;
--> statement-breakpoint
CREATE TRIGGER `record_blob_requires_blob`
BEFORE INSERT ON `record_blob`
WHEN NOT EXISTS (SELECT 1 FROM `blob` WHERE `cid` = NEW.`blob_cid`)
  AND NOT EXISTS (SELECT 1 FROM `account` WHERE `status` <> 'active')
BEGIN
  SELECT RAISE(ABORT, 'blob not found');
END;
