-- Bench-only helpers in the bench database: skus by number (pgbench picks numbers) and
-- stock enough for every order of the run, so that each fulfilment takes the same path.
DROP TABLE IF EXISTS bench_sku;
CREATE TABLE bench_sku AS SELECT row_number() OVER (ORDER BY sku)::int AS i, sku FROM products;
ALTER TABLE bench_sku ADD PRIMARY KEY (i);
UPDATE products SET stock = 100000000;
VACUUM ANALYZE;
