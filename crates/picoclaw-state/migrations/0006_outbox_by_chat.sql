-- The outbox hands out one chat's messages in order: the claim looks for an older undelivered
-- message to the same chat, which this index answers without a scan.
CREATE INDEX outbox_by_chat ON outbox (channel, chat_id, id);
