-- The worker's transaction for one FulfilOrder message that fulfils its order
-- (worker/src/fulfilment/transaction.rs, CLAIM and SETTLE, payment approved at once):
-- dedup ledger, order and product rows locked, then stock taken, status set and the event
-- written to the outbox. The wake-up of the relays is not part of it: the worker sends it
-- from a task of its own, one pg_notify for all the commits of the moment
-- (data/src/messaging/outbox.rs, notifier).
-- Run with -M prepared -D n=0 -D base=B: each client works through its own pre-inserted
-- orders, ids derived from B + client_id * 1000000 + n (fulfil-orders.sql inserts them);
-- message ids grow with n, as UUIDv7 ids grow with time.
\set n :n + 1
\set k :base + :client_id * 1000000 + :n
BEGIN;
WITH first AS (
    INSERT INTO processed_messages (consumer, message_id) VALUES ('fulfilment', ('1' || lpad(to_hex(:k::bigint), 31, '0'))::uuid)
    ON CONFLICT DO NOTHING
    RETURNING true AS first
),
the_order AS (
    SELECT status, total_cents FROM orders
    WHERE id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid AND EXISTS (SELECT FROM first)
    FOR UPDATE
),
the_lines AS (
    SELECT l.sku, l.quantity, p.stock FROM order_lines l
    JOIN products p ON p.sku = l.sku
    WHERE l.order_id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid AND EXISTS (SELECT FROM the_order WHERE status = 'pending')
    ORDER BY l.sku
    FOR NO KEY UPDATE OF p
)
SELECT EXISTS (SELECT FROM first) AS first_time,
       (SELECT status FROM the_order) AS status,
       (SELECT total_cents FROM the_order) AS total_cents,
       (ARRAY(SELECT sku FROM the_lines ORDER BY sku))[1] AS sku,
       (ARRAY(SELECT quantity FROM the_lines ORDER BY sku))[1] AS quantity,
       ARRAY(SELECT stock FROM the_lines ORDER BY sku) AS stocks \gset
WITH stock AS (
    UPDATE products p SET stock = p.stock - l.quantity, updated_at = now()
    FROM unnest((SELECT ARRAY[:sku]::text[]), (SELECT ARRAY[:quantity]::int[])) AS l (sku, quantity)
    WHERE p.sku = l.sku
),
settled AS (
    UPDATE orders SET status = 'fulfilled', step = 'fulfilled', reason = NULL, updated_at = now() WHERE id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid
)
INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent)
VALUES (('3' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'events', 'order.fulfilled', 'OrderFulfilled', jsonb_build_object('message_id', ('3' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'type', 'OrderFulfilled', 'schema_version', 1, 'occurred_at', now(), 'traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01', 'payload', jsonb_build_object('order_id', ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'total_cents', :total_cents::bigint)), '00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01');
COMMIT;
