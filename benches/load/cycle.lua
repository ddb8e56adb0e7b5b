-- wrk script: cycle through a list of Cookie header values, one per request.
-- Usage: wrk ... -s cycle.lua -- <file with one Cookie value per line>
-- All requests are formatted once in init(), so request() only returns a prebuilt string and
-- wrk spends no extra CPU per request on Lua string building (wrk shares the cores with the proxy).
local reqs = {}
local n = 0
local count = 0

function init(args)
  local path = args[1]
  local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in f:lines() do
    if #line > 0 then
      count = count + 1
      reqs[count] = wrk.format("GET", "/", { ["Cookie"] = line })
    end
  end
  f:close()
  assert(count > 0, "no cookie values in " .. path)
end

function request()
  n = n + 1
  if n > count then n = 1 end
  return reqs[n]
end
