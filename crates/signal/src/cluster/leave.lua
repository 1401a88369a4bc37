-- ARGV: room, peer, node. Returns 1 if the store had the peer on that node.
return depart(ARGV[1], ARGV[2], ARGV[3])
