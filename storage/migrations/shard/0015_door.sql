-- Tickets at the door. An admission is recorded once per ticket, on the
-- node of the ticket's movie, and moves with it; the first scan wins and
-- every later one is told when and where the ticket went in.
create table if not exists admissions (
    ticket_id uuid primary key references tickets (id),
    showtime_id uuid not null,
    movie_id uuid not null,
    order_id uuid not null,
    seat text not null,
    -- When the scanner let the ticket in: the server's time online, the
    -- scanner's own for admissions uploaded after working offline.
    admitted_at timestamptz not null,
    recorded_at timestamptz not null default now(),
    device_id text not null,
    -- The door staff's user id, or `operator`.
    scanned_by text not null,
    offline boolean not null default false
);

create index if not exists admissions_movie on admissions (movie_id);
create index if not exists admissions_showtime on admissions (showtime_id);

-- Tickets voided after they were issued (a cancellation or a refund), in
-- the order they were voided, so an offline scanner asks only for what
-- changed since the version it holds. The showtime's counter gives the
-- versions; bumping it serialises the voids of one showtime.
alter table showtimes add column if not exists revocation_version bigint not null default 0;

create table if not exists ticket_revocations (
    showtime_id uuid not null,
    version bigint not null,
    ticket_id uuid not null,
    movie_id uuid not null,
    reason text not null,
    revoked_at timestamptz not null default now(),
    primary key (showtime_id, version)
);

create index if not exists ticket_revocations_movie on ticket_revocations (movie_id);

-- Door staff have a role of their own.
alter table users drop constraint if exists users_role_check;
alter table users add constraint users_role_check
    check (role in ('customer', 'support', 'admin', 'scanner'));
