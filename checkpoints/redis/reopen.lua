-- Clear a shard's failure. KEYS: shard, job failed. ARGV: index. Returns 1 if the shard had failed.
if not redis.call('HGET', KEYS[1], 'failed') then return 0 end
redis.call('HDEL', KEYS[1], 'failed')
redis.call('HSET', KEYS[1], 'takeovers', 0)
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
