-- The run ledger's part of a fenced commit: loaded in front of commit.lua, so it runs in the commit's
-- own script (one atomic step). The images of this minute and of this second (a new second only while
-- the job has fewer than seconds_kept), and the machine's images and busy seconds.
local function record_usage(timeline, seconds, machines, machine, images, busy_s, now, seconds_kept)
  redis.call('HINCRBY', timeline, tostring(math.floor(now / 60) * 60), images)
  local second = tostring(math.floor(now))
  if redis.call('HLEN', seconds) < seconds_kept or redis.call('HEXISTS', seconds, second) == 1 then
    redis.call('HINCRBY', seconds, second, images)
  end
  redis.call('HINCRBY', machines, machine .. '|images', images)
  redis.call('HINCRBYFLOAT', machines, machine .. '|busy_s', busy_s)
  local first = now - tonumber(busy_s)
  local had = redis.call('HGET', machines, machine .. '|first_at')
  if not had or first < tonumber(had) then redis.call('HSET', machines, machine .. '|first_at', first) end
  redis.call('HSET', machines, machine .. '|last_at', now)
end
