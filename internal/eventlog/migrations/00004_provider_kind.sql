-- +goose Up
-- What a provider is: '' (OpenAI-compatible, one key for every agent) or
-- 'litellm' (a LiteLLM proxy: each agent has its own virtual key, and its
-- permitted models are what that key may access).
ALTER TABLE providers ADD COLUMN kind TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE providers DROP COLUMN kind;
