-- The shard map's version. Every change to placement (a node registered,
-- reweighted, drained) bumps it in the same transaction, so an instance can
-- tell that the map it routes by is stale.
create table if not exists shard_map (
    singleton boolean primary key default true check (singleton),
    version bigint not null check (version >= 1),
    changed_at timestamptz not null default now()
);

insert into shard_map (singleton, version) values (true, 1) on conflict (singleton) do nothing;
