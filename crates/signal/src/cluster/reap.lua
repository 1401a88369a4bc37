-- ARGV: node. If its lease ran out and no other node reaped it yet, its peers leave their
-- rooms (announced to the nodes still there). Returns how many it held, or -1.
local dead = ARGV[1]
if alive(dead) or redis.call('SREM', P .. 'nodes', dead) == 0 then
  return -1
end
local held = redis.call('SMEMBERS', P .. 'held:' .. dead)
for _, m in ipairs(held) do
  local room, peer = split(m)
  depart(room, peer, dead)
end
redis.call('DEL', P .. 'held:' .. dead)
return #held
