-- Subscriptions to the event topics (SNS's role): who gets which events, how, and what
-- happened to the deliveries. A subscription's messages wait in its own queues on the
-- broker (`sub.<id>`, its retry tiers and `sub.<id>.dlq`); this table holds its settings,
-- its state and its counters.
CREATE TABLE subscriptions (
    id                 UUID PRIMARY KEY,
    -- The topic: `orders` (order.*) or `catalog` (product.*, inventory.*).
    topic              TEXT NOT NULL CHECK (topic IN ('orders', 'catalog')),
    protocol           TEXT NOT NULL
                       CHECK (protocol IN ('http', 'https', 'email', 'queue', 'function')),
    endpoint           TEXT NOT NULL CHECK (length(endpoint) BETWEEN 1 AND 2048),
    -- SNS filter-policy syntax, validated by the API; NULL: every event of the topic.
    filter_policy      JSONB,
    -- true: the event's payload alone; false: the envelope (type, id, timestamp, ...).
    raw_delivery       BOOLEAN NOT NULL DEFAULT false,
    status             TEXT NOT NULL DEFAULT 'pending_confirmation'
                       CHECK (status IN ('pending_confirmation', 'confirmed', 'deleted')),
    -- HMAC-SHA256 key of the Strata-Signature header (hex); shown once, at creation.
    secret             TEXT NOT NULL,
    -- The token of the confirmation URL.
    confirm_token      TEXT NOT NULL,
    -- The principal (topic policy) that created it.
    owner              TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- When the confirmation request was last sent (http/https/email); NULL: not yet.
    confirmation_sent_at TIMESTAMPTZ,
    confirmed_at       TIMESTAMPTZ,
    deleted_at         TIMESTAMPTZ,
    -- Delivery counters, written by the delivering workers.
    delivered          BIGINT NOT NULL DEFAULT 0,
    retried            BIGINT NOT NULL DEFAULT 0,
    failed             BIGINT NOT NULL DEFAULT 0,
    dead_lettered      BIGINT NOT NULL DEFAULT 0,
    filtered           BIGINT NOT NULL DEFAULT 0,
    last_error         TEXT,
    last_delivery_at   TIMESTAMPTZ,
    CONSTRAINT subscriptions_confirmed_at CHECK ((status = 'confirmed') <= (confirmed_at IS NOT NULL)),
    CONSTRAINT subscriptions_deleted_at CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);
CREATE INDEX subscriptions_live_idx ON subscriptions (status) WHERE status <> 'deleted';
