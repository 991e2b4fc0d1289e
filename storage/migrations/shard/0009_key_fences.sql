-- A key fence marks a theater, an account or an email index entry whose
-- rows moved off this node during a rebalance, by routing hash, which the
-- ids of sessions and mailed tokens carry too. Writes for a fenced key are
-- refused here and reads that find one retry, both under a reloaded map,
-- so a request routed by a stale map is never answered from or applied to
-- the wrong node. A key that later moves back lifts its fence on arrival.
create table if not exists key_fences (
    hash bigint primary key,
    moved_to text not null,
    fenced_at timestamptz not null default now()
);
