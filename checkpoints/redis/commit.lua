-- Move a shard's checkpoint, fenced by its token. KEYS: shard, job, job parts, shard parts, job timeline,
-- job machines, job seconds, job errors. ARGV: token, offset, ok, errors, part, done, ttl_s, machine ('' for
-- no usage), busy_s, seconds_kept, whole ('1': the part replaces the shard's earlier ones), then (kind, count,
-- example) for each kind of this commit's errors.
-- record_usage: usage.lua, loaded in front of this script.
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
-- A part's name carries the holder's token and range: listed already, this very commit went through
-- and its reply was lost (the store went away); a retry must not count it twice.
if ARGV[5] ~= '' and redis.call('SISMEMBER', KEYS[3], ARGV[5]) == 1 then return 1 end
local s = redis.call('HMGET', KEYS[1], 'token', 'done', 'offset')
if s[1] ~= ARGV[1] or s[2] == '1' then return 0 end
-- A failed job stopped (early, or its model cannot run): its summary lists what it had; nothing more counts.
if redis.call('HGET', KEYS[2], 'state') == 'failed' then return 0 end
if tonumber(ARGV[2]) > tonumber(s[3] or '0') then redis.call('HSET', KEYS[1], 'takeovers', 0) end
redis.call('HSET', KEYS[1], 'offset', ARGV[2], 'lease_until', now + tonumber(ARGV[7]), 'inflight', 0)
redis.call('HINCRBY', KEYS[1], 'ok', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'errors', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'ok', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'errors', ARGV[4])
redis.call('HSET', KEYS[2], 'updated_at', now)
if ARGV[11] == '1' then
  for _, earlier in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do redis.call('SREM', KEYS[3], earlier) end
  redis.call('DEL', KEYS[4])
end
if ARGV[5] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[5])
  redis.call('RPUSH', KEYS[4], ARGV[5])
end
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], 'done', '1', 'owner', '', 'lease_until', 0)
  redis.call('HINCRBY', KEYS[2], 'shards_done', 1)
end
for i = 12, #ARGV, 3 do
  redis.call('HINCRBY', KEYS[8], ARGV[i], ARGV[i + 1])
  redis.call('HSETNX', KEYS[8], ARGV[i] .. '|example', ARGV[i + 2])
end
if ARGV[8] ~= '' then
  record_usage(KEYS[5], KEYS[7], KEYS[6], ARGV[8], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[9], now,
               tonumber(ARGV[10]))
end
return 1
