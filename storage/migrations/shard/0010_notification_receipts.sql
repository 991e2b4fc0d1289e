-- What the notification service has sent for each event of this node's
-- outbox, by sequence number and channel. Events arrive at least once
-- (after a consumer crash, or republished after the broker lost them); a
-- redelivered event finds its receipt here and sends nothing again.
create table if not exists notification_receipts (
    seq bigint not null,
    channel text not null check (length(channel) between 1 and 40),
    -- `sending` while a delivery is under way; `sent` once the channel took
    -- it. A `sending` receipt older than the claim timeout belongs to a
    -- consumer that died mid-send, and may be claimed again.
    state text not null check (state in ('sending', 'sent')),
    claimed_at timestamptz not null default now(),
    sent_at timestamptz,
    primary key (seq, channel)
);
