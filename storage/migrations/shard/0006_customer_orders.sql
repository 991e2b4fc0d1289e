-- The per-customer seat limit counts a customer's orders for a showtime on
-- every hold; without this it read every ticket of a busy showtime.
create index if not exists orders_customer on orders (showtime_id, customer)
    where status = 'confirmed';
