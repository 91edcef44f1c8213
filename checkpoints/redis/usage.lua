-- The run ledger's part of a fenced commit: loaded in front of commit.lua, so it runs in the commit's
-- own script (one atomic step). The images of this minute; the same images spread evenly over the
-- seconds they took to label (busy_s up to now), a new second only while the job has fewer than
-- seconds_kept; and the machine's images and busy seconds.
local function spread_seconds(seconds, images, from, to, seconds_kept)
  local first, last = math.floor(from), math.floor(to)
  local n = last - first + 1
  if n > seconds_kept then return end  -- more seconds than are kept: the report draws this job by the minute
  local room = seconds_kept - redis.call('HLEN', seconds)
  for i = 0, n - 1 do
    local share = math.floor((i + 1) * images / n) - math.floor(i * images / n)
    local second = tostring(first + i)
    if share > 0 then
      local had = redis.call('HEXISTS', seconds, second) == 1
      if had or room > 0 then
        redis.call('HINCRBY', seconds, second, share)
        if not had then room = room - 1 end
      end
    end
  end
end

local function record_usage(timeline, seconds, machines, machine, images, busy_s, now, seconds_kept)
  redis.call('HINCRBY', timeline, tostring(math.floor(now / 60) * 60), images)
  local first = now - tonumber(busy_s)
  spread_seconds(seconds, images, first, now, seconds_kept)
  redis.call('HINCRBY', machines, machine .. '|images', images)
  redis.call('HINCRBYFLOAT', machines, machine .. '|busy_s', busy_s)
  local had = redis.call('HGET', machines, machine .. '|first_at')
  if not had or first < tonumber(had) then redis.call('HSET', machines, machine .. '|first_at', first) end
  redis.call('HSET', machines, machine .. '|last_at', now)
end
