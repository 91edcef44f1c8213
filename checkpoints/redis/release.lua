-- Hand a lease back. KEYS: shard. ARGV: token.
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'owner', '', 'lease_until', 0, 'inflight', 0)
end
return 1
