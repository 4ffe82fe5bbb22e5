-- The simulated payment gateway's own ledger: one row per idempotency key (the order id).
-- A retried charge finds the row and answers what was decided the first time; `calls`
-- counts every call so tests and the chaos ledger can tell a retried call from a second
-- charge. No foreign key: the gateway is another system, it only knows the key.
CREATE TABLE payment_charges (
    order_id     UUID PRIMARY KEY,
    amount_cents BIGINT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('approved', 'declined')),
    calls        INT NOT NULL DEFAULT 1 CHECK (calls >= 1),
    charged_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_call_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set once when an approved charge is given back (a settle that came too late).
    refunded_at  TIMESTAMPTZ,
    CHECK (refunded_at IS NULL OR outcome = 'approved')
);
