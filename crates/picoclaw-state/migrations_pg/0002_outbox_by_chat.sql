-- See ../migrations/0006_outbox_by_chat.sql.
CREATE INDEX outbox_by_chat ON outbox (channel, chat_id, id);
