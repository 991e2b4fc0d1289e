-- A fence marks a movie whose data is moving or has moved off this node.
-- Writes for a fenced movie are refused here, so a request routed by a
-- stale shard map is never applied on the wrong node; the caller reloads
-- the map and retries where the movie now lives.
create table if not exists movie_fences (
    movie_id uuid primary key,
    moved_to text not null,
    fenced_at timestamptz not null default now()
);
