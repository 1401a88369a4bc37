-- natkit cluster store: shared by every script (prepended to each). Keys (docs/cluster.md):
--   natkit:room:ROOM   hash  peer id -> node holding it
--   natkit:rooms       set   rooms with at least one peer (the max_rooms count)
--   natkit:held:NODE   set   "ROOM\nPEER" held by NODE (what a reaper removes)
--   natkit:alive:NODE  string with the node's lease as its expiry
--   natkit:nodes       set   nodes that registered and have not been reaped
--   natkit:seq         counter: the number of every membership change
-- Channel natkit:inbox:NODE carries frames to NODE (crates/signal/src/cluster.rs).
local P = 'natkit:'

local function alive(node)
  return redis.call('EXISTS', P .. 'alive:' .. node) == 1
end

-- Publishes `frame` to every node with a peer in `room` but `skip`.
local function tell(room, frame, skip)
  local all = redis.call('HGETALL', P .. 'room:' .. room)
  local told = {}
  for i = 2, #all, 2 do
    local n = all[i]
    if n ~= skip and not told[n] then
      told[n] = true
      redis.call('PUBLISH', P .. 'inbox:' .. n, frame)
    end
  end
end

-- `peer` of `room`, held by `node`, is gone: forget it and tell the room's other nodes.
local function depart(room, peer, node)
  local key = P .. 'room:' .. room
  redis.call('SREM', P .. 'held:' .. node, room .. '\n' .. peer)
  if redis.call('HGET', key, peer) ~= node then
    return 0
  end
  redis.call('HDEL', key, peer)
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', P .. 'rooms', room)
    return 1
  end
  local seq = redis.call('INCR', P .. 'seq')
  tell(room, 'l\n' .. room .. '\n' .. peer .. '\n' .. seq, node)
  return 1
end

-- `peer` of `room` is held by `node` from now on; the room's other nodes hear of it.
local function arrive(room, peer, node)
  redis.call('HSET', P .. 'room:' .. room, peer, node)
  redis.call('SADD', P .. 'rooms', room)
  redis.call('SADD', P .. 'held:' .. node, room .. '\n' .. peer)
  local seq = redis.call('INCR', P .. 'seq')
  tell(room, 'j\n' .. room .. '\n' .. peer .. '\n' .. node .. '\n' .. seq, node)
  return seq
end

local function split(member)
  local nl = string.find(member, '\n', 1, true)
  return string.sub(member, 1, nl - 1), string.sub(member, nl + 1)
end
