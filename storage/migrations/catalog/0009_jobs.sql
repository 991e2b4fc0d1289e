-- Periodic jobs (the subscription scanner, the release importer). One
-- instance holds a job at a time: it beats while it works, and another
-- takes the job over once the beat is older than the lease. `state` is the
-- job's cursor, saved with each beat so a successor resumes where it left.
create table if not exists jobs (
    name text primary key,
    holder uuid not null,
    beat_at timestamptz not null default now(),
    state jsonb not null default '{}',
    runs bigint not null default 0,
    last_error text
);
