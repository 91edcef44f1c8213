-- The run ledger's part of a fenced commit: loaded in front of commit.lua, so it runs in the commit's
-- own script (one atomic step). The images of this minute, and the machine's images and busy seconds.
local function record_usage(timeline, machines, machine, images, busy_s, now)
  redis.call('HINCRBY', timeline, tostring(math.floor(now / 60) * 60), images)
  redis.call('HINCRBY', machines, machine .. '|images', images)
  redis.call('HINCRBYFLOAT', machines, machine .. '|busy_s', busy_s)
  local first = now - tonumber(busy_s)
  local had = redis.call('HGET', machines, machine .. '|first_at')
  if not had or first < tonumber(had) then redis.call('HSET', machines, machine .. '|first_at', first) end
  redis.call('HSET', machines, machine .. '|last_at', now)
end
