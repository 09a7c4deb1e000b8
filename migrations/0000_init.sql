CREATE TABLE `backlink` (
	`uri` text NOT NULL,
	`path` text NOT NULL,
	`link_to` text NOT NULL,
	PRIMARY KEY(`uri`, `path`)
);
--> statement-breakpoint
CREATE INDEX `backlink_link_idx` ON `backlink` (`path`,`link_to`);--> statement-breakpoint
CREATE TABLE `block` (
	`cid` text PRIMARY KEY NOT NULL,
	`rev` text NOT NULL,
	`size` integer NOT NULL,
	`content` blob NOT NULL,
	`removed_rev` text,
	`removed_at` text
);
--> statement-breakpoint
CREATE INDEX `block_rev_idx` ON `block` (`rev`);--> statement-breakpoint
CREATE INDEX `block_removed_at_idx` ON `block` (`removed_at`);--> statement-breakpoint
CREATE TABLE `commit_chain` (
	`cid` text PRIMARY KEY NOT NULL,
	`rev` text NOT NULL,
	`prev` text NOT NULL,
	`committed_at` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `commit_chain_rev_unique` ON `commit_chain` (`rev`);--> statement-breakpoint
CREATE UNIQUE INDEX `commit_chain_prev_unique` ON `commit_chain` (`prev`);--> statement-breakpoint
CREATE TABLE `record` (
	`uri` text PRIMARY KEY NOT NULL,
	`collection` text NOT NULL,
	`rkey` text NOT NULL,
	`cid` text NOT NULL,
	`rev` text NOT NULL,
	`indexed_at` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `record_collection_rkey_idx` ON `record` (`collection`,`rkey`);--> statement-breakpoint
CREATE INDEX `record_cid_idx` ON `record` (`cid`);--> statement-breakpoint
CREATE TABLE `refresh_token` (
	`id` text PRIMARY KEY NOT NULL,
	`did` text NOT NULL,
	`expires_at` text NOT NULL,
	`next_id` text,
	`app_password_name` text
);
--> statement-breakpoint
CREATE INDEX `refresh_token_did_idx` ON `refresh_token` (`did`);--> statement-breakpoint
CREATE TABLE `repo_root` (
	`did` text PRIMARY KEY NOT NULL,
	`cid` text NOT NULL,
	`rev` text NOT NULL,
	`indexed_at` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `repo_seq` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`event_type` text NOT NULL,
	`event` blob NOT NULL,
	`sequenced_at` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `repo_seq_sequenced_at_idx` ON `repo_seq` (`sequenced_at`);