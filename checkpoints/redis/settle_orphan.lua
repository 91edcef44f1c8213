-- A dead holder's shard was offered again: drop its record, unless it beat again. KEYS: workers, workers sweep.
-- ARGV: owner.
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw and tonumber(cjson.decode(raw)['alive_until']) > now then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
