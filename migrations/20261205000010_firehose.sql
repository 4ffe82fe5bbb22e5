-- The firehose application (worker firehose): records waiting to be archived, and the
-- manifest of the files written. A consumer batch inserts its records into the buffer in
-- the transaction that writes its checkpoint; a flush deletes a shard's oldest rows and
-- inserts the file's manifest row in one transaction, under the shard's lease.

-- One row per record not yet in a file: its JSON line (personal data already removed)
-- and the size the buffering counts.
CREATE TABLE firehose_buffer (
    application text NOT NULL,
    shard integer NOT NULL,
    sequence bigint NOT NULL,
    line text NOT NULL,
    bytes integer NOT NULL,
    -- The record's event time (occurred_at), or its arrival when it has none: the hour
    -- directory of the file it starts.
    event_at timestamptz NOT NULL,
    arrived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (application, shard, sequence)
);

-- Every file written, the authoritative list of the archive. `path` is relative to the
-- archive directory; `staging` names the temporary file the flush wrote, renamed to
-- `path` after this row commits (a restart finishes a rename a crash interrupted).
CREATE TABLE firehose_files (
    application text NOT NULL,
    shard integer NOT NULL,
    first_sequence bigint NOT NULL,
    last_sequence bigint NOT NULL,
    records integer NOT NULL,
    -- Bytes of the JSON lines, and of the gzip file.
    raw_bytes bigint NOT NULL,
    bytes bigint NOT NULL,
    path text NOT NULL UNIQUE,
    staging text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (application, shard, first_sequence),
    CHECK (first_sequence <= last_sequence AND records > 0)
);

CREATE INDEX firehose_files_last ON firehose_files (application, shard, last_sequence);
