-- Keys held where their data is when a rebalance changes their owner:
-- theaters, accounts and email index entries, which a rebalance does not
-- move (movies move). Keyed by the routing hash, like the routing itself,
-- so children whose ids carry the hash follow their parent's pin.
create table if not exists route_pins (
    hash bigint primary key,
    node text not null references shard_nodes (name),
    kind text not null check (kind in ('theater', 'user', 'email')),
    created_at timestamptz not null default now()
);
