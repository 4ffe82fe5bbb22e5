-- POST /api/v1/orders for wrk: one line of a random product per order, each request with
-- an Idempotency-Key of its own. Skus come from the file named by BENCH_SKUS (one a
-- line); BENCH_RUN makes the keys unique across runs.
local skus = {}
for line in io.lines(os.getenv("BENCH_SKUS")) do
  if #line > 0 then skus[#skus + 1] = line end
end
local run = os.getenv("BENCH_RUN") or tostring(os.time())
local thread_no = 0
local count = 0

function setup(thread)
  thread_no = thread_no + 1
  thread:set("thread_no", thread_no)
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_no)
end

function request()
  count = count + 1
  local sku = skus[math.random(#skus)]
  local body = '{"email":"bench@example.com","lines":[{"sku":"' .. sku .. '","quantity":1}]}'
  local headers = {
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = run .. "-" .. thread_no .. "-" .. count,
  }
  return wrk.format("POST", nil, headers, body)
end
