-- The waiting list of a sold-out showtime: parties in the order they joined,
-- offered seats together as seats free up. It lives with the movie.
create table if not exists waitlist_entries (
    -- Scoped to the movie, so an entry is found by its id alone.
    id uuid primary key,
    showtime_id uuid not null references showtimes (id),
    movie_id uuid not null,
    user_id uuid not null,
    party_size integer not null check (party_size between 1 and 10),
    wheelchair_spaces integer not null default 0 check (wheelchair_spaces >= 0),
    state text not null check (state in ('waiting', 'offered', 'fulfilled', 'declined', 'expired', 'left')),
    joined_at timestamptz not null default now(),
    -- The hold offered to the party, and until when.
    hold_id uuid,
    offer_expires_at timestamptz,
    offers integer not null default 0,
    updated_at timestamptz not null default now()
);

create unique index if not exists waitlist_live on waitlist_entries (showtime_id, user_id)
    where state in ('waiting', 'offered');
create index if not exists waitlist_order on waitlist_entries (showtime_id, joined_at)
    where state in ('waiting', 'offered');
create index if not exists waitlist_movie on waitlist_entries (movie_id);
