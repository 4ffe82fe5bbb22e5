-- The worker's saga for one FulfilOrder message that fulfils its order
-- (worker/src/fulfilment/steps.rs, payment approved at once), as two short transactions
-- and the simulated gateway's ledger statement between them:
--   reserve: order and product rows locked (LOCK), stock taken and held (TAKE);
--   charge: the gateway records the charge (payment.rs, RECORD), no transaction;
--   settle: order locked, final step set, message recorded, event to the outbox (FINISH).
-- The wake-up of the relays is not part of it: the worker sends it from a task of its
-- own, one pg_notify for all the commits of the moment (data/src/messaging/outbox.rs,
-- notifier).
-- Run with -M prepared -D n=0 -D base=B: each client works through its own pre-inserted
-- orders, ids derived from B + client_id * 1000000 + n (fulfil-orders.sql inserts them);
-- message ids grow with n, as UUIDv7 ids grow with time.
\set n :n + 1
\set k :base + :client_id * 1000000 + :n
BEGIN;
WITH the_order AS (
    SELECT step, reason, total_cents FROM orders WHERE id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid FOR UPDATE
),
the_lines AS (
    SELECT l.sku, l.quantity, p.stock FROM order_lines l
    JOIN products p ON p.sku = l.sku
    WHERE l.order_id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid AND EXISTS (SELECT FROM the_order WHERE step = 'pending'::text)
    ORDER BY l.sku
    FOR NO KEY UPDATE OF p
)
SELECT (SELECT step FROM the_order) AS step,
       (SELECT reason FROM the_order) AS reason,
       (SELECT total_cents FROM the_order) AS total_cents,
       (ARRAY(SELECT sku FROM the_lines ORDER BY sku))[1] AS sku,
       (ARRAY(SELECT quantity FROM the_lines ORDER BY sku))[1] AS quantity,
       ARRAY(SELECT stock FROM the_lines ORDER BY sku) AS stocks \gset
WITH stock AS (
    UPDATE products p SET stock = p.stock - l.quantity, updated_at = now()
    FROM unnest((SELECT ARRAY[:sku]::text[]), (SELECT ARRAY[:quantity]::int[])) AS l (sku, quantity)
    WHERE p.sku = l.sku
)
UPDATE orders SET step = 'reserved', reserved_until = now() + make_interval(secs => 600),
       updated_at = now()
WHERE id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid;
COMMIT;
INSERT INTO payment_charges (order_id, amount_cents, outcome) VALUES (('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, :total_cents, 'approved')
ON CONFLICT (order_id) DO UPDATE
    SET calls = payment_charges.calls + 1, last_call_at = now()
RETURNING outcome \gset
BEGIN;
WITH the_order AS (
    SELECT step, reason, total_cents FROM orders WHERE id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid FOR UPDATE
),
the_lines AS (
    SELECT l.sku, l.quantity, p.stock FROM order_lines l
    JOIN products p ON p.sku = l.sku
    WHERE l.order_id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid AND EXISTS (SELECT FROM the_order WHERE step = NULL::text)
    ORDER BY l.sku
    FOR NO KEY UPDATE OF p
)
SELECT (SELECT step FROM the_order) AS step \gset
WITH recorded AS (
    INSERT INTO processed_messages (consumer, message_id)
    SELECT 'fulfilment', ('1' || lpad(to_hex(:k::bigint), 31, '0'))::uuid WHERE ('1' || lpad(to_hex(:k::bigint), 31, '0'))::uuid IS NOT NULL
    ON CONFLICT DO NOTHING
),
stock AS (
    UPDATE products p SET stock = p.stock + l.quantity, updated_at = now()
    FROM unnest((SELECT ARRAY[]::text[]), (SELECT ARRAY[]::int[])) AS l (sku, quantity)
    WHERE p.sku = l.sku
),
settled AS (
    UPDATE orders SET status = 'fulfilled', step = 'fulfilled', reason = NULL, reserved_until = NULL,
           updated_at = now()
    WHERE id = ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid
)
INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent)
VALUES (('3' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'events', 'order.fulfilled', 'OrderFulfilled', jsonb_build_object('message_id', ('3' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'type', 'OrderFulfilled', 'schema_version', 1, 'occurred_at', now(), 'traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01', 'payload', jsonb_build_object('order_id', ('5' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'total_cents', :total_cents::bigint)), '00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01');
COMMIT;
