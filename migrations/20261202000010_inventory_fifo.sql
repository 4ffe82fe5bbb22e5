-- The supplier inventory feed: adjustments accepted in order per sku, applied by the
-- FIFO consumers in that order.

-- One row per sku that ever had an adjustment: the last sequence handed out (at accept
-- time, under this row's lock) and the last one applied (by a consumer, under the same
-- lock).
CREATE TABLE inventory_groups (
    sku               TEXT PRIMARY KEY REFERENCES products (sku) ON DELETE CASCADE,
    last_sequence     BIGINT NOT NULL CHECK (last_sequence >= 1),
    applied_sequence  BIGINT NOT NULL DEFAULT 0 CHECK (applied_sequence >= 0),
    CONSTRAINT inventory_groups_applied_le_last CHECK (applied_sequence <= last_sequence)
);

CREATE TABLE inventory_adjustments (
    id            UUID PRIMARY KEY,
    sku           TEXT NOT NULL REFERENCES products (sku) ON DELETE CASCADE,
    sequence      BIGINT NOT NULL CHECK (sequence >= 1),
    op            TEXT NOT NULL CHECK (op IN ('set', 'add')),
    quantity      BIGINT NOT NULL CHECK (quantity BETWEEN -1000000000 AND 1000000000),
    dedup_id      TEXT NOT NULL CHECK (length(dedup_id) BETWEEN 1 AND 255),
    reason        TEXT CHECK (length(reason) <= 200),
    supplier_ref  TEXT CHECK (length(supplier_ref) <= 100),
    accepted_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'applied', 'refused')),
    stock_after   BIGINT,
    applied_at    TIMESTAMPTZ,
    CONSTRAINT inventory_adjustments_sequence_once UNIQUE (sku, sequence),
    CONSTRAINT inventory_adjustments_settled CHECK ((status = 'pending') = (applied_at IS NULL))
);

-- Deduplication ids of the last five minutes (older rows are overwritten by a new
-- adjustment with the same id, and deleted by the consumers' housekeeping).
CREATE TABLE inventory_dedup (
    dedup_id       TEXT PRIMARY KEY CHECK (length(dedup_id) BETWEEN 1 AND 255),
    adjustment_id  UUID NOT NULL,
    accepted_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX inventory_dedup_accepted_idx ON inventory_dedup (accepted_at);
