-- `worker analytics` (Kinesis Data Analytics): tumbling one-minute windows over the event
-- stream, by event time. Every row is written in the transaction that moves the
-- application's checkpoint (stream_checkpoints), so windows and checkpoints move together.

-- One row per application and minute: the orders placed, fulfilled and rejected whose
-- event time falls in [window_start, window_start + 1 minute), and the events of that
-- minute that arrived after their shard's watermark had passed them (not counted).
CREATE TABLE analytics_windows (
    application text NOT NULL,
    window_start timestamptz NOT NULL
        CHECK (date_trunc('minute', window_start) = window_start),
    placed bigint NOT NULL DEFAULT 0,
    placed_cents bigint NOT NULL DEFAULT 0,
    fulfilled bigint NOT NULL DEFAULT 0,
    revenue_cents bigint NOT NULL DEFAULT 0,
    rejected bigint NOT NULL DEFAULT 0,
    late_events bigint NOT NULL DEFAULT 0,
    -- The newest event time counted in the window, and when the row last changed: the
    -- lag of the windows behind real time.
    last_event_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (application, window_start)
);

-- Per window and category: orders placed with a line of the category, and the revenue of
-- the fulfilled lines of the category.
CREATE TABLE analytics_window_categories (
    application text NOT NULL,
    window_start timestamptz NOT NULL,
    category text NOT NULL,
    placed bigint NOT NULL DEFAULT 0,
    revenue_cents bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (application, window_start, category),
    FOREIGN KEY (application, window_start)
        REFERENCES analytics_windows (application, window_start) ON DELETE CASCADE
);

-- Per window and product: units and revenue of the fulfilled lines.
CREATE TABLE analytics_window_products (
    application text NOT NULL,
    window_start timestamptz NOT NULL,
    sku text NOT NULL,
    units bigint NOT NULL DEFAULT 0,
    revenue_cents bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (application, window_start, sku),
    FOREIGN KEY (application, window_start)
        REFERENCES analytics_windows (application, window_start) ON DELETE CASCADE
);

-- Per application and shard: the greatest event time read so far in the shard (its
-- watermark is this minus the allowed lateness) and, after a replay from a timestamp, the
-- first minute recomputed and the last sequence applied before the replay (records up to
-- it of earlier minutes were counted before the replay and are skipped). Kept with the
-- windows, so that a replay reproduces them exactly.
CREATE TABLE analytics_shards (
    application text NOT NULL,
    shard integer NOT NULL,
    max_event_time timestamptz,
    -- max_event_time minus the allowed lateness the instance ran with.
    watermark timestamptz,
    replay_from timestamptz,
    replay_through bigint,
    PRIMARY KEY (application, shard)
);
