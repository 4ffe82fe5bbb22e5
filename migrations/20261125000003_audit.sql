-- The audit trail: one row per mutating call on the API, written in the same transaction
-- as the change it records (or on its own when the change was refused or failed).

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    -- The time of the insert itself, not of the transaction's start.
    at          TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    actor       TEXT NOT NULL CHECK (length(actor) BETWEEN 1 AND 100),
    action      TEXT NOT NULL CHECK (action ~ '^[a-z]+(\.[a-z_]+)+$'),
    target      TEXT CHECK (length(target) BETWEEN 1 AND 200),
    outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'rejected', 'denied', 'failed')),
    -- The error code of a call that did not succeed; null on success.
    error_code  TEXT CHECK ((outcome = 'success') = (error_code IS NULL)),
    request_id  UUID,
    trace_id    TEXT CHECK (trace_id ~ '^[0-9a-f]{32}$'),
    detail      JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object')
);
-- Newest first, optionally narrowed by one of the filters the API offers.
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_action_at_idx ON audit_log (action, at DESC);
CREATE INDEX audit_log_actor_at_idx ON audit_log (actor, at DESC);
CREATE INDEX audit_log_target_at_idx ON audit_log (target, at DESC);
