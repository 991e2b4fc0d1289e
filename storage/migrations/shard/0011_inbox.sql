-- The in-app inbox: notices for a signed-in user, on the node that owns the
-- user's id (ids are scoped to the user, so one reaches its node alone).
-- An entry made from a change event has an id derived from the event, so
-- a redelivered event writes nothing new.
create table if not exists inbox (
    id uuid primary key,
    user_id uuid not null,
    kind text not null check (length(kind) between 1 and 60),
    title text not null check (length(title) between 1 and 300),
    body text not null check (length(body) <= 4000),
    -- What the notice is about, for the app to open: an order, a showtime.
    subject_id uuid,
    created_at timestamptz not null default now(),
    read_at timestamptz
);
create index if not exists inbox_user on inbox (user_id, created_at, id);
