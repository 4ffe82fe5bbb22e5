-- The fulfilment saga's steps. `status` stays the coarse view (pending until final) that
-- every reader written before the saga knows; `step` is where the saga is.
ALTER TABLE orders
    ADD COLUMN step TEXT NOT NULL DEFAULT 'pending'
        CHECK (step IN ('pending', 'reserved', 'paid', 'fulfilled', 'rejected')),
    -- While the order holds stock (`reserved`): when the hold lapses and may be released.
    ADD COLUMN reserved_until TIMESTAMPTZ;

UPDATE orders SET step = status WHERE status <> 'pending';

ALTER TABLE orders ADD CONSTRAINT orders_status_follows_step CHECK (
    status = CASE WHEN step IN ('fulfilled', 'rejected') THEN step ELSE 'pending' END
);

-- The sweeper's scan: reservations by expiry.
CREATE INDEX orders_reserved_until_idx ON orders (reserved_until) WHERE step = 'reserved';
