-- Catalog, orders, the transactional outbox and the consumer's dedup ledger.

CREATE TABLE products (
    sku          TEXT PRIMARY KEY CHECK (sku ~ '^[A-Z0-9][A-Z0-9-]{0,63}$'),
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description  TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    category     TEXT NOT NULL CHECK (length(category) BETWEEN 1 AND 100),
    price_cents  BIGINT NOT NULL CONSTRAINT products_price_positive CHECK (price_cents > 0),
    stock        INTEGER NOT NULL CONSTRAINT products_stock_non_negative CHECK (stock >= 0),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX products_category_sku_idx ON products (category, sku);

CREATE TABLE orders (
    id           UUID PRIMARY KEY,
    email        TEXT NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'fulfilled', 'rejected')),
    reason       TEXT,
    total_cents  BIGINT NOT NULL CHECK (total_cents > 0),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A rejected order says why; any other status carries no reason.
    CONSTRAINT orders_reason_iff_rejected CHECK ((status = 'rejected') = (reason IS NOT NULL))
);
CREATE INDEX orders_status_created_idx ON orders (status, created_at);

CREATE TABLE order_lines (
    order_id          UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no           SMALLINT NOT NULL CHECK (line_no BETWEEN 1 AND 50),
    sku               TEXT NOT NULL REFERENCES products (sku),
    quantity          INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    unit_price_cents  BIGINT NOT NULL CHECK (unit_price_cents > 0),
    PRIMARY KEY (order_id, line_no),
    CONSTRAINT order_lines_sku_once UNIQUE (order_id, sku)
);

-- Messages written in the same transaction as the change they announce; the relay
-- publishes them and stamps published_at only after the broker confirmed.
CREATE TABLE outbox (
    id            BIGSERIAL PRIMARY KEY,
    message_id    UUID NOT NULL UNIQUE,
    exchange      TEXT NOT NULL,
    routing_key   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    body          JSONB NOT NULL,
    traceparent   TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at  TIMESTAMPTZ,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

-- One row per message a consumer has applied: the idempotent-consumer ledger.
CREATE TABLE processed_messages (
    consumer      TEXT NOT NULL,
    message_id    UUID NOT NULL,
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

-- Idempotency-Key header of POST /orders: the key, a hash of the body, and the order made.
CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    request_hash  TEXT NOT NULL,
    order_id      UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
