-- One order of one line, with the statement logic sends when it accepts
-- POST /api/v1/orders (data/src/store/orders.rs, PLACE): price lookup, order, lines,
-- idempotency key, outbox messages (the FulfilOrder command and the order.placed event with
-- its attributes) and audit entry, as one statement (so one transaction).
-- Logic sends nothing more: its outbox relay runs in the same process and is woken in
-- memory. Run with -M prepared (sqlx prepares its statements too) and -D n=0
-- -D products=N -D audit=0|1 (1 when the schema has the audit trail).
--
-- pgbench cannot pick a random string: the sku is looked up by number in bench_sku
-- inside the statement (an index probe logic does not pay). Ids grow with a counter per
-- client, as logic's time-ordered UUIDv7 ids grow with time: random ids would scatter
-- index inserts and full-page writes, and measure a different database load.
\set i random(1, :products)
\set n :n + 1
\set k :n * 1000 + :client_id
WITH line AS (
    SELECT i.line_no, i.sku, i.quantity, p.price_cents, p.name, p.category
    FROM unnest((SELECT ARRAY[1]::smallint[]), (SELECT ARRAY(SELECT sku FROM bench_sku WHERE i = :i)), (SELECT ARRAY[1]::int[])) AS i (line_no, sku, quantity)
    JOIN products p ON p.sku = i.sku
),
priced AS (
    SELECT count(*) = 1 AS complete,
           coalesce(sum(quantity::bigint * price_cents), 0)::bigint AS total,
           array_agg(sku ORDER BY line_no) AS skus,
           array_agg(price_cents ORDER BY line_no) AS prices,
           coalesce(jsonb_agg(jsonb_build_object('sku', sku, 'name', name,
               'category', category, 'quantity', quantity, 'unit_price_cents', price_cents)
               ORDER BY line_no), '[]') AS event_lines,
           coalesce(jsonb_agg(DISTINCT category COLLATE "C"
               ORDER BY category COLLATE "C"), '[]') AS categories,
           coalesce(jsonb_agg(sku ORDER BY line_no), '[]') AS event_skus,
           count(*) AS line_count
    FROM line
),
new_key AS (
    INSERT INTO idempotency_keys (key, request_hash, order_id)
    SELECT 'pgbench-' || :k, '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', lpad(to_hex(:k::bigint), 32, '0')::uuid FROM priced WHERE complete
    ON CONFLICT (key) DO NOTHING
    RETURNING order_id
),
go AS (
    SELECT total FROM priced WHERE complete AND EXISTS (SELECT FROM new_key)
),
placed AS (
    INSERT INTO orders (id, email, total_cents) SELECT lpad(to_hex(:k::bigint), 32, '0')::uuid, 'pgbench@example.com', total FROM go
    RETURNING status, created_at, updated_at
),
lines AS (
    INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_cents)
    SELECT lpad(to_hex(:k::bigint), 32, '0')::uuid, line_no, sku, quantity, price_cents FROM line
    WHERE EXISTS (SELECT FROM go)
),
message AS (
    INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent)
    SELECT ('3' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'events', 'order.placed', 'OrderPlaced', jsonb_build_object('message_id', ('3' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'type', 'OrderPlaced', 'schema_version', 1, 'occurred_at', now(), 'traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'payload', jsonb_build_object('order_id', lpad(to_hex(:k::bigint), 32, '0')::uuid, 'email', 'pgbench@example.com', 'total_cents', go.total, 'lines', p.event_lines), 'attributes', jsonb_build_object('type', 'order.placed', 'order_id', lpad(to_hex(:k::bigint), 32, '0')::uuid, 'email_domain', 'example.com', 'total_cents', go.total, 'category', p.categories, 'sku', p.event_skus, 'line_count', p.line_count)), '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' FROM go, priced p
    UNION ALL
    SELECT ('1' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'commands', 'orders.fulfil', 'FulfilOrder', jsonb_build_object('message_id', ('1' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, 'type', 'FulfilOrder', 'schema_version', 1, 'occurred_at', now(), 'traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'payload', jsonb_build_object('order_id', lpad(to_hex(:k::bigint), 32, '0')::uuid)), '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' FROM go
),
audit AS (
    INSERT INTO audit_log (actor, action, target, outcome, request_id, trace_id, detail)
    SELECT 'anonymous', 'order.place', 'order:' || lpad(to_hex(:k::bigint), 32, '0')::uuid, 'success', ('2' || lpad(to_hex(:k::bigint), 31, '0'))::uuid, '4bf92f3577b34da6a3ce929d0e0e4736', jsonb_build_object('lines', 1, 'idempotency_key', true) || jsonb_build_object('total_cents', total)
    FROM go WHERE :audit = 1
)
SELECT priced.complete, priced.total, priced.skus, priced.prices, placed.status, placed.created_at, placed.updated_at
FROM priced LEFT JOIN placed ON true;
