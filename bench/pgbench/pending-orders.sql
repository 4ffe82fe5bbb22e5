-- :count pending orders of one line each (ids in creation order, skus spread over the
-- catalog): the queue of a peer's fulfilment run.
CREATE TEMP TABLE bench_pending AS
SELECT ('4' || lpad(to_hex(g), 31, '0'))::uuid AS id, b.sku, p.price_cents
FROM generate_series(1, :count) g
JOIN bench_sku b ON b.i = 1 + (g::bigint * 7919) % (SELECT count(*) FROM bench_sku)
JOIN products p ON p.sku = b.sku;
INSERT INTO orders (id, email, total_cents) SELECT id, 'peer@example.com', price_cents FROM bench_pending;
INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_cents)
SELECT id, 1, sku, 1, price_cents FROM bench_pending;
