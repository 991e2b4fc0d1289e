-- What the bookings index knows of each booking's order, kept current by
-- the bookings index consumer from the orders topic (api/src/bookings_index.rs).
-- Null until the order's first event arrives; `as_of` is the order's
-- `updated_at` when read, so an older reading never overwrites a newer one.
alter table user_bookings
    add column if not exists order_id uuid,
    add column if not exists status text,
    add column if not exists starts_at timestamptz,
    add column if not exists as_of timestamptz;

create index if not exists user_bookings_starts on user_bookings (user_id, starts_at);
