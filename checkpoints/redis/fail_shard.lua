-- End a shard as failed, fenced by its token. KEYS: shard, job failed. ARGV: token, index, reason.
local s = redis.call('HMGET', KEYS[1], 'token', 'done')
if s[1] ~= ARGV[1] or s[2] == '1' then return 0 end
redis.call('HSET', KEYS[1], 'failed', ARGV[3], 'owner', '', 'lease_until', 0)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
