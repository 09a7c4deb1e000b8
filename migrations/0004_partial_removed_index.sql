DROP INDEX `block_removed_at_idx`;--> statement-breakpoint
CREATE INDEX `block_removed_idx` ON `block` (`removed_at`) WHERE "block"."removed_at" IS NOT NULL;