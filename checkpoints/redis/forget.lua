-- A worker is gone. KEYS: workers, shard ('' if none), workers sweep. ARGV: owner, token, its record lapsed.
-- A shard still leased to it keeps the record, lapsed, so that a sweep offers the shard again.
local held = false
if KEYS[2] ~= '' then
  local s = redis.call('HMGET', KEYS[2], 'token', 'owner')
  if s[1] == ARGV[2] then redis.call('HSET', KEYS[2], 'alive_until', 0) end
  held = s[1] == ARGV[2] and s[2] == ARGV[1]
end
if held then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
