-- ARGV: node, lease in ms. Returns 1 if the lease had run out (or never existed): what the
-- store held for the node may have been reaped, and the node must resync.
local key = P .. 'alive:' .. ARGV[1]
local lapsed = redis.call('EXISTS', key) == 0
redis.call('SET', key, '1', 'PX', ARGV[2])
redis.call('SADD', P .. 'nodes', ARGV[1])
if lapsed then
  return 1
end
return 0
