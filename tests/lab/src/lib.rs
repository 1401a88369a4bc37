//! natkit's NAT lab: network namespaces joined by veth pairs, with real Linux NAT rules.
//!
//! ```text
//!   site k client ──lan── site k router ──wan──┐
//!   198.51.100.(16k+10)   NAT rules      203.0.113.(100+k)
//!                                               ├── br0 in the "inet" namespace
//!   server 203.0.113.1 and 203.0.113.2 ────────┘
//! ```
//!
//! Every address is in a documentation range (the client LANs in 198.51.100.0/24, one /28 per
//! site; the "internet" in 203.0.113.0/24; the carrier-grade NAT segment in 100.64.0.0/10), and
//! lives only in namespaces the lab creates. Dropping a [`Lab`] kills the processes it started and
//! deletes its namespaces, so a failing test cleans up as it unwinds.
//!
//! Needs root (`ip netns`, iptables, nftables). [`require_root`] makes a test fail loudly under
//! `CI` and skip with a message elsewhere.
//!
//! Processes, ports and events are `natkit-testkit`'s: the lab starts natkit's servers in its
//! namespaces through [`natkit_testkit::Daemon`] and keeps them until it is dropped.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use natkit_testkit::{workspace_bin, Daemon, Process};

pub const SERVER_IP: &str = "203.0.113.1";
pub const SERVER_ALT_IP: &str = "203.0.113.2";
/// The server's IPv6 addresses on the lab's internet (2001:db8::/64), present once a site with
/// IPv6 is added.
pub const SERVER_IP6: &str = "2001:db8::1";
pub const SERVER_ALT_IP6: &str = "2001:db8::2";

/// How a site's router treats UDP: one topology per behaviour of the nat-probe issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Routed, no NAT, no firewall.
    OpenInternet,
    /// MASQUERADE: endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestrictedCone,
    /// MASQUERADE --random-fully: address-and-port-dependent mapping (symmetric).
    Symmetric,
    /// Static SNAT + DNAT: endpoint-independent mapping and filtering (full cone).
    FullCone,
    /// SNAT with preserved ports and an nftables set of (peer address, port) entries updated on
    /// the way out: address-dependent filtering (restricted cone).
    RestrictedCone,
    /// nftables SNAT whose port is a hash of the internal endpoint and the destination address
    /// (not its port): address-dependent mapping.
    AddressDependentMapping,
    /// MASQUERADE with UDP dropped in FORWARD.
    UdpBlocked,
    /// MASQUERADE with UDP refused in FORWARD by the router's ICMP port unreachable (iptables'
    /// REJECT default): the ICMP comes from the router, not the server; not in [`Nat::ALL`].
    UdpRejected,
    /// MASQUERADE with UDP refused in FORWARD by ICMP administratively prohibited; not in
    /// [`Nat::ALL`].
    UdpProhibited,
    /// A home MASQUERADE behind a carrier-grade MASQUERADE in 100.64.0.0/10.
    DoubleNat,
    /// MASQUERADE behind a firewall that lets out only TCP to port 443 (the strictest corporate
    /// and hotel networks); not in [`Nat::ALL`] (no NAT verdict to check: UDP is blocked).
    Only443,
    /// Dual stack: IPv4 behind MASQUERADE, IPv6 routed (2001:db8:K::/64) with no filtering.
    /// The IPv6 sites are not in [`Nat::ALL`].
    Ipv6Open,
    /// Dual stack: IPv4 behind MASQUERADE, IPv6 routed behind a stateful firewall that admits
    /// inbound packets only of flows the inside opened (conntrack, the home router default).
    Ipv6Firewall,
    /// Dual stack: IPv4 behind MASQUERADE, IPv6 from a unique-local LAN (fd00:K::/64) behind
    /// ip6tables MASQUERADE (NAT66).
    Nat66,
    /// IPv6 only, as mobile networks are: the client has no IPv4 address or route, its IPv6
    /// (2001:db8:K::/64) is routed behind a stateful firewall. No NAT64 translator: IPv4 peers
    /// are reached through a dual-stack relay.
    Ipv6Only,
    /// IPv4 only behind MASQUERADE (an office without IPv6): IPv6 is disabled on the client.
    Ipv4Only,
    /// Dual stack as many mobile and carrier-grade networks are: IPv4 behind a symmetric NAT
    /// (MASQUERADE --random-fully), IPv6 routed behind a stateful firewall.
    SymmetricIpv6Firewall,
}

impl Nat {
    pub const ALL: [Nat; 8] = [
        Nat::OpenInternet,
        Nat::PortRestrictedCone,
        Nat::Symmetric,
        Nat::FullCone,
        Nat::RestrictedCone,
        Nat::AddressDependentMapping,
        Nat::UdpBlocked,
        Nat::DoubleNat,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nat::OpenInternet => "open-internet",
            Nat::PortRestrictedCone => "masquerade",
            Nat::Symmetric => "masquerade-random-fully",
            Nat::FullCone => "snat-dnat-full-cone",
            Nat::RestrictedCone => "nft-address-filter",
            Nat::AddressDependentMapping => "nft-hash-mapping",
            Nat::UdpBlocked => "udp-blocked",
            Nat::UdpRejected => "udp-rejected-port-unreachable",
            Nat::UdpProhibited => "udp-rejected-admin-prohibited",
            Nat::DoubleNat => "double-nat-cgn",
            Nat::Only443 => "only-tcp-443",
            Nat::Ipv6Open => "ipv6-routed",
            Nat::Ipv6Firewall => "ipv6-stateful-firewall",
            Nat::Nat66 => "ipv6-nat66",
            Nat::Ipv6Only => "ipv6-only",
            Nat::Ipv4Only => "ipv4-only",
            Nat::SymmetricIpv6Firewall => "symmetric-ipv4-ipv6-firewall",
        }
    }
}

/// Is this process root? Under `CI`, not being root is a failure; elsewhere the caller skips.
pub fn require_root(test: &str) -> bool {
    // SAFETY-free check: /proc/self/status carries the effective uid.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid_root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if euid_root {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: the NAT lab needs root, and CI must run it (run tests/run as root)");
    }
    eprintln!("{test}: SKIPPED, the NAT lab needs root (run tests/run as root)");
    false
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn ip(args: &[&str]) {
    sh(Command::new("ip").args(args));
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace `name` with its loopback up (deleted on drop).
    pub fn new(name: String) -> Netns {
        Netns::create(name)
    }

    fn create(name: String) -> Netns {
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command to run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a command inside the namespace, panicking on failure.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        sh(self.cmd(program).args(args))
    }

    /// Loads an nftables ruleset given as text.
    pub fn nft(&self, ruleset: &str) {
        let mut child = self
            .cmd("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nft");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft failed in {}:\n{}\n{ruleset}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn forwarding(&self) {
        self.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `f` on a thread that has entered the network namespace `name`: the sockets it opens
/// live there (and stay there when handed back).
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on a namespace descriptor we hold; it affects this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread")
}

/// Connects `a` (interface `a_if`) and `b` (`b_if`) with a veth pair created inside them.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    ip(&[
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// One client site behind a router.
pub struct Site {
    pub nat: Nat,
    pub client: Netns,
    /// The router on the public segment (the carrier-grade NAT for [`Nat::DoubleNat`]).
    pub router: Netns,
    /// The home router of a double NAT.
    pub home: Option<Netns>,
    pub client_ip: String,
    pub public_ip: String,
    /// The client LAN (`198.51.100.X/28`).
    pub lan: String,
}

/// A lab: the internet bridge, the server with two public addresses, and client sites.
pub struct Lab {
    /// Processes started in the lab; killed before the namespaces go.
    procs: Vec<Process>,
    /// natkit servers started in the lab; killed before the namespaces go.
    daemons: Vec<Daemon>,
    pub sites: Vec<Site>,
    pub server: Netns,
    inet: Netns,
    id: String,
    /// The server has its IPv6 addresses.
    v6: bool,
    /// The routed IPv6 LANs so far: (site number, its router's namespace).
    v6_lans: Vec<(usize, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Lab {
    pub fn new() -> Lab {
        let id = format!(
            "nk{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let inet = Netns::create(format!("{id}-inet"));
        inet.ip(&["link", "add", "br0", "type", "bridge"]);
        inet.ip(&["link", "set", "br0", "up"]);
        let server = Netns::create(format!("{id}-srv"));
        veth(&server, "eth0", &inet, "srv");
        inet.ip(&["link", "set", "srv", "master", "br0"]);
        server.ip(&["addr", "add", &format!("{SERVER_IP}/24"), "dev", "eth0"]);
        server.ip(&["addr", "add", &format!("{SERVER_ALT_IP}/24"), "dev", "eth0"]);
        Lab {
            procs: Vec::new(),
            daemons: Vec::new(),
            sites: Vec::new(),
            server,
            inet,
            id,
            v6: false,
            v6_lans: Vec::new(),
        }
    }

    /// The prefix of this lab's namespace names.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A lab with one client site behind each of `nats`, in that order (site `i` is `nats[i]`).
    pub fn with_sites(nats: &[Nat]) -> Lab {
        let mut lab = Lab::new();
        for &nat in nats {
            lab.add_site(nat);
        }
        lab
    }

    /// Adds a client site behind `nat` and returns its index.
    pub fn add_site(&mut self, nat: Nat) -> usize {
        let k = self.sites.len() + 1;
        let public_ip = format!("203.0.113.{}", 100 + k);
        let base = 16 * k;
        let lan_router = format!("198.51.100.{}", base + 1);
        let client_ip = format!("198.51.100.{}", base + 10);
        let lan = format!("198.51.100.{base}/28");

        let router = Netns::create(format!("{}-r{k}", self.id));
        let client = Netns::create(format!("{}-c{k}", self.id));
        veth(&router, "wan", &self.inet, &format!("r{k}"));
        self.inet
            .ip(&["link", "set", &format!("r{k}"), "master", "br0"]);
        router.ip(&["addr", "add", &format!("{public_ip}/24"), "dev", "wan"]);
        router.forwarding();
        // Only a site without NAT has a routable LAN; NATed LANs stay unreachable from the
        // "internet", as private networks are. The internet routes it: the server and every
        // other site's router reach it, so a direct path exists between sites where one should.
        if nat == Nat::OpenInternet {
            self.server.ip(&["route", "add", &lan, "via", &public_ip]);
            for other in &self.sites {
                other.router.ip(&["route", "add", &lan, "via", &public_ip]);
            }
        }
        for other in self.sites.iter().filter(|o| o.nat == Nat::OpenInternet) {
            router.ip(&["route", "add", &other.lan, "via", &other.public_ip]);
        }

        let home = if nat == Nat::DoubleNat {
            // client -> home router (NAT into 100.64.0.0/10) -> carrier-grade NAT (router).
            let home = Netns::create(format!("{}-h{k}", self.id));
            veth(&home, "wan", &router, "lan");
            router.ip(&["addr", "add", "100.64.0.1/10", "dev", "lan"]);
            home.ip(&["addr", "add", "100.64.0.2/10", "dev", "wan"]);
            home.ip(&["route", "add", "default", "via", "100.64.0.1"]);
            home.forwarding();
            veth(&client, "eth0", &home, "lan");
            home.ip(&["addr", "add", &format!("{lan_router}/28"), "dev", "lan"]);
            masquerade(&home, false);
            masquerade(&router, false);
            Some(home)
        } else {
            veth(&client, "eth0", &router, "lan");
            router.ip(&["addr", "add", &format!("{lan_router}/28"), "dev", "lan"]);
            None
        };
        client.ip(&["addr", "add", &format!("{client_ip}/28"), "dev", "eth0"]);
        client.ip(&["route", "add", "default", "via", &lan_router]);

        match nat {
            Nat::OpenInternet | Nat::DoubleNat => {}
            Nat::PortRestrictedCone => masquerade(&router, false),
            Nat::Ipv4Only => {
                masquerade(&router, false);
                client.run("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            }
            Nat::Ipv6Only => {
                // No IPv4 at all: the address goes, and its routes with it.
                client.ip(&["-4", "addr", "flush", "dev", "eth0"]);
                self.ipv6_site(k, &router, &client, nat);
            }
            Nat::Ipv6Open | Nat::Ipv6Firewall | Nat::Nat66 => {
                masquerade(&router, false);
                self.ipv6_site(k, &router, &client, nat);
            }
            Nat::Symmetric => masquerade(&router, true),
            Nat::SymmetricIpv6Firewall => {
                masquerade(&router, true);
                self.ipv6_site(k, &router, &client, nat);
            }
            Nat::UdpBlocked => {
                masquerade(&router, false);
                router.run("iptables", &["-A", "FORWARD", "-p", "udp", "-j", "DROP"]);
            }
            Nat::UdpRejected | Nat::UdpProhibited => {
                masquerade(&router, false);
                let with = match nat {
                    Nat::UdpRejected => "icmp-port-unreachable",
                    _ => "icmp-admin-prohibited",
                };
                router.run("iptables", &["-A", "FORWARD", "-p", "udp", "-j", "REJECT", "--reject-with", with]);
            }
            Nat::Only443 => {
                masquerade(&router, false);
                router.run("iptables", &["-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]);
                router.run("iptables", &["-A", "FORWARD", "-o", "wan", "-p", "tcp", "--dport", "443", "-j", "ACCEPT"]);
                router.run("iptables", &["-A", "FORWARD", "-o", "wan", "-j", "DROP"]);
            }
            Nat::FullCone => {
                router.run("iptables", &["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "SNAT", "--to-source", &public_ip]);
                router.run("iptables", &["-t", "nat", "-A", "PREROUTING", "-i", "wan", "-j", "DNAT", "--to-destination", &client_ip]);
            }
            Nat::RestrictedCone => router.nft(&format!(
                "table ip lab {{
                    set seen {{ type ipv4_addr . inet_service; flags dynamic,timeout; timeout 120s; }}
                    chain forward_lab {{ type filter hook forward priority 0;
                        oifname \"wan\" meta l4proto udp update @seen {{ ip daddr . udp sport timeout 120s }}
                    }}
                    chain pre {{ type nat hook prerouting priority -100;
                        iifname \"wan\" meta l4proto udp ip saddr . udp dport @seen dnat to {client_ip}
                    }}
                    chain post {{ type nat hook postrouting priority 100;
                        oifname \"wan\" snat to {public_ip}
                    }}
                    chain input_lab {{ type filter hook input priority 0;
                        iifname \"wan\" meta l4proto udp drop
                    }}
                }}"
            )),
            Nat::AddressDependentMapping => router.nft(&format!(
                "table ip lab {{
                    chain post {{ type nat hook postrouting priority 100;
                        oifname \"wan\" meta l4proto udp snat to {public_ip}:jhash ip saddr . udp sport . ip daddr mod 20000 offset 40000
                    }}
                    chain input_lab {{ type filter hook input priority 0;
                        iifname \"wan\" meta l4proto udp drop
                    }}
                }}"
            )),
        }
        let client_ip = match nat {
            Nat::Ipv6Only => format!("2001:db8:{k}::10"),
            _ => client_ip,
        };
        self.sites.push(Site {
            nat,
            client,
            router,
            home,
            client_ip,
            public_ip,
            lan,
        });
        self.sites.len() - 1
    }

    /// IPv6 for site `k`: the server's addresses (once), the router's on the internet
    /// (`2001:db8::1K/64`), the LAN (`2001:db8:K::/64` routed, or `fd00:K::/64` behind NAT66)
    /// and what `nat` filters or translates. Addresses skip duplicate address detection.
    fn ipv6_site(&mut self, k: usize, router: &Netns, client: &Netns, nat: Nat) {
        let add = |ns: &Netns, addr: &str, dev: &str| {
            ns.ip(&["-6", "addr", "add", addr, "dev", dev, "nodad"]);
        };
        if !self.v6 {
            add(&self.server, &format!("{SERVER_IP6}/64"), "eth0");
            add(&self.server, &format!("{SERVER_ALT_IP6}/64"), "eth0");
            self.v6 = true;
        }
        let wan = format!("2001:db8::1{k:02}");
        add(router, &format!("{wan}/64"), "wan");
        router.run("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
        let prefix = match nat {
            Nat::Nat66 => format!("fd00:{k}::"),
            _ => format!("2001:db8:{k}::"),
        };
        add(router, &format!("{prefix}1/64"), "lan");
        add(client, &format!("{prefix}10/64"), "eth0");
        client.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &format!("{prefix}1"),
        ]);
        match nat {
            Nat::Nat66 => masquerade_with(router, "ip6tables", false),
            _ => {
                let lan = format!("{prefix}/64");
                self.server.ip(&["-6", "route", "add", &lan, "via", &wan]);
                // The internet routes every routed IPv6 LAN: sites reach each other directly.
                for (j, other) in &self.v6_lans {
                    ip(&["-n", other, "-6", "route", "add", &lan, "via", &wan]);
                    router.ip(&[
                        "-6",
                        "route",
                        "add",
                        &format!("2001:db8:{j}::/64"),
                        "via",
                        &format!("2001:db8::1{j:02}"),
                    ]);
                }
                self.v6_lans.push((k, router.name.clone()));
                if matches!(
                    nat,
                    Nat::Ipv6Firewall | Nat::Ipv6Only | Nat::SymmetricIpv6Firewall
                ) {
                    router.run(
                        "ip6tables",
                        &[
                            "-A",
                            "FORWARD",
                            "-m",
                            "conntrack",
                            "--ctstate",
                            "ESTABLISHED,RELATED",
                            "-j",
                            "ACCEPT",
                        ],
                    );
                    router.run("ip6tables", &["-A", "FORWARD", "-i", "wan", "-j", "DROP"]);
                }
            }
        }
    }

    /// Drops IPv4 UDP between client sites (their routers forward none to or from another
    /// site's public address), so that a direct path between two sites can only be IPv6.
    pub fn block_ipv4_udp_between_sites(&self) {
        for site in &self.sites {
            for other in self.sites.iter().filter(|o| o.public_ip != site.public_ip) {
                for dir in ["-d", "-s"] {
                    site.router.run(
                        "iptables",
                        &[
                            "-I",
                            "FORWARD",
                            "-p",
                            "udp",
                            dir,
                            &other.public_ip,
                            "-j",
                            "DROP",
                        ],
                    );
                }
            }
        }
    }

    /// natkit-signal dual-stack in the server namespace: its web port on `[::]:8080` (both
    /// families) and its relay on 203.0.113.1:3478 and [2001:db8::1]:3478 (an IPv6 site first).
    /// Returns the `ws://` URLs of each family.
    pub fn start_natkit_signal_dual(&mut self, turn_secret: &str) -> (String, String) {
        assert!(
            self.v6,
            "add an IPv6 site first: the server's IPv6 addresses come with it"
        );
        let bin = workspace_bin("natkit-signal");
        let mut cmd = self.server.cmd(bin.to_str().expect("utf-8 path"));
        cmd.env("NATKIT_TURN_SECRET", turn_secret)
            .env("RUST_LOG", "error")
            .args(["--listen", "[::]:8080"])
            .args(["--relay-listen", &format!("{SERVER_IP}:3478")])
            .args(["--relay-listen", &format!("[{SERVER_IP6}]:3478")])
            .args(["--open", "--metrics-listen", "127.0.0.1:9642"]);
        self.start_daemon(&mut cmd);
        (
            format!("ws://{SERVER_IP}:8080"),
            format!("ws://[{SERVER_IP6}]:8080"),
        )
    }

    /// Drops `percent`% of UDP datagrams forwarded by a site's router, in both directions
    /// (random loss with nftables' `numgen random`; this kernel has no netem).
    pub fn loss(&self, site: usize, percent: u32) {
        self.sites[site].router.nft(&format!(
            "table ip loss {{
                chain forward_loss {{ type filter hook forward priority -10;
                    meta l4proto udp numgen random mod 100 < {percent} drop
                }}
            }}"
        ));
    }

    /// Starts natkit-relay in the server namespace on 203.0.113.1:3478 with 203.0.113.2 as the
    /// RFC 5780 alternate address, and waits until it listens. Returns the primary port.
    /// natkit-relay in the server namespace on IPv6 (`[2001:db8::1]:3478`, alternate IP
    /// 2001:db8::2); needs an IPv6 site first. Returns its port.
    pub fn start_natkit_relay_v6(&mut self, secret: &str) -> u16 {
        let bin = workspace_bin("natkit-relay");
        let mut cmd = self.server.cmd(bin.to_str().expect("utf-8 path"));
        cmd.env("NATKIT_TURN_SECRET", secret)
            .args(["--listen", &format!("[{SERVER_IP6}]:3478")])
            .args(["--alt-ip", SERVER_ALT_IP6, "--metrics-listen", "off"]);
        self.start_daemon(&mut cmd).addr("stun").port()
    }

    pub fn start_natkit_relay(&mut self, secret: &str) -> u16 {
        let bin = workspace_bin("natkit-relay");
        let mut cmd = self.server.cmd(bin.to_str().expect("utf-8 path"));
        cmd.env("NATKIT_TURN_SECRET", secret)
            .args([
                "--listen",
                &format!("{SERVER_IP}:3478"),
                "--alt-ip",
                SERVER_ALT_IP,
            ])
            .args(["--metrics-listen", "off"]);
        let port = self.start_daemon(&mut cmd).addr("stun").port();
        port
    }

    /// Starts natkit-signal in the server namespace: HTTP/WebSocket on 203.0.113.1:8080 and its
    /// relay on 203.0.113.1:3478 with 203.0.113.2 as RFC 5780 alternate address (so peers in
    /// `auto` can tell symmetric NATs apart). Returns the `ws://` URL once the relay listens.
    pub fn start_natkit_signal(&mut self, turn_secret: &str) -> String {
        self.start_natkit_signal_with(turn_secret, &[]).0
    }

    /// [`Lab::start_natkit_signal`] with extra environment (`NATKIT_SIGNAL_CREDENTIAL_TTL`,
    /// `NATKIT_MAX_LIFETIME`, ...). Also returns the process id, for tests that stop the server
    /// and start it again (same addresses, same secret) to show clients recover.
    pub fn start_natkit_signal_with(
        &mut self,
        turn_secret: &str,
        env: &[(&str, &str)],
    ) -> (String, u32) {
        self.start_signal(turn_secret, env, true, &[])
    }

    /// [`Lab::start_natkit_signal`] whose relay also serves TURN over TLS on 203.0.113.1:5349 with
    /// the PEM files given (the certificate must name the IP 203.0.113.1, the `turns:` host), and
    /// over TCP on 3478 unless `tcp` is false. Returns the `ws://` URL.
    pub fn start_natkit_signal_tls(
        &mut self,
        turn_secret: &str,
        cert: &std::path::Path,
        key: &std::path::Path,
        tcp: bool,
    ) -> String {
        let mut flags = tls_flags(5349, cert, key);
        flags.extend([
            "--relay-tcp".to_owned(),
            if tcp { "on" } else { "off" }.to_owned(),
        ]);
        self.start_signal(turn_secret, &[], true, &flags).0
    }

    /// natkit-signal with its TLS port on 443 (HTTPS, WSS and TURN over TLS; a certificate for
    /// the server's IP) beside the plain web port 8080. Returns the `wss://` URL.
    pub fn start_natkit_signal_443(
        &mut self,
        turn_secret: &str,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> String {
        self.start_signal(turn_secret, &[], true, &tls_flags(443, cert, key));
        format!("wss://{SERVER_IP}:443")
    }

    /// natkit-signal as most operators run it: one IP (203.0.113.1), no RFC 5780 alternate IP.
    /// Returns the `ws://` URL.
    pub fn start_natkit_signal_one_ip(&mut self, turn_secret: &str) -> String {
        self.start_signal(turn_secret, &[], false, &[]).0
    }

    fn start_signal(
        &mut self,
        turn_secret: &str,
        env: &[(&str, &str)],
        alt_ip: bool,
        extra: &[String],
    ) -> (String, u32) {
        let bin = workspace_bin("natkit-signal");
        let mut cmd = self.server.cmd(bin.to_str().expect("utf-8 path"));
        cmd.env("NATKIT_TURN_SECRET", turn_secret)
            .env("NATKIT_ALT_IP", if alt_ip { SERVER_ALT_IP } else { "" })
            .env("RUST_LOG", "error")
            .envs(env.iter().copied())
            .args(["--listen", &format!("{SERVER_IP}:8080")])
            .args(["--relay-listen", &format!("{SERVER_IP}:3478")])
            // The lab's peers are about NATs, not tokens: an open server, metrics on the
            // server's loopback.
            .args(["--open", "--metrics-listen", "127.0.0.1:9642"])
            .args(extra);
        let d = self.start_daemon(&mut cmd);
        (d.ws_url(), d.id())
    }

    /// Starts a natkit server (`cmd` runs inside a namespace of this lab) and waits for its
    /// `listening` line; it is killed when the lab is dropped.
    pub fn start_daemon(&mut self, cmd: &mut Command) -> &Daemon {
        self.daemons.push(Daemon::start(cmd));
        self.daemons.last().expect("just pushed")
    }

    /// Kills (SIGKILL) and reaps a process this lab started, as a crash or `docker kill` would.
    pub fn kill(&mut self, pid: u32) {
        if let Some(d) = self.daemons.iter_mut().find(|d| d.id() == pid) {
            return d.process().kill();
        }
        self.procs
            .iter_mut()
            .find(|p| p.id() == pid)
            .unwrap_or_else(|| panic!("pid {pid} was not started by this lab"))
            .kill();
    }

    /// Starts a long-running process (a third-party server); it is killed when the lab is
    /// dropped.
    pub fn spawn(&mut self, cmd: &mut Command) -> &mut Process {
        self.procs.push(Process::spawn(cmd));
        self.procs.last_mut().expect("just pushed")
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first, then the namespaces they run in (each deleted by its own Drop).
        self.daemons.clear();
        self.procs.clear();
    }
}

/// MASQUERADE out of `wan`, dropping unsolicited inbound UDP at the router itself so that such
/// packets never create conntrack entries that would later clash with outbound mappings.
/// natkit-signal's TLS port on the server's IP and `port`, with these PEM files, `turns:` naming
/// the IP; the lab's peers outside the TLS tests' sites join over ws:// on 8080 (`--plain-api`).
fn tls_flags(port: u16, cert: &std::path::Path, key: &std::path::Path) -> Vec<String> {
    vec![
        "--plain-api".to_owned(),
        "--tls-listen".to_owned(),
        format!("{SERVER_IP}:{port}"),
        "--tls-cert".to_owned(),
        cert.display().to_string(),
        "--tls-key".to_owned(),
        key.display().to_string(),
        "--tls-name".to_owned(),
        SERVER_IP.to_owned(),
    ]
}

fn masquerade(router: &Netns, random_fully: bool) {
    masquerade_with(router, "iptables", random_fully);
}

/// MASQUERADE out of `wan` with `tool` (`iptables`, or `ip6tables` for NAT66), unsolicited UDP to
/// the router itself dropped.
fn masquerade_with(router: &Netns, tool: &str, random_fully: bool) {
    let mut args = vec![
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-o",
        "wan",
        "-j",
        "MASQUERADE",
    ];
    if random_fully {
        args.push("--random-fully");
    }
    router.run(tool, &args);
    router.run(
        tool,
        &["-A", "INPUT", "-i", "wan", "-p", "udp", "-j", "DROP"],
    );
}

/// Waits until something listens on UDP `addr` inside `ns` (polls `ss`, 10 s at most).
pub fn wait_udp_listening(ns: &Netns, addr: &str) {
    for _ in 0..200 {
        let out = ns.run("ss", &["-Hnlu", "src", addr]);
        if !out.stdout.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on udp {addr} in {}", ns.name);
}
