-- ARGV: node, the highest change number the node has seen, then room1, peer1, room2, peer2...:
-- every peer the node holds. Makes the store agree (after a Redis restart, a lapsed lease or a
-- lost subscription): what the node no longer holds leaves, what it holds arrives unless a live
-- node holds that id now (a conflict). The change counter never goes back.
-- Returns {seq, {conflict room, peer, ...}, {room, {peer, node, ...}, ...}}.
local node = ARGV[1]
local seen = tonumber(ARGV[2])
if tonumber(redis.call('GET', P .. 'seq') or '0') < seen then
  redis.call('SET', P .. 'seq', seen)
end
local want = {}
for i = 3, #ARGV, 2 do
  want[ARGV[i] .. '\n' .. ARGV[i + 1]] = true
end
for _, m in ipairs(redis.call('SMEMBERS', P .. 'held:' .. node)) do
  if not want[m] then
    local room, peer = split(m)
    depart(room, peer, node)
  end
end
local conflicts = {}
local rooms = {}
for i = 3, #ARGV, 2 do
  local room, peer = ARGV[i], ARGV[i + 1]
  local owner = redis.call('HGET', P .. 'room:' .. room, peer)
  if owner ~= node then
    if owner and alive(owner) then
      conflicts[#conflicts + 1] = room
      conflicts[#conflicts + 1] = peer
    else
      if owner then
        redis.call('SREM', P .. 'held:' .. owner, room .. '\n' .. peer)
      end
      arrive(room, peer, node)
    end
  end
  rooms[room] = true
end
local snaps = {}
for room, _ in pairs(rooms) do
  snaps[#snaps + 1] = room
  snaps[#snaps + 1] = redis.call('HGETALL', P .. 'room:' .. room)
end
return {tonumber(redis.call('GET', P .. 'seq') or '0'), conflicts, snaps}
