-- The worker's transaction for one FulfilOrder message that fulfils its order
-- (data/src/fulfil.rs, payment approved at once): dedup ledger, order and product rows
-- locked, stock taken, status set, event into the outbox and its notification.
-- Run with -M prepared -D n=0 -D base=B -D notify=1 (0 leaves out pg_notify): each client
-- works through its own pre-inserted orders, ids derived from B + client_id * 1000000 + n
-- (fulfil-orders.sql inserts them); message ids grow with n, as UUIDv7 ids grow with time.
\set n :n + 1
\set k :base + :client_id * 1000000 + :n
BEGIN;
INSERT INTO processed_messages (consumer, message_id) VALUES ('fulfilment', ('1' || lpad(to_hex(:k::bigint), 31, '0'))::uuid) ON CONFLICT DO NOTHING;
SELECT status, total_cents FROM orders WHERE id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid FOR UPDATE \gset
SELECT l.sku, l.quantity, p.stock FROM order_lines l JOIN products p ON p.sku = l.sku WHERE l.order_id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid ORDER BY l.sku FOR UPDATE OF p \gset
UPDATE products p SET stock = p.stock - l.quantity, updated_at = now() FROM unnest(ARRAY[:sku]::text[], ARRAY[:quantity]::int[]) AS l(sku, quantity) WHERE p.sku = l.sku;
UPDATE orders SET status = 'fulfilled', updated_at = now() WHERE id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid;
INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent) VALUES (('3' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'events', 'order.fulfilled', 'OrderFulfilled', jsonb_build_object('message_id', ('3' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'type', 'OrderFulfilled', 'schema_version', 1, 'occurred_at', now(), 'traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01', 'payload', jsonb_build_object('order_id', ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'total_cents', :total_cents::bigint)), '00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01');
\if :notify
SELECT pg_notify('strata_outbox', '');
\endif
COMMIT;
