-- no-transaction
-- The pruning of processed_messages looks rows up by age; built without blocking the
-- inserts of running workers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS processed_messages_processed_at
    ON processed_messages (processed_at);
