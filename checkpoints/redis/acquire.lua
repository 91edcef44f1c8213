-- Lease a shard. KEYS: shard, job. ARGV: owner, ttl_s, token.
-- Returns takeovers, or nil while another lease runs.
-- A takeover adds what the dead holder had labelled and not committed (its last beat) to the job's redone.
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
local s = redis.call('HMGET', KEYS[1], 'owner', 'lease_until', 'takeovers', 'alive_until')
local holder = s[1] or ''
local alive = tonumber(s[2] or '0') > now and (not s[4] or tonumber(s[4]) > now)
if holder ~= '' and holder ~= ARGV[1] and alive then return false end
local takeovers = tonumber(s[3] or '0')
if holder ~= '' and holder ~= ARGV[1] then
  takeovers = redis.call('HINCRBY', KEYS[1], 'takeovers', 1)
  redis.call('HINCRBY', KEYS[2], 'takeovers', 1)
  redis.call('HINCRBY', KEYS[2], 'redone', tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0'))
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', ARGV[3], 'lease_until', now + tonumber(ARGV[2]), 'inflight', 0)
redis.call('HDEL', KEYS[1], 'alive_until')  -- the new holder's own beats set it
redis.call('HSETNX', KEYS[2], 'started_at', now)
return takeovers
