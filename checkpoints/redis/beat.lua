-- A worker's heartbeat, with the lease it keeps alive. KEYS: workers, job ('' if none), shard ('' if none),
-- workers sweep. ARGV: owner, info JSON, ttl_s, token.
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
local info = cjson.decode(ARGV[2])
info['seen_at'] = now
info['alive_until'] = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(info))
redis.call('ZADD', KEYS[4], info['alive_until'], ARGV[1])
-- Only a job the store knows: after Redis lost its data, a beat must not recreate half a job.
if KEYS[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'seen_at', now) end
if KEYS[3] ~= '' and redis.call('HGET', KEYS[3], 'token') == ARGV[4] then
  redis.call('HSET', KEYS[3], 'alive_until', now + tonumber(ARGV[3]), 'inflight', tonumber(info['labelled'] or 0))
end
