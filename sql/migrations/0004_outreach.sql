-- Outreach (issue 3): what the outbox needs beyond the shared shape of 0002, clicks on tracked links,
-- and consumed one-time tokens so that a replayed unsubscribe link changes nothing.

-- An incentive offered in a message is offered to every recipient of that kind alike (never by rating);
-- reviews answering such a message are flagged incentivised by the responses stage.
alter table smarketing.outreach_messages
    add column incentive_offered boolean not null default false,
    add column recipient_time_zone text,
    add column lease_expires_at timestamptz;

-- Sending claims due messages by status and due time; reminders look up sent requests by order.
create index outreach_messages_kind_order_idx on smarketing.outreach_messages (order_id, kind, status);
create index outreach_messages_customer_due_idx on smarketing.outreach_messages (customer_id, due_at);

-- One row per first click on a tracked review or share link (later clicks of the same link still
-- redirect but record nothing new), attributed to the message that carried the link.
create table smarketing.link_clicks (
    token_hash   text primary key,                 -- sha256 of the token: a replay is a conflict, not a new row
    message_id   text not null,
    purpose      text not null check (purpose in ('review', 'share', 'unsubscribe')),
    customer_id  text,
    clicked_at   timestamptz not null,
    user_agent   text
);
create index link_clicks_message_idx on smarketing.link_clicks (message_id);

-- Tokens that act once (unsubscribe): consumed here in the same transaction as their effect.
create table smarketing.link_consumptions (
    token_hash   text primary key,
    message_id   text not null,
    purpose      text not null,
    consumed_at  timestamptz not null,
    outcome      text not null
);
