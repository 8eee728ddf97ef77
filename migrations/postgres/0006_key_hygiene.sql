-- Key hygiene (issue 7): per-key allowed source networks and the last recorded use.

-- JSON array of CIDR strings the key may be used from; NULL = anywhere.
ALTER TABLE api_keys ADD COLUMN allowed_networks TEXT;
-- Unix seconds of the last recorded use (flushed in batches, so a few seconds behind).
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
