// SPDX-License-Identifier: MIT OR GPL-2.0
//
// natkit-relay's kernel path: a TC ingress program that relays ChannelData between UDP clients
// and the peers their channels are bound to, both ways, without waking the relay. The relay
// writes one entry per direction of each live channel binding into `chan_in` and `chan_out`
// (with the instant it stops being valid) and removes it when the binding, its permission or the
// allocation ends; everything the maps do not describe exactly goes on to the relay's sockets
// (PASS) untouched: STUN messages, Send and Data indications, padded ChannelData, IP options
// and fragments, GSO packets, datagrams without a UDP checksum or with checksum offload pending,
// destinations that are local or unreachable or would need fragmenting, expired entries.
//
// The source is dual licensed so that the kernel lets it call GPL-only helpers (bpf_fib_lookup).
// Built by build.rs with `clang -O2 -g -target bpf`; needs only the kernel's UAPI headers.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define ALWAYS static __attribute__((always_inline)) inline

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static long (*bpf_skb_store_bytes)(struct __sk_buff *skb, __u32 off, const void *from, __u32 len,
                                   __u64 flags) = (void *)BPF_FUNC_skb_store_bytes;
static long (*bpf_skb_adjust_room)(struct __sk_buff *skb, __s32 diff, __u32 mode,
                                   __u64 flags) = (void *)BPF_FUNC_skb_adjust_room;
static long (*bpf_skb_pull_data)(struct __sk_buff *skb, __u32 len) = (void *)BPF_FUNC_skb_pull_data;
static long (*bpf_l4_csum_replace)(struct __sk_buff *skb, __u32 off, __u64 from, __u64 to,
                                   __u64 flags) = (void *)BPF_FUNC_l4_csum_replace;
static long (*bpf_fib_lookup)(void *ctx, struct bpf_fib_lookup *params, int plen,
                              __u32 flags) = (void *)BPF_FUNC_fib_lookup;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;
static long (*bpf_redirect_neigh)(__u32 ifindex, struct bpf_redir_neigh *params, int plen,
                                  __u64 flags) = (void *)BPF_FUNC_redirect_neigh;
static long (*bpf_check_mtu)(void *ctx, __u32 ifindex, __u32 *mtu_len, __s32 len_diff,
                             __u64 flags) = (void *)BPF_FUNC_check_mtu;

// Addresses and ports in network byte order, as in the packet; padding zero.
struct in_key {
	__u32 client_ip;
	__u32 server_ip;
	__u16 client_port;
	__u16 server_port;
	__u16 channel;
	__u16 pad;
};

struct in_val {
	__u32 relay_ip;
	__u32 peer_ip;
	__u16 relay_port;
	__u16 peer_port;
	__u32 pad;
	__u64 expires_ns; // CLOCK_MONOTONIC
};

struct out_key {
	__u32 peer_ip;
	__u32 relay_ip;
	__u16 peer_port;
	__u16 relay_port;
};

// The client's side of the channel, as chan_in's key names it.
struct out_val {
	struct in_key to;
	__u64 expires_ns;
};

// Counters, per CPU; the relay sums them into its Prometheus metrics.
enum {
	TO_PEER_PACKETS,
	TO_PEER_BYTES,
	TO_CLIENT_PACKETS,
	TO_CLIENT_BYTES,
	PASS_EXPIRED,  // an entry matched after its time: the relay decides
	PASS_ROUTE,    // no route out (local, unreachable) or too big for the interface
	PASS_CHECKSUM, // no UDP checksum, or checksum offload pending (a local sender)
	COUNTERS,
};

struct stats {
	__u64 n[COUNTERS];
};

// The channel maps: 65,536 entries each, allocated as the relay adds them.
#define CHANNEL_MAP(name, k, v)                                                                    \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_HASH);                                                   \
		__uint(max_entries, 65536);                                                        \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                              \
		__type(key, k);                                                                    \
		__type(value, v);                                                                  \
	} name SEC(".maps")

CHANNEL_MAP(chan_in, struct in_key, struct in_val);
CHANNEL_MAP(chan_out, struct out_key, struct out_val);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stats);
} stats SEC(".maps");

// Not ours: on to the next program of the interface (TCX or cls_bpf), then to the stack.
#define PASS TC_ACT_UNSPEC

#define ETH_OFF 0
#define IP_OFF 14
#define UDP_OFF 34
#define CHECK_OFF (UDP_OFF + 6)
#define HEADERS (UDP_OFF + 8 + 4)

ALWAYS void count(int i, __u64 v)
{
	__u32 zero = 0;
	struct stats *s = bpf_map_lookup_elem(&stats, &zero);
	if (s && i >= 0 && i < COUNTERS)
		s->n[i] += v;
}

// One's complement sum helpers (RFC 1071).
ALWAYS __u32 add32(__u32 acc, __u32 v)
{
	return acc + (v & 0xffff) + (v >> 16);
}

ALWAYS __u32 sub32(__u32 acc, __u32 v)
{
	return acc + ((~v) & 0xffff) + ((~v) >> 16);
}

ALWAYS __u32 add16(__u32 acc, __u16 v)
{
	return acc + v;
}

ALWAYS __u32 sub16(__u32 acc, __u16 v)
{
	return acc + (__u16)~v;
}

ALWAYS __u16 fold(__u32 acc)
{
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
	return (__u16)acc;
}

ALWAYS __u16 ip_checksum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 acc = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		acc += w[i];
	return ~fold(acc);
}

// The UDP checksum from its sum (0 means "none" in UDP, so a computed 0 is sent as 0xffff).
ALWAYS __u16 finish_udp(__u32 acc)
{
	__u16 c = ~fold(acc);
	return c ? c : 0xffff;
}

// The sum a new UDP checksum starts from (RFC 1624: HC' = ~(~HC + ~m + m')): the old checksum
// with the old addresses, ports and length (pseudo header and UDP header) taken out and the new
// ones put in. Words are summed as they lie in memory.
ALWAYS __u32 rechecksum(const struct iphdr *ip, const struct udphdr *udp, __u32 saddr, __u32 daddr,
                        __u16 sport, __u16 dport, __u16 nlen)
{
	__u32 acc = (__u16)~udp->check;
	acc = sub32(acc, ip->saddr);
	acc = sub32(acc, ip->daddr);
	acc = sub16(acc, udp->source);
	acc = sub16(acc, udp->dest);
	acc = sub16(acc, udp->len);
	acc = sub16(acc, udp->len);
	acc = add32(acc, saddr);
	acc = add32(acc, daddr);
	acc = add16(acc, sport);
	acc = add16(acc, dport);
	acc = add16(acc, nlen);
	acc = add16(acc, nlen);
	return acc;
}

// Does the skb still wait for its UDP checksum to be computed (CHECKSUM_PARTIAL, a packet sent
// from this host)? bpf_l4_csum_replace leaves the checksum of such a packet alone when it is not
// asked to change the pseudo header, and changes every other. The caller overwrites the field.
ALWAYS int offload_pending(struct __sk_buff *skb, __u16 before)
{
	__u16 after = before;
	if (bpf_l4_csum_replace(skb, CHECK_OFF, 0, 1, 2))
		return 1;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (data + HEADERS > end)
		return 1;
	struct udphdr *udp = data + UDP_OFF;
	after = udp->check;
	return after == before;
}

ALWAYS void new_ip(struct iphdr *ip, __u8 tos, __u16 tot_len, __u32 saddr, __u32 daddr)
{
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = tos;
	ip->tot_len = __builtin_bswap16(tot_len);
	ip->id = 0;
	ip->frag_off = __builtin_bswap16(0x4000); // DF, as Linux sends UDP
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->check = ip_checksum(ip);
}

// Where a rewritten packet leaves. When this host forwards on the interface, the FIB says, with
// the next hop's MAC address (a missing neighbour entry is left to the neighbour subsystem, as
// below). A relay host usually does not forward, and then the FIB helper refuses: the packet
// leaves through the interface it arrived on (the one-NIC relay host) and the neighbour
// subsystem routes it and fills in the MAC addresses, resolving them if needed.
enum { NO_ROUTE, VIA_FIB, VIA_NEIGH };

ALWAYS int route(struct __sk_buff *skb, struct bpf_fib_lookup *fib, __u32 src, __u32 dst,
                 __u16 sport, __u16 dport, __u16 tot_len)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = 2; // AF_INET
	fib->l4_protocol = IPPROTO_UDP;
	fib->sport = sport;
	fib->dport = dport;
	fib->tot_len = tot_len;
	fib->ipv4_src = src;
	fib->ipv4_dst = dst;
	fib->ifindex = skb->ingress_ifindex;
	long rc = bpf_fib_lookup(skb, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return VIA_FIB;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return VIA_NEIGH; // fib->ifindex is the egress
	if (rc != BPF_FIB_LKUP_RET_FWD_DISABLED)
		return NO_ROUTE; // local, blackhole, unreachable, fragmentation needed
	fib->ifindex = skb->ingress_ifindex;
	__u32 mtu = 0;
	if (bpf_check_mtu(skb, fib->ifindex, &mtu, tot_len - (skb->len - 14), 0) !=
	    BPF_MTU_CHK_RET_SUCCESS)
		return NO_ROUTE;
	return VIA_NEIGH;
}

ALWAYS int send(struct __sk_buff *skb, struct bpf_fib_lookup *fib, int via, struct iphdr *ip)
{
	if (bpf_skb_store_bytes(skb, IP_OFF, ip, sizeof(*ip), 0))
		return TC_ACT_SHOT;
	if (via == VIA_NEIGH)
		return bpf_redirect_neigh(fib->ifindex, 0, 0, 0);
	unsigned char macs[12];
	__builtin_memcpy(macs, fib->dmac, 6);
	__builtin_memcpy(macs + 6, fib->smac, 6);
	if (bpf_skb_store_bytes(skb, ETH_OFF, macs, sizeof(macs), 0))
		return TC_ACT_SHOT;
	return bpf_redirect(fib->ifindex, 0);
}

// Client to peer: ChannelData's payload leaves from the relayed address.
ALWAYS int to_peer(struct __sk_buff *skb, struct in_val *v, struct iphdr *ip, struct udphdr *udp,
                   __u16 ulen, __u32 cd)
{
	if (bpf_ktime_get_ns() >= v->expires_ns) {
		count(PASS_EXPIRED, 1);
		return PASS;
	}
	__u16 plen = ulen - 12;
	struct bpf_fib_lookup fib;
	int via = route(skb, &fib, v->relay_ip, v->peer_ip, v->relay_port, v->peer_port, 28 + plen);
	if (via == NO_ROUTE) {
		count(PASS_ROUTE, 1);
		return PASS;
	}
	__u16 check = udp->check;
	__u8 tos = ip->tos;
	__u16 nlen = __builtin_bswap16(8 + plen);
	__u32 acc = rechecksum(ip, udp, v->relay_ip, v->peer_ip, v->relay_port, v->peer_port, nlen);
	acc = sub32(acc, cd); // the ChannelData header leaves the payload
	if (check == 0 || offload_pending(skb, check)) {
		count(PASS_CHECKSUM, 1);
		return PASS;
	}
	struct udphdr nu = {
	    .source = v->relay_port,
	    .dest = v->peer_port,
	    .len = nlen,
	    .check = finish_udp(acc),
	};
	struct iphdr nip;
	new_ip(&nip, tos, 28 + plen, v->relay_ip, v->peer_ip);
	// The new UDP header goes over the old one's second half and the ChannelData header; the
	// first four bytes after the IP header (the old ports) are then removed.
	if (bpf_skb_store_bytes(skb, UDP_OFF + 4, &nu, sizeof(nu), 0))
		return TC_ACT_SHOT;
	if (bpf_skb_adjust_room(skb, -4, BPF_ADJ_ROOM_NET, 0))
		return TC_ACT_SHOT;
	count(TO_PEER_PACKETS, 1);
	count(TO_PEER_BYTES, plen);
	return send(skb, &fib, via, &nip);
}

// Peer to client: the datagram goes to the client as ChannelData from the address it reached.
ALWAYS int to_client(struct __sk_buff *skb, struct out_val *w, struct iphdr *ip,
                     struct udphdr *udp, __u16 ulen)
{
	if (bpf_ktime_get_ns() >= w->expires_ns) {
		count(PASS_EXPIRED, 1);
		return PASS;
	}
	__u16 plen = ulen - 8;
	if (plen > 0xffff - 40)
		return PASS;
	struct bpf_fib_lookup fib;
	int via = route(skb, &fib, w->to.server_ip, w->to.client_ip, w->to.server_port, w->to.client_port,
	                32 + plen);
	if (via == NO_ROUTE) {
		count(PASS_ROUTE, 1);
		return PASS;
	}
	__u16 check = udp->check;
	__u8 tos = ip->tos;
	__u16 nlen = __builtin_bswap16(12 + plen);
	__u16 cdlen = __builtin_bswap16(plen);
	__u32 acc =
	    rechecksum(ip, udp, w->to.server_ip, w->to.client_ip, w->to.server_port, w->to.client_port, nlen);
	acc = add16(acc, w->to.channel); // the ChannelData header joins the payload
	acc = add16(acc, cdlen);
	if (check == 0 || offload_pending(skb, check)) {
		count(PASS_CHECKSUM, 1);
		return PASS;
	}
	struct {
		struct udphdr udp;
		__u16 channel;
		__u16 len;
	} hdr = {
	    .udp = {.source = w->to.server_port,
	            .dest = w->to.client_port,
	            .len = nlen,
	            .check = finish_udp(acc)},
	    .channel = w->to.channel,
	    .len = cdlen,
	};
	struct iphdr nip;
	new_ip(&nip, tos, 32 + plen, w->to.server_ip, w->to.client_ip);
	if (bpf_skb_adjust_room(skb, 4, BPF_ADJ_ROOM_NET, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, UDP_OFF, &hdr, sizeof(hdr), 0))
		return TC_ACT_SHOT;
	count(TO_CLIENT_PACKETS, 1);
	count(TO_CLIENT_BYTES, plen);
	return send(skb, &fib, via, &nip);
}

SEC("classifier")
int natkit_relay(struct __sk_buff *skb)
{
	if (skb->protocol != __builtin_bswap16(ETH_P_IP) || skb->gso_segs > 1)
		return PASS;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (data + HEADERS > end) {
		if (skb->len < HEADERS || bpf_skb_pull_data(skb, HEADERS))
			return PASS;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		if (data + HEADERS > end)
			return PASS;
	}
	struct iphdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP_OFF;
	if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & __builtin_bswap16(0x3fff)))
		return PASS;
	__u16 ulen = __builtin_bswap16(udp->len);
	if (ulen < 8 || __builtin_bswap16(ip->tot_len) != 20 + ulen || skb->len != 34 + ulen)
		return PASS;
	__u8 *cd = (__u8 *)(udp + 1);
	if ((cd[0] & 0xc0) == 0x40 && ulen >= 12) {
		__u16 cdlen = ((__u16)cd[2] << 8) | cd[3];
		struct in_key k = {
		    .client_ip = ip->saddr,
		    .server_ip = ip->daddr,
		    .client_port = udp->source,
		    .server_port = udp->dest,
		    .channel = *(__u16 *)cd,
		};
		struct in_val *v = bpf_map_lookup_elem(&chan_in, &k);
		if (v) {
			// Padded ChannelData (allowed over UDP) goes to the relay, which trims it.
			if (ulen != 12 + cdlen)
				return PASS;
			return to_peer(skb, v, ip, udp, ulen, *(__u32 *)cd);
		}
	}
	struct out_key o = {
	    .peer_ip = ip->saddr,
	    .relay_ip = ip->daddr,
	    .peer_port = udp->source,
	    .relay_port = udp->dest,
	};
	struct out_val *w = bpf_map_lookup_elem(&chan_out, &o);
	if (w)
		return to_client(skb, w, ip, udp, ulen);
	return PASS;
}

char _license[] SEC("license") = "Dual MIT/GPL";
