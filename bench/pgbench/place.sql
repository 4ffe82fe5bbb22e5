-- One order of one line, with the statements logic sends when it accepts
-- POST /api/v1/orders (data/src/orders.rs, data/src/outbox.rs): price lookup, order,
-- lines, idempotency key, outbox message and its notification, in one transaction, then
-- the order read back. Run with -M prepared (sqlx prepares its statements too) and
-- -D n=0 -D products=N -D audit=0|1 (1 when the schema has the audit trail) -D notify=1
-- (0 leaves out pg_notify, to show what the notification costs).
--
-- pgbench cannot pick a random string: the sku is looked up by number in bench_sku
-- inside the first statement (an index probe logic does not pay). Ids grow with a
-- counter per client, as logic's time-ordered UUIDv7 ids grow with time: random ids would
-- scatter index inserts and full-page writes, and measure a different database load.
\set i random(1, :products)
\set n :n + 1
\set k :n * 1000 + :client_id
BEGIN;
SELECT sku, price_cents FROM products WHERE sku = ANY(ARRAY(SELECT sku FROM bench_sku WHERE i = :i)) \gset
INSERT INTO orders (id, email, total_cents) VALUES (lpad(to_hex(:k::bigint), 32, '0')::uuid, 'pgbench@example.com', :price_cents::bigint);
INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_cents) SELECT lpad(to_hex(:k::bigint), 32, '0')::uuid, * FROM unnest(ARRAY[1]::smallint[], ARRAY[:sku]::text[], ARRAY[1]::int[], ARRAY[:price_cents]::bigint[]);
INSERT INTO idempotency_keys (key, request_hash, order_id) VALUES ('pgbench-' || :k, '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', lpad(to_hex(:k::bigint), 32, '0')::uuid) ON CONFLICT (key) DO NOTHING;
INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent) VALUES (('1' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'commands', 'orders.fulfil', 'FulfilOrder', jsonb_build_object('message_id', ('1' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'type', 'FulfilOrder', 'schema_version', 1, 'occurred_at', now(), 'traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'payload', jsonb_build_object('order_id', lpad(to_hex(:k::bigint), 32, '0')::uuid)), '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
\if :notify
SELECT pg_notify('strata_outbox', '');
\endif
\if :audit
INSERT INTO audit_log (actor, action, target, outcome, error_code, request_id, trace_id, detail) VALUES ('anonymous', 'order.place', 'order:' || lpad(to_hex(:k::bigint), 32, '0')::uuid, 'success', NULL, ('2' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, '4bf92f3577b34da6a3ce929d0e0e4736', jsonb_build_object('lines', 1, 'total_cents', :price_cents::bigint, 'idempotency_key', true)) RETURNING id;
SELECT id, email, status, reason, total_cents, created_at, updated_at FROM orders WHERE id = lpad(to_hex(:k::bigint), 32, '0')::uuid;
SELECT sku, quantity, unit_price_cents FROM order_lines WHERE order_id = lpad(to_hex(:k::bigint), 32, '0')::uuid ORDER BY line_no;
COMMIT;
\else
COMMIT;
SELECT id, email, status, reason, total_cents, created_at, updated_at FROM orders WHERE id = lpad(to_hex(:k::bigint), 32, '0')::uuid;
SELECT sku, quantity, unit_price_cents FROM order_lines WHERE order_id = lpad(to_hex(:k::bigint), 32, '0')::uuid ORDER BY line_no;
\endif
