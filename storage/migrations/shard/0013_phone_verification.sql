-- A phone number receives texts only once its owner has typed back a code
-- sent to it: anyone can type someone else's number. The number being
-- confirmed waits in `phone_pending` with the code's hash until then.
alter table users add column if not exists phone_verified_at timestamptz;
alter table users add column if not exists phone_pending text;
alter table users add column if not exists phone_code_hash bytea;
alter table users add column if not exists phone_code_sent_at timestamptz;
alter table users add column if not exists phone_code_attempts integer not null default 0;
