-- Booking: holds, orders, payments and tickets live with their movie, like
-- the showtime they are for, so every step of a purchase is one shard
-- transaction.

-- A held seat carries its hold and when it lapses. A hold past its expiry
-- counts as free for every reader and writer, so seats return on time
-- whether or not the sweeper has run yet.
alter table seat_states add column if not exists hold_id uuid;
alter table seat_states add column if not exists order_id uuid;
alter table seat_states add column if not exists expires_at timestamptz;
alter table seat_states add constraint seat_states_held_expires
    check ((state = 'held') = (expires_at is not null and hold_id is not null));

create index if not exists seat_states_expiry on seat_states (expires_at)
    where state = 'held';
create index if not exists seat_states_hold on seat_states (hold_id)
    where hold_id is not null;

-- How seats of a showtime are claimed. `lock_policy` is the operator's
-- choice; under `auto`, `lock_mode` follows contention.
alter table showtimes add column if not exists lock_policy text not null default 'auto'
    check (lock_policy in ('auto', 'optimistic', 'pessimistic'));
alter table showtimes add column if not exists lock_mode text not null default 'optimistic'
    check (lock_mode in ('optimistic', 'pessimistic'));
alter table showtimes add column if not exists lock_mode_since timestamptz not null default now();
alter table showtimes add column if not exists lock_switches integer not null default 0;

-- One lockable row per seat row of a showtime, created on first use. In
-- pessimistic mode a buyer locks the rows it picks from, so buyers of
-- best-available seats spread over rows with SKIP LOCKED instead of queueing.
create table if not exists seat_row_locks (
    showtime_id uuid not null references showtimes (id),
    row_label text not null,
    movie_id uuid not null,
    primary key (showtime_id, row_label)
);

-- One row per customer and showtime, locked while a hold is placed, so two
-- concurrent holds of one customer cannot both slip under the limit.
create table if not exists showtime_customers (
    showtime_id uuid not null references showtimes (id),
    customer text not null,
    movie_id uuid not null,
    primary key (showtime_id, customer)
);

create table if not exists holds (
    id uuid primary key,
    showtime_id uuid not null references showtimes (id),
    movie_id uuid not null,
    customer text not null,
    -- SHA-256 of the booking token handed to the customer; the token itself
    -- is never stored.
    token_hash bytea not null,
    seats text[] not null,
    -- Minor units per seat, in the order of `seats`, fixed when held.
    prices bigint[] not null,
    currency char(3) not null,
    status text not null check (status in ('active', 'ordering', 'ordered', 'released', 'expired')),
    expires_at timestamptz not null,
    extended boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index if not exists holds_customer on holds (showtime_id, customer)
    where status in ('active', 'ordering');
create index if not exists holds_movie on holds (movie_id);

create table if not exists orders (
    id uuid primary key,
    hold_id uuid not null references holds (id),
    showtime_id uuid not null references showtimes (id),
    movie_id uuid not null,
    customer text not null,
    token_hash bytea not null,
    seats text[] not null,
    amount bigint not null check (amount >= 0),
    currency char(3) not null,
    status text not null check (status in ('pending', 'confirmed', 'failed', 'cancelled')),
    payment_method text not null,
    provider text not null,
    -- The provider's authorization, once it exists.
    payment_ref text,
    refunded bigint not null default 0 check (refunded >= 0),
    failure text,
    created_at timestamptz not null default now(),
    confirmed_at timestamptz,
    updated_at timestamptz not null default now()
);

-- A hold turns into at most one live order; failed ones stay for the record.
create unique index if not exists orders_live_hold on orders (hold_id)
    where status in ('pending', 'confirmed', 'cancelled');
create index if not exists orders_pending on orders (updated_at) where status = 'pending';
create index if not exists orders_movie on orders (movie_id);

create table if not exists tickets (
    id uuid primary key,
    order_id uuid not null references orders (id),
    showtime_id uuid not null,
    movie_id uuid not null,
    seat text not null,
    price bigint not null,
    -- The QR payload, signed by the server.
    code text not null,
    status text not null check (status in ('valid', 'cancelled')),
    refunded bigint not null default 0,
    created_at timestamptz not null default now()
);

create index if not exists tickets_order on tickets (order_id);
create index if not exists tickets_movie on tickets (movie_id);
create unique index if not exists tickets_valid_seat on tickets (showtime_id, seat)
    where status = 'valid';

-- Every money movement asked of the provider. An authorization is written,
-- pending, with its order before the call and settled when the order is
-- confirmed, together with the capture; a crash in between is settled by
-- looking the payment up at the provider. Refunds are written pending
-- before the call and retried until the provider confirms them.
create table if not exists payments (
    id uuid primary key,
    order_id uuid not null references orders (id),
    movie_id uuid not null,
    kind text not null check (kind in ('authorization', 'capture', 'void', 'refund')),
    amount bigint not null,
    status text not null check (status in ('pending', 'succeeded', 'failed')),
    provider_ref text,
    detail text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index if not exists payments_order on payments (order_id);
create index if not exists payments_pending on payments (created_at) where status = 'pending';
create index if not exists payments_movie on payments (movie_id);

-- Idempotency keys of order requests, in the same shard and transaction as
-- the order they created.
create table if not exists idempotency_keys (
    key text primary key,
    movie_id uuid not null,
    request_hash bytea not null,
    order_id uuid not null,
    state text not null check (state in ('in_flight', 'done')),
    response_status integer,
    response jsonb,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index if not exists idempotency_keys_movie on idempotency_keys (movie_id);
