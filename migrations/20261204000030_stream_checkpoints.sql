-- The event stream's consumer applications (data::stream::consumer): where each
-- application is in each shard, and which instance of it reads the shard.

-- The position an application resumes from in a shard. After a batch it is
-- 'after_sequence' with the last sequence applied, written in the transaction of the
-- batch's effect; a reset (replay) writes any other position.
CREATE TABLE stream_checkpoints (
    application text NOT NULL,
    shard integer NOT NULL,
    position text NOT NULL
        CHECK (position IN ('trim_horizon', 'latest', 'at_sequence', 'after_sequence', 'at_timestamp')),
    sequence bigint,
    at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (application, shard),
    CONSTRAINT stream_checkpoints_position_args CHECK (
        (position IN ('at_sequence', 'after_sequence')) = (sequence IS NOT NULL)
        AND (position = 'at_timestamp') = (at IS NOT NULL)
    )
);

-- One lease per application and shard. An instance holds it while it renews it before
-- expires_at; every change of holder moves the generation, which fences the former
-- holder: a batch commits only while its lease still has the generation it started with.
CREATE TABLE stream_leases (
    application text NOT NULL,
    shard integer NOT NULL,
    owner text,
    expires_at timestamptz NOT NULL DEFAULT '-infinity',
    generation bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (application, shard)
);
