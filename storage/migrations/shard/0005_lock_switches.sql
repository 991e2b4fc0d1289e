-- Every switch of a showtime's locking mode, for operators to see when and
-- why a showtime turned pessimistic or back.
create table if not exists seat_lock_switches (
    id uuid primary key,
    showtime_id uuid not null references showtimes (id),
    movie_id uuid not null,
    mode text not null check (mode in ('optimistic', 'pessimistic')),
    -- Share of the deciding instance's recent claims that met contention.
    conflict_rate float8 not null,
    switched_at timestamptz not null default now()
);

create index if not exists seat_lock_switches_showtime on seat_lock_switches (showtime_id, switched_at);
create index if not exists seat_lock_switches_movie on seat_lock_switches (movie_id);
