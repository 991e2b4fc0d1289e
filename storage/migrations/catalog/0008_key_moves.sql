-- A batch of theaters, accounts and email index entries a rebalance moves
-- from one node to another. `moving`: the source fenced the keys and the
-- target may hold part of a copy; `cut_over`: the keys are pinned to the
-- target (in `route_pins`, until the rebalance's switch makes the target
-- their natural owner) and the source's copy awaits deletion. A crash
-- leaves the batch in its state: a moving batch is rolled back, a cut-over
-- one finished.
create table if not exists key_moves (
    id uuid primary key,
    source text not null references shard_nodes (name),
    target text not null references shard_nodes (name),
    theaters uuid[] not null,
    users uuid[] not null,
    emails text[] not null,
    state text not null check (state in ('moving', 'cut_over', 'done', 'rolled_back')),
    started_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index if not exists key_moves_open on key_moves (started_at)
    where state in ('moving', 'cut_over');

-- The running rebalance's last sign of life: a flag whose rebalance stopped
-- beating (its process died) is cleared when an instance starts, leaving
-- the old registry in force with everything moved so far pinned where its
-- data is.
alter table shard_map add column if not exists rebalance_heartbeat timestamptz;
