CREATE TABLE `repo_seq_chunk` (
	`seq` integer NOT NULL,
	`idx` integer NOT NULL,
	`data` blob NOT NULL,
	PRIMARY KEY(`seq`, `idx`)
);
--> statement-breakpoint
ALTER TABLE `repo_seq` ADD `chunks` integer DEFAULT 0 NOT NULL;