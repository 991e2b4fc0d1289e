-- Accounts and everything scoped to one user live on the node that owns the
-- user's id. Personal data sits in `users` alone, so erasing an account is
-- one update; what other rows keep is the id, which then names nobody.
create table if not exists users (
    id uuid primary key,
    -- Lower-cased; null once the account is erased.
    email text,
    email_verified_at timestamptz,
    name text,
    -- argon2id in PHC format.
    password_hash text,
    role text not null default 'customer' check (role in ('customer', 'support', 'admin')),
    -- A confirmed second factor, and one being enrolled.
    totp_secret bytea,
    totp_pending bytea,
    -- The last accepted time step, so a code cannot be replayed.
    totp_last_step bigint,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    deleted_at timestamptz
);

-- The email index, partitioned by the address rather than the user: a row
-- lives on the node that owns hash(email). Rows left behind by a crash in
-- the middle of a change are recognised (the user's address differs) and
-- reclaimed.
create table if not exists user_emails (
    email text primary key,
    user_id uuid not null,
    created_at timestamptz not null default now()
);

-- One per signed-in device. Ids are scoped to the user, so a refresh token
-- routes to its node on its own.
create table if not exists sessions (
    id uuid primary key,
    user_id uuid not null,
    -- SHA-256 of the current refresh secret, and of the one it replaced:
    -- presenting the replaced one again means the token was copied.
    refresh_hash bytea not null,
    previous_hash bytea,
    mfa boolean not null,
    user_agent text,
    ip text,
    created_at timestamptz not null default now(),
    last_used_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz
);
create index if not exists sessions_user on sessions (user_id) where revoked_at is null;

-- One-time secrets mailed to the user: address verification, password
-- reset, a change of address.
create table if not exists user_tokens (
    id uuid primary key,
    user_id uuid not null,
    purpose text not null check (purpose in ('verify_email', 'reset_password', 'change_email')),
    secret_hash bytea not null,
    new_email text,
    expires_at timestamptz not null,
    used_at timestamptz,
    created_at timestamptz not null default now()
);
create index if not exists user_tokens_user on user_tokens (user_id);

-- The user's bookings index: the holds a signed-in user placed, each
-- pointing at the movie shard that has the hold and its order. Written
-- before an order is opened, so no order of a user is missing from it.
create table if not exists user_bookings (
    user_id uuid not null,
    hold_id uuid not null,
    showtime_id uuid not null,
    created_at timestamptz not null default now(),
    primary key (user_id, hold_id)
);
