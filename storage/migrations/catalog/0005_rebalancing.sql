-- Set while a rebalance moves data. Creating a movie holds a share lock on
-- the map row and refuses while this is set, so no movie is created on a
-- node that a running rebalance has already scanned.
alter table shard_map add column if not exists rebalancing boolean not null default false;
