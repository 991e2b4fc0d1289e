-- Movies live on the shard of their id. Ids are UUIDv7: time-ordered, so
-- inserts append to the index instead of scattering across it.
create table if not exists movies (
    id uuid primary key,
    title text not null check (length(title) between 1 and 300),
    genres text[] not null default '{}',
    director text,
    synopsis text,
    cast_members text[] not null default '{}',
    runtime_minutes integer check (runtime_minutes between 1 and 1000),
    certificate text,
    release_date date,
    poster_url text,
    imdb_rating numeric(3, 1) check (imdb_rating between 0 and 10),
    imdb_votes integer check (imdb_votes >= 0),
    -- True when any field was synthesized for the demo catalogue rather
    -- than taken from the source data.
    demo_generated boolean not null default false,
    version bigint not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index if not exists movies_release_date on movies (release_date);
