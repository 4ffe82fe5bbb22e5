-- Pending orders for fulfil.sql: :clients x :per_client orders of one line each, ids
-- derived from :base + client_id * 1000000 + n as that script expects.
CREATE TEMP TABLE bench_k AS
SELECT ('5' || lpad(to_hex(k), 31, '0'))::uuid AS id, b.sku, p.price_cents
FROM (SELECT :base + c::bigint * 1000000 + n AS k
      FROM generate_series(0, :clients - 1) c CROSS JOIN generate_series(1, :per_client) n) ks
JOIN bench_sku b ON b.i = 1 + (ks.k * 7919) % (SELECT count(*) FROM bench_sku)
JOIN products p ON p.sku = b.sku;
INSERT INTO orders (id, email, total_cents) SELECT id, 'pgbench@example.com', price_cents FROM bench_k;
INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_cents)
SELECT id, 1, sku, 1, price_cents FROM bench_k;
