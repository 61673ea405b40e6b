-- pgbench script: the relay's send (kavro-server/src/store/postgres.rs,
-- `store_message`) as one statement per transaction, like the relay runs it:
-- the pending-quota check and the insert together, ON CONFLICT DO NOTHING,
-- RETURNING id. A 200-byte ciphertext, no metadata, no client_msg_id.
--
-- Needs the relay's schema (kavro-server/migrations/postgres/0001_initial.sql)
-- and :users rows in `users` (ids 1..:users); see docs/BENCHMARKS.md.
-- Run with -M prepared (the relay's driver prepares its statements) and
-- -D users=N.
\set sender random(1, :users)
\set recipient random(1, :users)
INSERT INTO messages (sender_id, recipient_id, ciphertext, ephemeral_pubkey, metadata, client_msg_id, created_at, expires_at) SELECT :sender, :recipient, '\x882a17bd31d2c16a94c1a032e50068ac0b3609f2004d23f1f5fc843e46872cec8ed15785115e3abc3a601bfe834e3686a25e575d1fb310172a564be9d7ad657d3159d230668de8da5b267185b86bffe4bbf1593a349799154b66a694b2ff606f40f2f9aded3b1282e28b3381b71812acaf248c5d887c1a25de56ad31be0a51c842a033b554bf94015f24ca594e78d753d350a19cf02f53c172f8eb9cb10f6e05d2c0f3212e3365fd08f3fd0bf208433a4fbdaf27450db4f84b4de8852d7627a12875e7a1e03d8ab1'::bytea, 'cc2a5e2d0878cdf5981b36207824be2e1c995fcb112d976a1aa39c8014937bef', NULL, NULL, now(), now() + interval '30 days' WHERE (SELECT count(*) FROM (SELECT 1 FROM messages WHERE recipient_id = :recipient AND delivered_at IS NULL LIMIT 10000) AS pending) < 10000 ON CONFLICT DO NOTHING RETURNING id;
