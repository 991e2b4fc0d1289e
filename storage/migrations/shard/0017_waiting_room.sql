-- A showtime's virtual waiting room: while it is on, holds need a pass, and
-- passes go to the people in line first come, first served, at a rate the
-- seats left and checkout can take. The room and its line live with the
-- movie and move with it.
create table if not exists waiting_rooms (
    showtime_id uuid primary key references showtimes (id),
    movie_id uuid not null,
    -- `auto` follows demand; `on` and `off` are staff's choice.
    mode text not null default 'auto' check (mode in ('auto', 'on', 'off')),
    active boolean not null default false,
    -- Why it is on: `staff` or `demand`.
    reason text,
    active_since timestamptz,
    -- The number of the last place handed out.
    joined bigint not null default 0,
    -- When the line was last moved on: passes are handed out at a rate, so
    -- the time since is what may be spent.
    ticked_at timestamptz not null default now(),
    sold_out_at timestamptz,
    updated_at timestamptz not null default now()
);

create index if not exists waiting_rooms_movie on waiting_rooms (movie_id);
create index if not exists waiting_rooms_active on waiting_rooms (showtime_id) where active;

create table if not exists queue_places (
    -- Scoped to the movie, so a place is found by its id alone.
    id uuid primary key,
    showtime_id uuid not null references showtimes (id),
    movie_id uuid not null,
    number bigint not null,
    -- Whose place it is: `user:<id>` for an account, else a device's key.
    holder text not null,
    -- The key of the network address it came from, to cap places per
    -- address.
    address text not null,
    state text not null check (state in ('waiting', 'admitted', 'used', 'expired', 'left', 'sold_out')),
    joined_at timestamptz not null default now(),
    admitted_at timestamptz,
    pass_expires_at timestamptz,
    updated_at timestamptz not null default now()
);

create unique index if not exists queue_places_number on queue_places (showtime_id, number);
-- One live place per holder: a reload or a second tab finds the same one.
create unique index if not exists queue_places_holder on queue_places (showtime_id, holder)
    where state in ('waiting', 'admitted');
create index if not exists queue_places_waiting on queue_places (showtime_id, number)
    where state = 'waiting';
create index if not exists queue_places_address on queue_places (showtime_id, address)
    where state in ('waiting', 'admitted');
create index if not exists queue_places_movie on queue_places (movie_id);
