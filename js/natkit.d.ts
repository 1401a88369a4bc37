// Type declarations for natkit.js.

/** How the pair decides on relay-only ICE: natkit's pair rule, always relay, or never. */
export type RelayMode = "auto" | "always" | "never";

export type NatBehaviour = "endpoint-independent" | "address-dependent" | "address-and-port-dependent";

/** A NAT summary, as the `nat-summary` message carries it (docs/protocol.md). */
export interface NatSummary {
  mapping: NatBehaviour[];
  filtering: NatBehaviour[];
  udp_blocked: boolean;
  /** The address families this side reaches the internet in; absent: not known. Two sides
   * with no family in common relay (`no-common-family`). */
  families?: ("ipv4" | "ipv6")[];
  /** A dual-stack side's IPv6 behaviours (the fields above are then its IPv4's). */
  ipv6?: NatSummary;
}

export interface Decision {
  relayOnly: boolean;
  /** The row of the pair rule that decided: `direct-possible`, `symmetric-pair`, ... */
  rule: string;
  reason: string;
}

/** How a channel's data travels. */
export interface Path {
  /** Local candidate type of the selected pair: `host`, `srflx`, `prflx` or `relay`. */
  local: string;
  remote: string;
  /** How this side reaches its relay (`udp`, `tcp`, `tls`) when `local` is `relay`. */
  relayTransport: "udp" | "tcp" | "tls" | null;
  localAddress: string;
  remoteAddress: string;
  rule: string;
  relayOnly: boolean;
}

export interface ConnectOptions {
  /** natkit-signal's URL (`wss://HOST`, `https://HOST`, `/v1/ws` added), or several nodes of a
   * cluster. Defaults to the page's own origin. */
  signal?: string | string[];
  room: string;
  /** The join token, when natkit-signal requires one. */
  token?: string;
  /** Ask for this peer id. */
  peerId?: string;
  /** Default "auto". */
  relay?: RelayMode;
  /** Milliseconds to join (and, for `channel()`, to open), default 30000. */
  timeout?: number;
  /** Renew the TURN credential before it expires (default true). */
  renew?: boolean;
  /** Keep only the TURN URLs over these transports, e.g. `["tcp", "tls"]`. */
  turnTransports?: Array<"udp" | "tcp" | "tls">;
  /** A WebSocket the page opened to the first signal URL (`ws(s)://HOST/v1/ws`, with
   * `?token=` when there is one) before the module loaded: the first join goes through it, so
   * the time to the welcome does not wait for the module. One to another URL is closed and
   * not used. */
  socket?: WebSocket;
}

/** natkit's errors: `code` is the server's (`unauthorized`, `room-full`, `rate-limited`, ...) or
 * `timeout`, `closed`, `session-failed`; `stage` says where it stopped. */
export declare class NatkitError extends Error {
  readonly code: string;
  readonly stage: string | null;
  constructor(code: string, message: string, stage?: string | null);
}

export type Message = string | ArrayBuffer;

export declare class Channel extends EventTarget {
  readonly peerId: string;
  readonly path: Path | null;
  readonly readyState: "connecting" | "open" | "closing" | "closed";
  onmessage: ((event: MessageEvent<Message>) => void) | null;
  onclose: ((event: Event) => void) | null;
  /** A string goes as text, binary data as binary; waits while over 1 MiB is buffered. */
  send(data: string | ArrayBuffer | ArrayBufferView | Blob): Promise<void>;
  /** The next message; rejects with code `closed` once the channel is closed and read. */
  recv(): Promise<Message>;
  [Symbol.asyncIterator](): AsyncIterator<Message>;
  close(): void;
}

export interface SessionEvents {
  "peer-joined": { peerId: string };
  "peer-left": { peerId: string };
  channel: { peerId: string; channel: Channel };
  path: { peerId: string; path: Path };
  policy: { peerId: string } & Decision;
  probe: { nat: NatSummary | null };
  reconnect: { reason: string };
  reconnected: { url: string };
  renewed: { ttl: number };
  "ice-restart": { peerId: string; why: string };
  candidate: { peerId: string; type: string };
  connection: { peerId: string; state: RTCPeerConnectionState };
  error: { code: string; message: string };
  closed: Record<string, never>;
}

export declare class Session extends EventTarget {
  readonly peerId: string;
  readonly room: string;
  /** The other peers in the room, as signaling last said. */
  readonly peers: string[];
  /** This browser's NAT summary, once probed. */
  readonly nat: NatSummary | null;
  /** The open channel with `peerId`, or with the first partner to appear. */
  channel(peerId?: string | null, options?: { timeout?: number }): Promise<Channel>;
  /** Subscribes to an event's `detail`; returns the unsubscribe function. */
  on<K extends keyof SessionEvents>(name: K, listener: (detail: SessionEvents[K]) => void): () => void;
  close(): void;
}

export declare function connect(options: ConnectOptions): Promise<Session>;
/** This side's ICE policy by the pair rule; `role` matters where one relay hop is enough (the answerer relays). */
export declare function decide(mode: RelayMode, local: NatSummary | null, remote: NatSummary | null, role?: "offerer" | "answerer"): Decision;
export declare function summaryFrom(seen: { mappings: string[]; udpRelay: boolean; turnTried: boolean }): NatSummary | null;
/** Probes this browser's NAT against natkit-signal's relay (`/v1/check-servers?turn=false`, then
 * with TURN only when no mapping came back). */
export declare function probe(httpBase: string, token?: string | null, timeoutMs?: number, details?: false): Promise<NatSummary | null>;
/** With `details`: also TURN over every transport (`/v1/check-servers`), and what was seen (the
 * check page's view). */
export declare function probe(httpBase: string, token: string | null | undefined, timeoutMs: number, details: true): Promise<{
  nat: NatSummary | null; stunUrls: string[]; mappings: string[]; relayed: string[]; relayProtocols: string[];
}>;
export declare function reconnectDelay(attempt: number): number;
export declare function renewAfter(ttlSeconds: number): number;
