-- Removes what the pgbench runs wrote, so that Strata starts from the same tables.
DELETE FROM orders WHERE email = 'pgbench@example.com';
DELETE FROM processed_messages;
DELETE FROM outbox;
