CREATE TABLE `account_pref` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`name` text NOT NULL,
	`value_json` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `app_password` (
	`name` text PRIMARY KEY NOT NULL,
	`password_hash` text NOT NULL,
	`created_at` text NOT NULL,
	`privileged` integer DEFAULT false NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `app_password_password_hash_unique` ON `app_password` (`password_hash`);