ALTER TABLE `refresh_token` ADD `session_id` text;--> statement-breakpoint
CREATE INDEX `refresh_token_session_idx` ON `refresh_token` (`session_id`);--> statement-breakpoint
-- Tokens from before sessions had ids: each is its own session (their access tokens carry no sid and expire within two hours).
UPDATE `refresh_token` SET `session_id` = `id` WHERE `session_id` IS NULL;
