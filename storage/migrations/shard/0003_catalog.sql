-- Theaters and their screens live on the shard of the theater's id.
create table if not exists theaters (
    id uuid primary key,
    name text not null check (length(name) between 1 and 200),
    country char(2) not null,
    region text,
    city text not null check (length(city) between 1 and 100),
    street text not null,
    postcode text not null,
    latitude float8 not null check (latitude between -90 and 90),
    longitude float8 not null check (longitude between -180 and 180),
    -- IANA zone: showtimes are grouped by the theater's local day.
    timezone text not null,
    opening_hours jsonb not null,
    demo_generated boolean not null default false,
    version bigint not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index if not exists theaters_city on theaters (lower(city));

-- Movie listings page by title across shards.
create index if not exists movies_title on movies ((lower(title) collate "C"), id);

create table if not exists screens (
    id uuid primary key,
    theater_id uuid not null references theaters (id),
    name text not null check (length(name) between 1 and 100),
    layout jsonb not null,
    -- Content hash of the layout: showtimes keep the layout they were
    -- sold under even when the screen is later refitted.
    layout_id text not null,
    capacity integer not null check (capacity > 0),
    version bigint not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (theater_id, name)
);

-- A screen's timetable. It lives with the screen, while each showtime lives
-- with its movie, so overlap is checked here under the screen's row lock.
create table if not exists screen_slots (
    screen_id uuid not null references screens (id),
    showtime_id uuid not null,
    starts_at timestamptz not null,
    ends_at timestamptz not null check (ends_at > starts_at),
    created_at timestamptz not null default now(),
    primary key (screen_id, showtime_id)
);

create index if not exists screen_slots_time on screen_slots (screen_id, starts_at);

-- Layout snapshots referenced by showtimes on this shard, keyed by content
-- hash, so a thousand showtimes in one screen share one row.
create table if not exists seat_layouts (
    id text primary key,
    layout jsonb not null
);

-- Showtimes live with their movie; their ids carry the movie's routing hash.
create table if not exists showtimes (
    id uuid primary key,
    movie_id uuid not null references movies (id),
    theater_id uuid not null,
    screen_id uuid not null,
    layout_id text not null references seat_layouts (id),
    starts_at timestamptz not null,
    ends_at timestamptz not null check (ends_at > starts_at),
    format text not null check (format in ('2d', '3d', 'imax')),
    language text not null,
    currency char(3) not null,
    -- Minor units per seat kind, e.g. {"standard": 1250, "premium": 1650}.
    prices jsonb not null,
    capacity integer not null check (capacity > 0),
    version bigint not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index if not exists showtimes_movie_start on showtimes (movie_id, starts_at);
create index if not exists showtimes_start on showtimes (starts_at);
create index if not exists showtimes_theater on showtimes (theater_id);

-- Seats that are not free. A seat with no row is free, so a million
-- showtimes cost nothing until someone holds a seat.
create table if not exists seat_states (
    showtime_id uuid not null references showtimes (id),
    seat text not null,
    movie_id uuid not null,
    state text not null check (state in ('held', 'sold', 'blocked')),
    version bigint not null default 1,
    updated_at timestamptz not null default now(),
    primary key (showtime_id, seat)
);

create index if not exists seat_states_movie on seat_states (movie_id);

-- Domain events, written in the transaction that makes the change. Readers
-- tail it by sequence; a gap younger than a few seconds may be a
-- transaction still committing, so they wait for it before moving past.
create table if not exists outbox (
    seq bigserial primary key,
    aggregate text not null,
    aggregate_id uuid not null,
    event text not null,
    payload jsonb not null default '{}',
    created_at timestamptz not null default now(),
    published_at timestamptz
);
