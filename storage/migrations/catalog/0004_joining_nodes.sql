-- A node added to an existing cluster joins without taking keys: it owns
-- nothing until a rebalance makes it active and moves its share onto it.
-- Only the very first nodes of a new cluster start active.
alter table shard_nodes drop constraint if exists shard_nodes_state_check;
alter table shard_nodes add constraint shard_nodes_state_check
    check (state in ('joining', 'active', 'draining', 'down'));
