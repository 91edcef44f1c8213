-- Count a ledger event of a job the store knows. KEYS: job. ARGV: field.
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], ARGV[1], 1) end
