-- The usage ledger keeps the completion tokens each call spent reasoning (part of
-- completion_tokens, as OpenAI counts them). Rows recorded before this count none.
ALTER TABLE usage ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
