// natkit.js, natkit's browser client: docs in README.md, types in natkit.d.ts. `decide` is
// tested against every row of crates/peer-core/pair_rule.tsv.

const SUMMARY_WAIT = 1000; // the offerer's wait for the partner's NAT summary
const DIRECT_DEADLINE = 5000; // not connected with all candidates: restart relay-only
const DISCONNECTED_GRACE = 3000; // "disconnected" this long: ICE restart
const CLOSED = () => new NatkitError("closed", "the channel or session is closed");
// Limits: partners, unread messages, early candidates, send buffer.
const MAX_PARTNERS = 16;
const MAX_UNREAD = 65536;
const MAX_PENDING_CANDIDATES = 256;
const HIGH_WATER = 1 << 20;
const LOW_WATER = 256 << 10;

export class NatkitError extends Error {
  constructor(code, message, stage = null) {
    super(message);
    this.name = "NatkitError";
    this.code = code;
    this.stage = stage;
  }
}

// Refusals no retry cures (natkit_proto's is_permanent_refusal).
const PERMANENT = new Set(["unauthorized", "bad-room", "room-full", "server-full"]);

// natkit-peer's back-off (250 ms doubling to 5 s) and renewal (at half the TTL).
export const reconnectDelay = (n) => Math.min(250 * 2 ** Math.min(n, 10), 5000);
export const renewAfter = (ttlSeconds) => Math.max(ttlSeconds * 500, 1000);

const DEPENDENT = new Set(["address-dependent", "address-and-port-dependent"]);
const dependent = (list) => Array.isArray(list) && list.length > 0 && list.every((b) => DEPENDENT.has(b));
const SHORT = { "endpoint-independent": "EI", "address-dependent": "AD", "address-and-port-dependent": "APD" };
const describe = (n) => (n.udp_blocked ? "udp-blocked"
  : ["mapping", "filtering"].map((k) => `${k} ${n[k] && n[k].length ? n[k].map((b) => SHORT[b] || "?").join("|") : "unknown"}`).join(" "));
const sides = (l, r) => `(here ${describe(l)}, there ${describe(r)})`;
const families = (n) => (Array.isArray(n.families) && n.families.length > 0
  && n.families.every((f) => f === "ipv4" || f === "ipv6") ? n.families : null);
const symmetric = (l, r) => (dependent(l.mapping) && dependent(r.mapping) ? "symmetric-pair"
  : (dependent(l.mapping) && dependent(r.filtering)) || (dependent(r.mapping) && dependent(l.filtering)) ? "symmetric-restricted" : null);

// Where one relay hop is enough the answerer relays; the `offerer` reaches it from its own address.
export function decide(mode, local, remote, role = "answerer") {
  const p = (relayOnly, rule, reason) => ({ relayOnly, rule, reason });
  if (mode === "always") return p(true, "relay-always", "relay: always");
  if (mode === "never") return p(false, "relay-never", "relay: never");
  if (!local) return p(false, "no-probe", "no probe result: all candidates");
  if (local.udp_blocked) return p(true, "udp-blocked", "UDP is blocked here: relay");
  if (!remote) {
    const sym = dependent(local.mapping);
    return p(sym, "this-side-only", `here ${describe(local)}, no remote summary: ${sym ? "relay" : "all candidates"}`);
  }
  if (remote.udp_blocked) return p(true, "udp-blocked", "UDP is blocked at the remote peer: relay");
  const [famL, famR] = [families(local), families(remote)];
  if (famL && famR && !famL.some((f) => famR.includes(f))) {
    return p(true, "no-common-family", `no address family in common (here ${famL}, there ${famR}): relay`);
  }
  // Each family both sides have is judged alone (a dual-stack side's IPv6 is in `ipv6`).
  const v4 = (n) => !families(n) || n.families.includes("ipv4");
  const v6 = (n) => n.ipv6 || (families(n) && n.families.length === 1 && n.families[0] === "ipv6" ? n : null);
  const [l6, r6] = [v6(local), v6(remote)];
  let over4 = v4(local) && v4(remote) ? [symmetric(local, remote)] : null;
  const over6 = l6 && r6 && !l6.udp_blocked && !r6.udp_blocked ? [symmetric(l6, r6)] : null;
  if (!over4 && !over6) over4 = [symmetric(local, remote)];
  if (over4 && over4[0] && over6 && !over6[0]) {
    return p(false, "direct-ipv6", `IPv4 needs a relay ${sides(local, remote)}, IPv6 can connect directly ${sides(l6, r6)}: all candidates`);
  }
  const rule = over4 ? over4[0] : over6[0];
  const at = over4 ? sides(local, remote) : sides(l6, r6);
  const why = rule === "symmetric-pair" ? "both symmetric" : "symmetric facing restricted filtering";
  if (rule && role === "offerer") return p(false, rule, `${why} ${at}: the answerer relays, all candidates here (one relay hop)`);
  if (rule) return p(true, rule, `${why} ${at}: relay (the answerer)`);
  return p(false, "direct-possible", `direct can work ${at}: all candidates`);
}

// `mappings`: the server-reflexive "address:port"s seen towards the relay's ports.
export function summaryFrom({ mappings, udpRelay, turnTried }) {
  const family = (m) => (m.split(":").length > 2 ? "ipv6" : "ipv4");
  const families = [...new Set(mappings.map(family))].sort();
  const nat = (mapping, blocked = false) => ({
    mapping, filtering: [], udp_blocked: blocked, ...(families.length ? { families } : {}),
  });
  // Another public port towards the other port, in one family: symmetric. The summary is
  // IPv4's (IPv6's when that is all there is), a dual-stack browser's IPv6 in `ipv6`.
  const behaviour = (f) => (mappings.filter((m) => family(m) === f).length > 1
    ? ["address-dependent", "address-and-port-dependent"] : ["endpoint-independent", "address-dependent"]);
  if (families.length === 2) {
    return { ...nat(behaviour("ipv4")), ipv6: { mapping: behaviour("ipv6"), filtering: [], udp_blocked: false } };
  }
  if (families.length === 1) return nat(behaviour(families[0]));
  if (udpRelay) return nat([]); // UDP gets out, unmapped
  return turnTried ? nat([], true) : null;
}

// A peer connection making its offer, its servers set when known.
function prepare() {
  const pc = new RTCPeerConnection();
  pc.createDataChannel("probe");
  return { pc, offer: pc.createOffer() };
}

// `early(found, ms)`: how long more to wait, when enough was found.
function gather(config, ms, early = () => null, { pc, offer } = prepare()) {
  return new Promise((resolve) => {
    const found = [], t0 = performance.now();
    const done = () => { clearTimeout(timer); pc.close(); resolve(found); };
    let timer = setTimeout(done, ms);
    try { pc.setConfiguration(config); } catch { return done(); }
    pc.onicecandidate = (e) => {
      if (!e.candidate) return done();
      found.push(e.candidate);
      const wait = early(found, performance.now() - t0);
      if (wait != null) { clearTimeout(timer); timer = setTimeout(done, wait); }
    };
    offer.then((o) => pc.setLocalDescription(o)).catch(done);
  });
}

// `details`: TURN over every transport too, and what was seen. Without, the servers come with
// no TURN credential, asked for only when no mapping comes back.
export async function probe(httpBase, token, timeoutMs = 3000, details = false) {
  const ask = async (turn) => {
    const url = new URL("/v1/check-servers", httpBase);
    if (token) url.searchParams.set("token", token);
    if (!turn) url.searchParams.set("turn", "false");
    const res = await fetch(url);
    if (!res.ok) throw new NatkitError("http-" + res.status, "check-servers refused", "probe");
    return (await res.json()).iceServers || [];
  };
  const fetched = ask(details);
  await null; // the caller's WebSocket first; then STUN's peer connection while the servers come
  const stun = prepare();
  const servers = await fetched.catch((e) => { stun.pc.close(); throw e; });
  const stunUrls = servers.flatMap((s) => s.urls).filter((u) => u.startsWith("stun:"));
  const relayGather = (servers, t) => {
    const turn = onlyTransport(servers, t).filter((s) => s.urls.some((u) => u.startsWith("turn")));
    return turn.length ? gather({ iceServers: turn, iceTransportPolicy: "relay" }, timeoutMs) : null;
  };
  const all = details ? relayGather(servers, ["udp", "tcp", "tls"]) : null;
  const seen = (f) => [...new Set(f.filter((c) => c.type === "srflx" && c.protocol === "udp").map((c) => `${c.address}:${c.port}`))];
  // Done once the ports map apart, or a moment after the first mapping (not at Chrome's
  // gathering end, ~100 ms later).
  const found = await gather({ iceServers: [{ urls: stunUrls }] }, timeoutMs, (f, t) => {
    const n = seen(f).length;
    return n >= stunUrls.length ? 0 : n ? Math.max(30, t / 2) : null;
  }, stun);
  const mappings = seen(found);
  const relaying = all || (mappings.length ? null : ask(true).then((s) => relayGather(s, ["udp"]), () => null));
  const relayed = relaying && (await relaying);
  const relays = (relayed || []).filter((c) => c.type === "relay");
  const relayProtocols = [...new Set(relays.map((c) => c.relayProtocol || "udp"))];
  const nat = summaryFrom({ mappings, udpRelay: relayProtocols.includes("udp"), turnTried: !!relayed });
  return details ? { nat, stunUrls, mappings, relayed: relays.map((c) => `${c.address}:${c.port}`), relayProtocols } : nat;
}

function wsUrl(u) {
  const url = new URL(u, typeof location === "undefined" ? undefined : location.href);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  if (url.pathname === "/" || url.pathname === "") url.pathname = "/v1/ws";
  return url;
}
function httpBase(ws) {
  const url = new URL(ws.href);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  return url.origin;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function withTimeout(promise, ms, onTimeout) {
  let t;
  return Promise.race([promise, new Promise((_, reject) => { t = setTimeout(() => reject(onTimeout()), ms); })]).finally(() => clearTimeout(t));
}
function onlyTransport(servers, transports) {
  const keep = (u) => (u.startsWith("turns:") ? transports.includes("tls")
    : u.startsWith("turn:") ? transports.includes(u.includes("transport=tcp") ? "tcp" : "udp") : true);
  return servers.map((s) => ({ ...s, urls: s.urls.filter(keep) })).filter((s) => s.urls.length > 0);
}

// The data channel with one partner.
export class Channel extends EventTarget {
  constructor(link) {
    super();
    Object.assign(this, { _link: link, _queue: [], _waiters: [], _ended: null, onmessage: null, onclose: null });
  }
  get peerId() { return this._link.peer; }
  get path() { return this._link.path || null; }
  get readyState() { return this._ended ? "closed" : this._link.dc ? this._link.dc.readyState : "connecting"; }

  // A string as text, else binary; waits while over 1 MiB is buffered.
  async send(data) {
    const dc = this._link.dc;
    if (this._ended || !dc || dc.readyState !== "open") throw CLOSED();
    if (dc.bufferedAmount > HIGH_WATER) {
      await new Promise((resolve) => dc.addEventListener("bufferedamountlow", resolve, { once: true }));
      if (dc.readyState !== "open") throw new NatkitError("closed", "closed while sending");
    }
    dc.send(data);
  }

  recv() {
    if (this._queue.length) return Promise.resolve(this._queue.shift());
    if (this._ended) return Promise.reject(this._ended);
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      try { yield await this.recv(); } catch (e) { if (e.code === "closed") return; throw e; }
    }
  }

  close() { this._link.session._drop(this._link, null); }

  _deliver(data) {
    const ev = new MessageEvent("message", { data });
    if (this.onmessage) this.onmessage(ev);
    this.dispatchEvent(ev);
    const w = this._waiters.shift();
    if (w) return w.resolve(data);
    if (!this.onmessage) {
      if (this._queue.length >= MAX_UNREAD) return this._link.session._drop(this._link, new NatkitError("closed", `over ${MAX_UNREAD} unread messages`));
      this._queue.push(data);
    }
  }
  _end(err) {
    if (this._ended) return;
    this._ended = err || CLOSED();
    for (const w of this._waiters.splice(0)) w.reject(this._ended);
    if (this.onclose) this.onclose(new Event("close"));
    this.dispatchEvent(new Event("close"));
  }
}

export class Session extends EventTarget {
  constructor(opts, urls) {
    super();
    Object.assign(this, { _opts: opts, _urls: urls, _at: 0, _links: new Map(), _summaries: new Map(), _iceServers: [], peerId: null, room: opts.room, peers: [], nat: null });
  }

  on(name, fn) { const h = (e) => fn(e.detail); this.addEventListener(name, h); return () => this.removeEventListener(name, h); }
  _emit(name, detail = {}) { this.dispatchEvent(new CustomEvent(name, { detail })); }

  channel(peerId = null, { timeout = this._opts.timeout } = {}) {
    if (this._closed) return Promise.reject(CLOSED());
    let link;
    try { link = peerId ? this._links.get(peerId) || (this.peers.includes(peerId) ? this._offerTo(peerId) : null) : [...this._links.values()][0]; } catch (e) { return Promise.reject(e); }
    const waitFor = link ? link.opened : new Promise((resolve, reject) => {
      const h = (e) => { if (!peerId || e.detail.peerId === peerId) { off(); e.detail.link.opened.then(resolve, reject); } };
      const off = () => { this.removeEventListener("_link", h); this.removeEventListener("closed", c); };
      const c = () => { off(); reject(CLOSED()); };
      this.addEventListener("_link", h);
      this.addEventListener("closed", c);
    });
    return withTimeout(waitFor, timeout, () => {
      const l = peerId ? this._links.get(peerId) : [...this._links.values()][0];
      const stage = !l ? "partner" : l.pc && l.pc.iceConnectionState !== "connected" ? "ice" : "channel";
      return new NatkitError("timeout", `no open channel in ${timeout} ms (at ${stage})`, stage);
    });
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._renewTimer);
    for (const l of [...this._links.values()]) this._drop(l, null);
    if (this._ws) { try { this._send({ type: "leave" }); this._ws.close(1000); } catch { /* gone */ } }
    this._emit("closed");
  }

  _send(msg) {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify(msg));
  }

  // Joins through `_urls[i]`: the welcome, or the server's refusal.
  _join(i, timeoutMs) {
    return new Promise((resolve, reject) => {
      const u = wsUrl(this._urls[i]);
      if (this._opts.token) u.searchParams.set("token", this._opts.token);
      // `socket`: opened by the page to this very URL before the module ran; used once.
      let ws = this._opts.socket;
      this._opts.socket = null;
      if (ws && (ws.url !== u.href || ws.readyState > WebSocket.OPEN)) { ws.close(); ws = null; }
      try { ws = ws || new WebSocket(u); } catch (e) { return reject(new NatkitError("bad-url", String(e), "join")); }
      const timer = setTimeout(() => { ws.close(); reject(new NatkitError("timeout", `no welcome within ${timeoutMs} ms`, "join")); }, timeoutMs);
      const join = () => {
        const m = { type: "join", room: this.room, version: 1 };
        if (this.peerId || this._opts.peerId) m.peer_id = this.peerId || this._opts.peerId;
        ws.send(JSON.stringify(m));
      };
      if (ws.readyState === WebSocket.OPEN) join(); else ws.onopen = join;
      ws.onerror = () => {};
      ws.onclose = (e) => { clearTimeout(timer); reject(new NatkitError("signaling-closed", `closed (${e.code})`, "join")); };
      ws.onmessage = (ev) => {
        let m; try { m = JSON.parse(ev.data); } catch { return; }
        if (m.type === "error") { clearTimeout(timer); ws.onclose = null; ws.close(); reject(new NatkitError(m.code, m.message || m.code, "join")); }
        if (m.type !== "welcome") return;
        clearTimeout(timer);
        Object.assign(this, { _ws: ws, _at: i, peerId: m.peer_id, peers: [...m.peers] });
        this._setServers(m.ice_servers, m.ttl);
        ws.onclose = () => { if (this._ws === ws) { this._ws = null; this._rejoin("signaling dropped"); } };
        ws.onmessage = (ev) => { try { this._onMessage(JSON.parse(ev.data)).catch((e) => this._emit("error", { code: "internal", message: String(e) })); } catch { /* not JSON */ } };
        resolve();
      };
    });
  }

  // Joins through the URLs in turn from the `from`th, backing off after each round.
  async _joinFrom(from, deadline) {
    let last = new NatkitError("timeout", "no signaling server answered in time", "join");
    for (let n = 0; !this._closed && Date.now() < deadline; n++) {
      const i = (from + n) % this._urls.length;
      try { return await this._join(i, Math.min(10000, deadline - Date.now())); } catch (e) { if (PERMANENT.has(e.code)) throw e; last = e; }
      if ((i + 1) % this._urls.length === from) await sleep(Math.min(reconnectDelay(Math.floor(n / this._urls.length)), Math.max(0, deadline - Date.now())));
    }
    throw last;
  }

  _setServers(servers, ttl) {
    let s = servers || [];
    if (this._opts.relay === "never") s = onlyTransport(s, []);
    if (this._opts.turnTransports) s = onlyTransport(s, this._opts.turnTransports);
    this._iceServers = s;
    clearTimeout(this._renewTimer);
    if (this._opts.renew && ttl) this._renewTimer = setTimeout(() => this._send({ type: "refresh" }), renewAfter(ttl));
  }

  async _rejoin(reason) {
    if (this._closed || this._rejoining) return;
    this._rejoining = true;
    this._emit("reconnect", { reason });
    await sleep(reconnectDelay(0));
    try {
      await this._joinFrom((this._at + 1) % this._urls.length, Infinity);
      this._emit("reconnected", { url: this._urls[this._at] });
    } catch (e) {
      if (PERMANENT.has(e.code)) { this._emit("error", { code: e.code, message: e.message }); this.close(); }
    }
    this._rejoining = false;
    // Paths that failed meanwhile restart over fresh credentials.
    for (const l of this._links.values()) if (l.pc && ["failed", "disconnected"].includes(l.pc.iceConnectionState)) this._restart(l, "rejoined");
  }

  async _onMessage(m) {
    switch (m.type) {
      case "peer-joined":
        if (!this.peers.includes(m.peer_id)) this.peers.push(m.peer_id);
        this._emit("peer-joined", { peerId: m.peer_id });
        // The joiner offers to us: our summary first.
        this._summaryTo(m.peer_id);
        break;
      case "peer-left": {
        this.peers = this.peers.filter((p) => p !== m.peer_id);
        this._emit("peer-left", { peerId: m.peer_id });
        const l = this._links.get(m.peer_id);
        if (l) this._drop(l, new NatkitError("closed", `${m.peer_id} left the room`));
        break;
      }
      case "nat-summary": {
        const l = this._links.get(m.from);
        if (l) { l.remoteNat = m.nat; if (l.summaryArrived) l.summaryArrived(); }
        else if (this._summaries.size < MAX_PARTNERS * 4) this._summaries.set(m.from, m.nat);
        break;
      }
      case "offer": return this._onOffer(m);
      case "answer": {
        const l = this._links.get(m.from);
        if (l && l.pc && l.pc.signalingState === "have-local-offer") { await l.pc.setRemoteDescription({ type: "answer", sdp: m.sdp }); await this._flush(l); }
        break;
      }
      case "candidate": {
        const l = this._links.get(m.from);
        if (!l) break;
        if (!l.pc || !l.pc.remoteDescription) { if (l.pending.length < MAX_PENDING_CANDIDATES) l.pending.push(m.candidate); }
        else await l.pc.addIceCandidate(m.candidate || undefined).catch(() => {});
        break;
      }
      case "ice-servers": // a browser's allocations keep their credential: restart ICE to renew
        this._setServers(m.ice_servers, m.ttl);
        this._emit("renewed", { ttl: m.ttl });
        for (const l of this._links.values()) if (l.pc) l.offerer ? this._restart(l, "renewed") : this._configure(l);
        break;
      case "reconnect":
        if (this._ws) { const ws = this._ws; this._ws = null; ws.onclose = null; ws.close(1000); }
        this._rejoin(`reconnect: ${m.reason || "draining"}`);
        break;
      case "error":
        this._emit("error", { code: m.code, message: m.message || m.code });
        break;
    }
  }

  _summaryTo(peer) {
    if (this._opts.relay !== "auto" || !this._probe) return;
    this._probe.then((nat) => { if (nat && !this._closed) this._send({ type: "nat-summary", to: peer, nat }); });
  }

  _newLink(peer, offerer) {
    if (this._links.size >= MAX_PARTNERS) throw new NatkitError("too-many-partners", `over ${MAX_PARTNERS} partners`);
    const link = { peer, offerer, session: this, pending: [], polite: this.peerId > peer };
    if (this._summaries.has(peer)) { link.remoteNat = this._summaries.get(peer); this._summaries.delete(peer); }
    link.channel = new Channel(link);
    link.opened = new Promise((resolve, reject) => { link.open = resolve; link.fail = reject; });
    link.opened.catch(() => {});
    this._links.set(peer, link);
    this._emit("_link", { peerId: peer, link });
    return link;
  }

  async _decide(link) {
    const local = this._opts.relay === "auto" && this._probe ? await this._probe : null;
    link.policy = decide(this._opts.relay, local, link.remoteNat, link.offerer ? "offerer" : "answerer");
    this._emit("policy", { peerId: link.peer, ...link.policy });
  }

  _newPc(link, relay) {
    // The offerer's pool gathers while it decides. An answerer has no time to pool, and in
    // Chromium an answer over a pooled TURN session sometimes gathered nothing at all.
    const pc = link.pc = new RTCPeerConnection({ iceServers: this._iceServers, iceTransportPolicy: relay ? "relay" : "all", iceCandidatePoolSize: link.offerer ? 1 : 0 });
    pc.onicecandidate = (e) => {
      if (e.candidate) this._emit("candidate", { peerId: link.peer, type: e.candidate.type });
      this._send({ type: "candidate", to: link.peer, candidate: e.candidate ? e.candidate.toJSON() : null });
    };
    pc.onnegotiationneeded = async () => {
      if (!link.offerer && !link.dc) return; // the first offer is the offerer's
      try {
        link.makingOffer = true;
        await pc.setLocalDescription();
        this._send({ type: "offer", to: link.peer, sdp: pc.localDescription.sdp });
      } catch (e) { this._emit("error", { code: "negotiation", message: String(e) }); } finally { link.makingOffer = false; }
    };
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      this._emit("connection", { peerId: link.peer, state: s });
      clearTimeout(link.lostTimer);
      if (s === "connected") { clearTimeout(link.deadline); this._showPath(link); }
      if (s === "failed") this._restart(link, "path failed");
      if (s === "disconnected") link.lostTimer = setTimeout(() => this._restart(link, "path lost"), DISCONNECTED_GRACE);
    };
    pc.ondatachannel = (e) => this._wire(link, e.channel);
    return pc;
  }

  _wire(link, dc) {
    link.dc = dc;
    dc.binaryType = "arraybuffer";
    dc.bufferedAmountLowThreshold = LOW_WATER;
    dc.onopen = () => this._showPath(link).catch(() => {}).then(() => {
      // ICE may settle on a better pair later: a new `path`.
      const ice = link.pc.sctp && link.pc.sctp.transport.iceTransport;
      if (ice) ice.onselectedcandidatepairchange = () => this._showPath(link); link.open(link.channel); this._emit("channel", { peerId: link.peer, channel: link.channel }); });
    dc.onmessage = (e) => link.channel._deliver(e.data);
    dc.onclose = () => this._drop(link, null);
  }

  async _showPath(link) {
    const stats = await link.pc.getStats();
    let pair;
    stats.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
    if (!pair) stats.forEach((s) => { if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated) pair = s; });
    if (!pair) return;
    const l = stats.get(pair.localCandidateId), r = stats.get(pair.remoteCandidateId);
    link.path = {
      local: l.candidateType, remote: r.candidateType, relayTransport: l.relayProtocol || null,
      localAddress: `${l.address}:${l.port}`, remoteAddress: `${r.address}:${r.port}`,
      rule: link.policy.rule, relayOnly: link.policy.relayOnly,
    };
    this._emit("path", { peerId: link.peer, path: link.path });
  }

  _offerTo(peer) {
    const link = this._newLink(peer, true);
    const pc = this._newPc(link, this._opts.relay === "always");
    (async () => {
      this._summaryTo(peer);
      if (this._opts.relay === "auto" && !link.remoteNat) {
        await Promise.race([new Promise((r) => { link.summaryArrived = r; }), sleep(SUMMARY_WAIT)]);
      }
      await this._decide(link);
      if (!link.offerer) return; // the partner's offer was taken
      this._configure(link);
      this._wire(link, pc.createDataChannel("chat"));
      if (!link.policy.relayOnly) {
        link.deadline = setTimeout(() => {
          if (pc.connectionState === "connected" || this._closed) return;
          link.policy = { relayOnly: true, rule: "direct-deadline", reason: `no direct pair within ${DIRECT_DEADLINE} ms: relay` };
          this._emit("policy", { peerId: peer, ...link.policy });
          this._configure(link);
          this._restart(link, "direct-deadline");
        }, DIRECT_DEADLINE);
      }
    })().catch((e) => this._drop(link, new NatkitError("session-failed", String(e), "offer")));
    return link;
  }

  async _onOffer(m) {
    let link = this._links.get(m.from);
    if (!link) {
      if (this._links.size >= MAX_PARTNERS) return;
      link = this._newLink(m.from, false);
      await this._decide(link);
      this._newPc(link, link.policy.relayOnly);
    } else if (link.offerer && !link.dc) { // glare before our offer: the polite side answers
      if (!link.polite) return;
      link.offerer = false;
      link.pc.setConfiguration({ ...link.pc.getConfiguration(), iceCandidatePoolSize: 0 });
      if (!link.policy) await this._decide(link);
      this._configure(link);
    }
    const pc = link.pc;
    const collision = link.makingOffer || pc.signalingState !== "stable";
    if (collision && !link.polite) return;
    await pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
    await this._flush(link);
    await pc.setLocalDescription();
    this._send({ type: "answer", to: link.peer, sdp: pc.localDescription.sdp });
  }

  _configure(link) {
    link.pc.setConfiguration({ ...link.pc.getConfiguration(), iceServers: this._iceServers, iceTransportPolicy: link.policy && link.policy.relayOnly ? "relay" : "all" });
  }

  async _flush(link) {
    while (link.pending.length) await link.pc.addIceCandidate(link.pending.shift() || undefined).catch(() => {});
  }

  _restart(link, why) {
    if (this._closed || !link.pc || link.pc.connectionState === "closed") return;
    this._emit("ice-restart", { peerId: link.peer, why });
    this._configure(link);
    link.pc.restartIce();
  }

  _drop(link, err) {
    if (this._links.get(link.peer) !== link) return;
    this._links.delete(link.peer);
    clearTimeout(link.deadline);
    clearTimeout(link.lostTimer);
    link.fail(err || new NatkitError("closed", `the channel with ${link.peer} closed`));
    link.channel._end(err);
    if (link.dc) link.dc.close();
    if (link.pc) link.pc.close();
  }
}

export async function connect(options) {
  const opts = { relay: "auto", timeout: 30000, renew: true, ...options };
  if (!opts.room) throw new TypeError("natkit.connect: no room");
  if (!["auto", "always", "never"].includes(opts.relay)) throw new TypeError(`natkit.connect: bad relay ${opts.relay}`);
  const urls = [].concat(opts.signal || (typeof location === "undefined" ? [] : [location.origin]));
  if (!urls.length) throw new TypeError("natkit.connect: no signal URL");
  const session = new Session(opts, urls);
  if (opts.relay === "auto") {
    session._probe = probe(httpBase(wsUrl(urls[0])), opts.token).catch(() => null);
    session._probe.then((nat) => { session.nat = nat; session._emit("probe", { nat }); });
  }
  await session._joinFrom(0, Date.now() + opts.timeout);
  // The peer that joins where others are offers, to the first of them: once `connect` has
  // returned, so that listeners added then hear all of it (unless `channel(peerId)` came first).
  const first = session.peers[0];
  if (first) setTimeout(() => { if (!session._closed && !session._links.has(first) && session.peers.includes(first)) session._offerTo(first); });
  return session;
}
