-- Prepares a database for pgbench/send.sql after the relay's migration:
-- :users users with ids 1..:users. Run with
--   psql -v users=100 -f kavro-bench/pgbench/setup.sql
INSERT INTO users (username, username_normalized, password_hash, created_at)
SELECT 'pgbench_' || i, 'pgbench_' || i, 'not-a-hash', now()
FROM generate_series(1, :users) AS i;
