-- One order of one line, with the statements logic sends when it accepts
-- POST /api/v1/orders (data/src/orders.rs, data/src/outbox.rs): price lookup, order,
-- lines, idempotency key, outbox message and its notification, in one transaction, then
-- the order read back. Run with -M prepared (sqlx prepares its statements too) and
-- -D products=N -D audit=0|1 (1 when the schema has the audit trail) -D notify=1
-- (0 leaves out pg_notify, to show what the notification costs).
--
-- pgbench cannot pick a random string: the sku is looked up by number in bench_sku
-- inside the first statement (an index probe logic does not pay), and ids are built from
-- random 64-bit halves on the server.
\set i random(1, :products)
\set hi random(1, 9223372036854775806)
\set lo random(1, 9223372036854775806)
\set mhi random(1, 9223372036854775806)
\set mlo random(1, 9223372036854775806)
BEGIN;
SELECT sku, price_cents FROM products WHERE sku = ANY(ARRAY(SELECT sku FROM bench_sku WHERE i = :i)) \gset
INSERT INTO orders (id, email, total_cents) VALUES ((lpad(to_hex(:hi::bigint), 16, '0') || lpad(to_hex(:lo::bigint), 16, '0'))::uuid, 'pgbench@example.com', :price_cents::bigint);
INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_cents) SELECT (lpad(to_hex(:hi::bigint), 16, '0') || lpad(to_hex(:lo::bigint), 16, '0'))::uuid, * FROM unnest(ARRAY[1]::smallint[], ARRAY[:sku]::text[], ARRAY[1]::int[], ARRAY[:price_cents]::bigint[]);
INSERT INTO idempotency_keys (key, request_hash, order_id) VALUES ('pgbench-' || :hi || '-' || :lo, '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', (lpad(to_hex(:hi::bigint), 16, '0') || lpad(to_hex(:lo::bigint), 16, '0'))::uuid) ON CONFLICT (key) DO NOTHING;
INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent) VALUES ((lpad(to_hex(:mhi::bigint), 16, '0') || lpad(to_hex(:mlo::bigint), 16, '0'))::uuid, 'commands', 'orders.fulfil', 'FulfilOrder', jsonb_build_object('message_id', (lpad(to_hex(:mhi::bigint), 16, '0') || lpad(to_hex(:mlo::bigint), 16, '0'))::uuid, 'type', 'FulfilOrder', 'schema_version', 1, 'occurred_at', now(), 'traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'payload', jsonb_build_object('order_id', (lpad(to_hex(:hi::bigint), 16, '0') || lpad(to_hex(:lo::bigint), 16, '0'))::uuid)), '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
\if :notify
SELECT pg_notify('strata_outbox', '');
\endif
\if :audit
INSERT INTO audit_log (actor, action, target, outcome, error_code, request_id, trace_id, detail) VALUES ('anonymous', 'order.place', 'order:' || (lpad(to_hex(:hi::bigint), 16, '0') || lpad(to_hex(:lo::bigint), 16, '0')), 'success', NULL, (lpad(to_hex(:mlo::bigint), 16, '0') || lpad(to_hex(:hi::bigint), 16, '0'))::uuid, '4bf92f3577b34da6a3ce929d0e0e4736', jsonb_build_object('lines', 1, 'total_cents', :price_cents::bigint, 'idempotency_key', true)) RETURNING id;
SELECT id, email, status, reason, total_cents, created_at, updated_at FROM orders WHERE id = (lpad(to_hex(:hi::bigint), 16, '0') || lpad(to_hex(:lo::bigint), 16, '0'))::uuid;
SELECT sku, quantity, unit_price_cents FROM order_lines WHERE order_id = (lpad(to_hex(:hi::bigint), 16, '0') || lpad(to_hex(:lo::bigint), 16, '0'))::uuid ORDER BY line_no;
COMMIT;
\else
COMMIT;
SELECT id, email, status, reason, total_cents, created_at, updated_at FROM orders WHERE id = (lpad(to_hex(:hi::bigint), 16, '0') || lpad(to_hex(:lo::bigint), 16, '0'))::uuid;
SELECT sku, quantity, unit_price_cents FROM order_lines WHERE order_id = (lpad(to_hex(:hi::bigint), 16, '0') || lpad(to_hex(:lo::bigint), 16, '0'))::uuid ORDER BY line_no;
\endif
