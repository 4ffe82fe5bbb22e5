-- Removes what the pgbench runs wrote, so that Strata starts from the same tables.
-- idempotency_keys has no index on order_id (nothing looks a key up by its order), so the
-- cascade from orders would scan the whole table once per deleted order: tens of
-- thousands of orders took minutes. The children go first, in one join each, and the
-- cascade's triggers are off for the session (the run connects as a superuser).
SET session_replication_role = replica;
DELETE FROM idempotency_keys k USING orders o
 WHERE k.order_id = o.id AND o.email = 'pgbench@example.com';
DELETE FROM order_lines l USING orders o
 WHERE l.order_id = o.id AND o.email = 'pgbench@example.com';
DELETE FROM orders WHERE email = 'pgbench@example.com';
RESET session_replication_role;
DELETE FROM processed_messages;
DELETE FROM outbox;
