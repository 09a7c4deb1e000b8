CREATE TABLE `oauth_device` (
	`id` text PRIMARY KEY NOT NULL,
	`user_agent` text,
	`remembered` integer NOT NULL,
	`created_at` text NOT NULL,
	`expires_at` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `oauth_device_expires_idx` ON `oauth_device` (`expires_at`);--> statement-breakpoint
CREATE TABLE `oauth_grant` (
	`client_id` text PRIMARY KEY NOT NULL,
	`client_name` text,
	`client_uri` text,
	`scope` text NOT NULL,
	`created_at` text NOT NULL,
	`updated_at` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `oauth_replay` (
	`key` text PRIMARY KEY NOT NULL,
	`expires_at` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `oauth_replay_expires_idx` ON `oauth_replay` (`expires_at`);--> statement-breakpoint
CREATE TABLE `oauth_request` (
	`id` text PRIMARY KEY NOT NULL,
	`client_id` text NOT NULL,
	`client_auth` text NOT NULL,
	`parameters` text NOT NULL,
	`dpop_jkt` text NOT NULL,
	`device_id` text,
	`code_hash` text,
	`authorized_at` text,
	`expires_at` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `oauth_request_code_hash_unique` ON `oauth_request` (`code_hash`);--> statement-breakpoint
CREATE INDEX `oauth_request_expires_idx` ON `oauth_request` (`expires_at`);--> statement-breakpoint
CREATE TABLE `oauth_session` (
	`id` text PRIMARY KEY NOT NULL,
	`did` text NOT NULL,
	`client_id` text NOT NULL,
	`client_auth` text NOT NULL,
	`dpop_jkt` text NOT NULL,
	`request_scope` text NOT NULL,
	`scope` text NOT NULL,
	`code_hash` text NOT NULL,
	`access_hash` text NOT NULL,
	`access_expires_at` text NOT NULL,
	`refresh_hash` text NOT NULL,
	`created_at` text NOT NULL,
	`refreshed_at` text NOT NULL,
	`expires_at` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `oauth_session_code_hash_unique` ON `oauth_session` (`code_hash`);--> statement-breakpoint
CREATE UNIQUE INDEX `oauth_session_access_hash_unique` ON `oauth_session` (`access_hash`);--> statement-breakpoint
CREATE UNIQUE INDEX `oauth_session_refresh_hash_unique` ON `oauth_session` (`refresh_hash`);--> statement-breakpoint
CREATE INDEX `oauth_session_client_idx` ON `oauth_session` (`client_id`);--> statement-breakpoint
CREATE INDEX `oauth_session_expires_idx` ON `oauth_session` (`expires_at`);--> statement-breakpoint
CREATE TABLE `oauth_used_refresh` (
	`hash` text PRIMARY KEY NOT NULL,
	`session_id` text NOT NULL,
	`expires_at` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `oauth_used_refresh_session_idx` ON `oauth_used_refresh` (`session_id`);--> statement-breakpoint
CREATE INDEX `oauth_used_refresh_expires_idx` ON `oauth_used_refresh` (`expires_at`);