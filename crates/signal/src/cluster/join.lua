-- ARGV: room, peer, node, peers_per_room (0: no limit), max_rooms (0: no limit)
-- Returns {'ok', seq, peer1, node1, ...} (the room after the join) or {'taken'|'room-full'|'server-full'}.
local room, peer, node = ARGV[1], ARGV[2], ARGV[3]
local key = P .. 'room:' .. room
local owner = redis.call('HGET', key, peer)
if owner then
  if owner == node or alive(owner) then
    return {'taken'}
  end
  -- Its node's lease ran out before the reaper came: the peer reconnected through `node`.
  redis.call('SREM', P .. 'held:' .. owner, room .. '\n' .. peer)
else
  local n = redis.call('HLEN', key)
  if n == 0 then
    local max = tonumber(ARGV[5])
    if max > 0 and redis.call('SCARD', P .. 'rooms') >= max then
      return {'server-full'}
    end
  else
    local max = tonumber(ARGV[4])
    if max > 0 and n >= max then
      return {'room-full'}
    end
  end
end
local seq = arrive(room, peer, node)
local r = {'ok', seq}
local all = redis.call('HGETALL', key)
for i = 1, #all do
  r[#r + 1] = all[i]
end
return r
