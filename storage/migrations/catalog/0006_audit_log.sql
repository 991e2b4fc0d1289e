-- Security-relevant and administrative actions: who, what, when, from where.
-- Rows are only ever inserted; ids are UUIDv7, so they sort by time.
create table if not exists audit_log (
    id uuid primary key,
    at timestamptz not null default now(),
    actor_id uuid,
    -- `customer`, `support`, `admin`, `operator` (the configured token) or
    -- `anonymous`.
    actor_role text not null,
    action text not null,
    target text,
    outcome text not null check (outcome in ('success', 'failure', 'denied')),
    ip text,
    request_id text,
    detail jsonb not null default '{}'
);
create index if not exists audit_log_actor on audit_log (actor_id, at desc);
create index if not exists audit_log_action on audit_log (action, at desc);
