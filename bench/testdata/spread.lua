-- make bench: round-robin over COUNT distinct URLs, BASE1 … BASE<COUNT>
-- (wrk -s spread.lua URL -- COUNT BASE). Each thread starts at its own
-- offset and cycles through every URL, so each one is asked for about as
-- often as any other. The requests are formatted once, in init: a run over
-- one URL and a run over 10,000 cost wrk the same per request. The harness
-- appends its summary hook (done) to this file.
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  count = tonumber(args[1]) or 1
  local base = args[2] or "/cached/"
  reqs = {}
  for i = 1, count do
    reqs[i] = wrk.format("GET", base .. i)
  end
  n = ((tid or 0) * 7919) % count
end

function request()
  n = n % count + 1
  return reqs[n]
end
