-- The pruning of processed_messages looks rows up by age.
-- Not CONCURRENTLY: that waits for every open transaction, the other replicas' migrators
-- waiting for sqlx's advisory lock among them, which deadlocks replicas that migrate at
-- once. The build blocks the workers' inserts for as long as it takes (the table had no
-- pruning until now: on a large one, run this index build by hand beforehand).
CREATE INDEX IF NOT EXISTS processed_messages_processed_at
    ON processed_messages (processed_at);
