-- One relay per shard publishes the outbox to the broker, whichever
-- instance holds this lease; it renews it while it works, and another
-- instance takes over once it lapses.
create table if not exists relay_lease (
    name text primary key,
    holder uuid not null,
    expires_at timestamptz not null
);

-- What the relay has yet to publish, in order.
create index if not exists outbox_unpublished on outbox (seq) where published_at is null;
create index if not exists outbox_published on outbox (published_at) where published_at is not null;
