-- Movies pinned to a node other than the one their id hashes to: hot movies
-- on dedicated nodes. Part of the shard map: changing a row bumps its version.
create table if not exists movie_overrides (
    movie_id uuid primary key,
    node text not null references shard_nodes (name),
    updated_at timestamptz not null default now()
);

-- Moves of one movie's data between nodes, as a resumable state machine:
-- copying -> fenced -> cut_over -> done, or rolled_back before cut-over.
create table if not exists shard_moves (
    id uuid primary key,
    movie_id uuid not null,
    source text not null,
    target text not null,
    state text not null check (state in ('copying', 'fenced', 'cut_over', 'done', 'rolled_back')),
    started_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- One move at a time per movie.
create unique index if not exists shard_moves_one_active_per_movie
    on shard_moves (movie_id) where state in ('copying', 'fenced', 'cut_over');
