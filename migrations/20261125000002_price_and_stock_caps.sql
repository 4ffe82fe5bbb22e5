-- Upper bounds that keep order totals (quantity x price, 50 lines) far from overflow.
-- Rows written before the bounds existed are brought within them first.
UPDATE products SET price_cents = 100000000 WHERE price_cents > 100000000;
UPDATE products SET stock = 1000000000 WHERE stock > 1000000000;
ALTER TABLE products
    ADD CONSTRAINT products_price_cap CHECK (price_cents <= 100000000),
    ADD CONSTRAINT products_stock_cap CHECK (stock <= 1000000000);
