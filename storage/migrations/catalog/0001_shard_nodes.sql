-- The node registry: which shard nodes take part in placement, and with what
-- weight. Connection details stay in configuration; the catalog says only
-- where data lives, so every API instance routes identically.
create table if not exists shard_nodes (
    name text primary key,
    weight integer not null default 1 check (weight >= 0),
    state text not null default 'active' check (state in ('active', 'draining', 'down')),
    added_at timestamptz not null default now()
);
