-- What a signed-in user asked to hear about, on the node that owns the
-- user. A row with `showtime_id` watches a sold-out showtime for freed
-- seats and is spent by its alert; any other row asks for new showtimes
-- (or, with movie-level filters only, new releases) matching every filter
-- it sets. Ids are scoped to the user, so one reaches its node alone.
create table if not exists subscriptions (
    id uuid primary key,
    user_id uuid not null,
    movie_id uuid,
    -- Lower-cased words that must all appear in the title.
    title_words text[],
    genre text,
    -- Lower-cased city name, as theaters spell it.
    city text,
    latitude float8,
    longitude float8,
    radius_km float8,
    theater_id uuid,
    format text,
    showtime_id uuid,
    created_at timestamptz not null default now(),
    check ((latitude is null) = (longitude is null) and (latitude is null) = (radius_km is null))
);
create index if not exists subscriptions_user on subscriptions (user_id, created_at);
create index if not exists subscriptions_showtime on subscriptions (showtime_id) where showtime_id is not null;

-- Each alert a subscription raised, with an id derived from what it is
-- about, so a scanner run repeated after a crash raises nothing twice. The
-- alert's change event is written in the same statement.
create table if not exists subscription_alerts (
    id uuid primary key,
    user_id uuid not null,
    subscription_id uuid not null,
    created_at timestamptz not null default now()
);
create index if not exists subscription_alerts_user on subscription_alerts (user_id);

-- Which channels a user wants notices on, and the number SMS goes to.
alter table users add column if not exists phone text;
alter table users add column if not exists notify_email boolean not null default true;
alter table users add column if not exists notify_sms boolean not null default false;
alter table users add column if not exists notify_in_app boolean not null default true;
