-- Holds remember who asked for them beyond the typed address (the client's
-- address and device, as keyed hashes), so that what they counted against
-- is freed when they end.
alter table holds add column if not exists claimants text[] not null default '{}';

-- The provider's fingerprint of the card that paid (never card data), so a
-- card buys no more seats of a showtime than one customer may.
alter table orders add column if not exists card_fingerprint text;
create index if not exists orders_card on orders (showtime_id, card_fingerprint)
    where card_fingerprint is not null and status = 'confirmed';

-- A stale pending order is settled by one instance at a time: it claims the
-- order until `recovery_until`, and another may take over only after.
alter table orders add column if not exists recovery_owner uuid;
alter table orders add column if not exists recovery_until timestamptz;
