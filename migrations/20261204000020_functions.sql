-- The tables of the function handlers compiled into the worker (`worker --function`),
-- fed by `fn.<name>` queues. Each handler records the messages it applied in
-- processed_messages (consumer `fn.<name>`) in the same transaction as its effect.

-- loyalty-points: total_cents / 100 points per fulfilled order, per buyer email.
CREATE TABLE loyalty_points (
    email       TEXT PRIMARY KEY,
    points      BIGINT NOT NULL CHECK (points >= 0),
    orders      BIGINT NOT NULL CHECK (orders >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One award per order: an event published twice (a redrive, an SNS-style Publish of the
-- same order) credits nothing twice.
CREATE TABLE loyalty_point_awards (
    order_id    UUID PRIMARY KEY,
    email       TEXT NOT NULL,
    points      BIGINT NOT NULL CHECK (points >= 0),
    message_id  UUID NOT NULL,
    awarded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- low-stock-alert: one row per stock event that left a product below LOW_STOCK_THRESHOLD.
CREATE TABLE low_stock_alerts (
    id          BIGSERIAL PRIMARY KEY,
    message_id  UUID NOT NULL UNIQUE,
    sku         TEXT NOT NULL,
    stock       BIGINT NOT NULL,
    threshold   INT NOT NULL,
    event_type  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX low_stock_alerts_sku_idx ON low_stock_alerts (sku, created_at);
