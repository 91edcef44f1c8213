-- Claim a dead holder for a sweep. KEYS: workers, workers sweep, shard ('' if none). ARGV: owner, token, grace_s.
-- Returns 1 when the caller is to offer the shard again (claimed for grace_s).
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not at or tonumber(at) > now then return 0 end
if KEYS[3] ~= '' then
  local s = redis.call('HMGET', KEYS[3], 'owner', 'token')
  if s[1] == ARGV[1] and s[2] == ARGV[2] then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
    return 1
  end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 0
