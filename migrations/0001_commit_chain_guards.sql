-- Custom migration: guards drizzle's schema language cannot express.
-- A commit's rev must be greater than every earlier rev. With the UNIQUE
-- index on commit_chain.prev, this makes D1 itself refuse a writer that built
-- on a stale root (the whole batch is rolled back and the writer retries).
CREATE TRIGGER `commit_chain_rev_increases`
BEFORE INSERT ON `commit_chain`
WHEN EXISTS (SELECT 1 FROM `commit_chain` WHERE `rev` >= NEW.`rev`)
BEGIN
  SELECT RAISE(ABORT, 'stale commit: rev does not increase');
END;
