//! deploy/ for real: the Dockerfile's runtime stage on a Debian base made here (debootstrap +
//! `docker import`, no registry), the compose stack (one `natkit` service: natkit-signal with its
//! embedded relay, the page, WSS and TURN over TLS on 443, host networking, the secrets and the
//! certificate as files) brought up by `docker-compose` on a private dockerd that runs inside the
//! lab's server namespace, so "host networking" means the lab's public addresses 203.0.113.1 and
//! .2. Then, from two client namespaces behind symmetric NATs: nat-probe against the relay, two
//! natkit-peers joining over WSS on 443 and exchanging messages through the relay, and the
//! container restarted under them; and from a third site whose router drops all UDP, a
//! natkit-peer that gets through over TURN/TCP or TLS (the certificate made by the test from its
//! own CA).
//!
//! Compose v2 (`docker compose`) runs the whole scenario; Compose v1 (`docker-compose`) the same
//! file up to a relayed exchange.
//!
//! The host-built binaries are fed to the Dockerfile's `prebuilt` stage (the issue allows it); the
//! runtime stage is the one users get. Needs root, dockerd, docker-compose and debootstrap (under
//! CI their absence is a failure, not a skip). Everything is torn down, also on failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use natkit_lab::{require_root, sh, Lab, Nat};
use natkit_testkit::events::{assert_session_recovers, late, send_every_second, EventProcess};
use natkit_testkit::workspace_bin;

/// Debian's docker client: it builds with BuildKit by itself (`DOCKER_BUILDKIT=1`), which skips
/// the Rust builder stage. A newer client without the buildx plugin falls back to the legacy
/// builder, which builds every stage and would try to pull `rust:1-bookworm`.
const DOCKER: &str = "/usr/bin/docker";
const SECRET: &str = "compose-lab-secret-0123456789abcdef";
const TOKEN_SECRET: &str = "compose-lab-token-secret-fedcba9876543210";

/// A join token for `room`, minted by `natkit-signal token` with the stack's token secret (as an
/// application server would).
fn join_token(room: &str) -> String {
    let minted = sh(Command::new(workspace_bin("natkit-signal"))
        .env("NATKIT_SIGNAL_TOKEN_SECRET", TOKEN_SECRET)
        .args(["token", "--room", room, "--ttl", "3600"]));
    String::from_utf8_lossy(&minted.stdout).trim().to_owned()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_tools() {
    let v2 = Command::new(DOCKER).args(["compose", "version"]).output();
    assert!(
        v2.is_ok_and(|o| o.status.success()),
        "`docker compose` (Compose v2) is missing: tests/run installs Debian trixie's plugin"
    );
    for tool in [
        DOCKER,
        "dockerd",
        "docker-compose",
        "debootstrap",
        "strip",
        "nsenter",
        "cgroupfs-mount",
    ] {
        let found = if tool.starts_with('/') {
            Path::new(tool).exists()
        } else {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        assert!(
            found,
            "{tool} is missing: install docker.io, docker-compose, debootstrap, binutils, \
             util-linux and cgroupfs-mount (tests/run and .ci/run do)"
        );
    }
}

/// The trimmed stdout of a command that must have succeeded; panics with its output otherwise.
fn succeeded(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A dockerd of our own (own socket, data and exec roots, no bridge, no iptables) inside the
/// lab's server namespace. Stopped, and its directory removed, on drop.
struct Dockerd {
    child: Child,
    dir: PathBuf,
}

impl Dockerd {
    fn start(lab: &Lab) -> Dockerd {
        // Without systemd nothing mounts the cgroup v1 hierarchies dockerd needs: do it once.
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        if !v2 && !Path::new("/sys/fs/cgroup/devices").exists() {
            // Both compose tests may get here at once (nextest runs them in parallel processes).
            sh(Command::new("flock").args(["/run/natkit-lab-cgroupfs.lock", "cgroupfs-mount"]));
        }
        let dir = PathBuf::from(format!("/tmp/{}-docker", lab.id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = |p: &str| dir.join(p).to_str().unwrap().to_owned();
        // nsenter, not `ip netns exec`: the latter remounts /sys in a new mount namespace, which
        // hides the cgroup hierarchy dockerd needs. Only the network namespace changes here.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", lab.server.name))
            .arg("dockerd")
            .args(["--host", &format!("unix://{}", d("docker.sock"))])
            .args(["--data-root", &d("data"), "--exec-root", &d("exec")])
            .args(["--pidfile", &d("docker.pid")])
            .args(["--bridge", "none", "--iptables=false", "--ip-masq=false"])
            .stdout(std::fs::File::create(d("dockerd.log")).unwrap())
            .stderr(std::fs::File::create(d("dockerd.err")).unwrap())
            .spawn()
            .expect("start dockerd");
        let me = Dockerd { child, dir };
        let until = Instant::now() + Duration::from_secs(60);
        while !me.docker(&["info"]).status.success() {
            assert!(
                Instant::now() < until,
                "dockerd did not come up: {}",
                std::fs::read_to_string(me.dir.join("dockerd.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        me
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_BUILDKIT", "1")
            .args(args)
            .output()
            .expect("run docker")
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        succeeded(self.docker(args), &format!("docker {args:?}"))
    }

    /// `docker build` of deploy/Dockerfile on `base`, offline, with `args` (a target, build
    /// arguments), tagged `tag`, from the context `ctx`.
    fn build(&self, base: &str, args: &[&str], tag: &str, ctx: &Path) {
        let dockerfile = repo().join("deploy/Dockerfile");
        let base_arg = format!("RUNTIME_BASE={base}");
        let mut all = vec![
            "build",
            "--network",
            "none",
            "-f",
            dockerfile.to_str().unwrap(),
        ];
        all.extend(["--build-arg", &base_arg]);
        all.extend(args);
        all.extend(["-t", tag, ctx.to_str().unwrap()]);
        self.docker_ok(&all);
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its containers and unmount their layers.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Anything still mounted under our directory (a crashed dockerd) goes before removal.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                self.dir.display()
            ))
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which Compose runs the file: v2 as the docker CLI plugin (`docker compose`), or v1's
/// `docker-compose`.
#[derive(Clone, Copy, Debug)]
enum Flavour {
    V2,
    V1,
}

impl Flavour {
    fn command(self) -> Command {
        match self {
            Flavour::V2 => {
                let mut c = Command::new(DOCKER);
                c.arg("compose");
                c
            }
            Flavour::V1 => Command::new("docker-compose"),
        }
    }
}

/// Compose on a file of deploy/ with a lab env file; `down` on drop.
struct Compose<'a> {
    flavour: Flavour,
    dockerd: &'a Dockerd,
    /// `docker-compose.yml` or `docker-compose.cluster.yml`.
    file: &'static str,
    env_file: PathBuf,
    project: String,
}

impl Compose<'_> {
    fn run(&self, args: &[&str]) -> Output {
        self.flavour
            .command()
            .env("DOCKER_HOST", self.dockerd.host())
            .arg("--project-directory")
            .arg(repo().join("deploy"))
            .arg("-f")
            .arg(repo().join("deploy").join(self.file))
            .arg("--env-file")
            .arg(&self.env_file)
            .args(["-p", &self.project])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", self.flavour))
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(
            self.run(args),
            &format!("compose ({:?}) {args:?}", self.flavour),
        )
    }

    /// Waits until every service's health check passes.
    fn wait_healthy(&self, services: &[&str], within: Duration) {
        let until = Instant::now() + within;
        for svc in services {
            let id = self.ok(&["ps", "-q", svc]);
            loop {
                let status =
                    self.dockerd
                        .docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", &id]);
                if status == "healthy" {
                    break;
                }
                if Instant::now() > until {
                    let logs = self.run(&["logs", "--no-color", svc]);
                    panic!(
                        "{svc} is {status} after {within:?}; logs:\n{}{}",
                        String::from_utf8_lossy(&logs.stdout),
                        String::from_utf8_lossy(&logs.stderr)
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

impl Drop for Compose<'_> {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--volumes", "--timeout", "5"]);
    }
}

/// Makes the cached root filesystem tarball once: under a lock (the v1 and v2 tests run in
/// parallel processes, and two debootstraps in one directory trip over each other), in a tmpfs
/// of its own (debootstrap needs device nodes and exec, which a target directory on a nodev or
/// noexec mount would refuse). The packages come from the Debian mirror the machine's apt uses.
const MAKE_ROOTFS: &str = r#"
set -e
tar="$1/bookworm-minbase-redis-libcap.tar"
[ -f "$tar" ] && exit 0
root="$(mktemp -d)"
mount -t tmpfs -o size=2g,mode=0755 natkit-rootfs "$root"
trap 'umount -l "$root"; rmdir "$root"' EXIT
# The mirror this machine's apt uses for bookworm/main (no address is written into the project).
mirror="$(apt-cache policy 2>/dev/null | awk '$3 == "bookworm/main" && $2 ~ /^(https?|file):/ { print $2; exit }')"
[ -n "$mirror" ] || { echo "no bookworm/main mirror in this machine's apt configuration" >&2; exit 1; }
debootstrap --variant=minbase --include=redis-server,libcap2-bin bookworm "$root" "$mirror" >&2
tar -C "$root" -cf "$tar.part" .
mv "$tar.part" "$tar"
"#;

/// The runtime base: a minbase Debian bookworm root filesystem with Debian's redis-server (for
/// the cluster file's Redis image), imported as an image. The tarball is cached in the target
/// directory; a fresh machine makes it in about half a minute.
fn import_runtime_base(dockerd: &Dockerd) -> &'static str {
    let tag = "natkit-runtime-base:bookworm";
    let cache = workspace_bin("natkit-relay")
        .parent()
        .unwrap()
        .join("../natkit-lab-cache");
    std::fs::create_dir_all(&cache).unwrap();
    sh(Command::new("flock")
        .arg(cache.join("rootfs.lock"))
        .args(["sh", "-c", MAKE_ROOTFS, "make-rootfs"])
        .arg(&cache));
    let tar = cache.join("bookworm-minbase-redis-libcap.tar");
    dockerd.docker_ok(&["import", tar.to_str().unwrap(), tag]);
    tag
}

#[test]
fn compose_v2_stack_serves_natted_peers_and_survives_a_restart() {
    if !require_root("compose_v2_stack_serves_natted_peers_and_survives_a_restart") {
        return;
    }
    deploy_and_check(Flavour::V2, true);
}

/// The same file with Compose v1: deployment, health, nat-probe and a relayed exchange (the
/// restart is left to the v2 test).
#[test]
fn compose_v1_stack_serves_natted_peers() {
    if !require_root("compose_v1_stack_serves_natted_peers") {
        return;
    }
    deploy_and_check(Flavour::V1, false);
}

/// The image: the Dockerfile's runtime stage over host-built (stripped) binaries, checked to run
/// as the unprivileged user.
fn build_image(dockerd: &Dockerd, lab: &Lab, base: &str) -> String {
    let ctx = dockerd.dir.join("ctx");
    std::fs::create_dir_all(ctx.join("out")).unwrap();
    for bin in ["natkit-relay", "natkit-signal", "nat-probe", "natkit-peer"] {
        sh(Command::new("strip")
            .arg("-o")
            .arg(ctx.join("out").join(bin))
            .arg(workspace_bin(bin)));
    }
    let image = format!("natkit:{}", lab.id());
    dockerd.build(base, &["--build-arg", "BINARIES=prebuilt"], &image, &ctx);
    let user = dockerd.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "id",
        &image,
        "-u",
    ]);
    assert_eq!(
        user, "10001",
        "the runtime runs as the unprivileged natkit user"
    );

    image
}

fn deploy_and_check(flavour: Flavour, restart_relay: bool) {
    require_tools();
    let mut lab = Lab::with_sites(&[Nat::Symmetric, Nat::Symmetric]);
    // A site whose router drops all UDP: only TURN over TCP/TLS gets it out.
    let blocked = lab.add_site(Nat::UdpBlocked);
    // An IPv6-only site (the server gets its IPv6 addresses with it): the deployment serves both
    // families.
    let six = lab.add_site(Nat::Ipv6Only);
    let dockerd = Dockerd::start(&lab);
    let base = import_runtime_base(&dockerd);

    let image = build_image(&dockerd, &lab, base);
    // The operator's files: the committed example env, with the lab's addresses. One IP, as
    // almost every deployment has: the example's NATKIT_ALT_IP stays empty.
    let secret = dockerd.dir.join("turn_secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    sh(Command::new("chmod").arg("0444").arg(&secret));
    let token_secret = dockerd.dir.join("token_secret");
    std::fs::write(&token_secret, format!("{TOKEN_SECRET}\n")).unwrap();
    sh(Command::new("chmod").arg("0444").arg(&token_secret));
    // The TLS certificate, from a CA made here, for the server's IP (the lab has no DNS), as
    // deploy/tls/tls.crt and tls.key.
    let authority = natkit_testkit::tls::TestCa::new("natkit compose lab CA");
    let tls_dir = dockerd.dir.join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let tls = authority.issue(&["203.0.113.1", "2001:db8::1"], &tls_dir, "tls");
    let ca = authority.write_ca(&dockerd.dir, "ca.pem");
    for f in [&tls.cert, &tls.key] {
        sh(Command::new("chmod").arg("0444").arg(f));
    }
    let example = std::fs::read_to_string(repo().join("deploy/natkit.env.example")).unwrap();
    let mut env: Vec<String> = example
        .lines()
        .filter(|l| {
            !l.starts_with("NATKIT_PUBLIC_IP=")
                && !l.starts_with("NATKIT_RELAY_LISTEN=")
                && !l.starts_with("NATKIT_IMAGE=")
                && !l.starts_with("NATKIT_TLS_NAME=")
                && !l.starts_with("NATKIT_TLS_LISTEN=")
        })
        .map(str::to_owned)
        .collect();
    env.extend([
        // One address per family, as the example says for a dual-stack host.
        "NATKIT_PUBLIC_IP=203.0.113.1,2001:db8::1".to_owned(),
        "NATKIT_RELAY_LISTEN=203.0.113.1:3478,[2001:db8::1]:3478".to_owned(),
        "NATKIT_TLS_LISTEN=[::]:443".to_owned(),
        format!("NATKIT_IMAGE={image}"),
        format!("NATKIT_TURN_SECRET_FILE={}", secret.display()),
        format!("NATKIT_TOKEN_SECRET_FILE={}", token_secret.display()),
        "NATKIT_TLS_NAME=203.0.113.1".to_owned(),
        format!("NATKIT_TLS_DIR={}", tls_dir.display()),
    ]);
    let env_file = dockerd.dir.join("lab.env");
    std::fs::write(&env_file, env.join("\n") + "\n").unwrap();
    let compose = Compose {
        flavour,
        dockerd: &dockerd,
        file: "docker-compose.yml",
        env_file,
        project: lab.id().to_owned(),
    };
    compose.ok(&["config", "-q"]);
    compose.ok(&["up", "-d", "--no-build"]);
    compose.wait_healthy(&["natkit"], Duration::from_secs(90));

    // The secret is a mounted file, not in the environment or the image.
    let natkit_id = compose.ok(&["ps", "-q", "natkit"]);
    let inspect = dockerd.docker_ok(&["inspect", &natkit_id]);
    assert!(
        !inspect.contains(SECRET),
        "the TURN secret leaked into the container's config"
    );
    let history = dockerd.docker_ok(&["history", "--no-trunc", &image]);
    assert!(!history.contains(SECRET));
    assert!(!inspect.contains(TOKEN_SECRET) && !history.contains(TOKEN_SECRET));

    // Metrics, from the server namespace (host networking: the relay's is on its loopback).
    let scrape = |addr: &str| -> String {
        let out = lab.server.run(
            "bash",
            &[
                "-c",
                &format!(
                    "exec 3<>/dev/tcp/{}; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
                    addr.replace(':', "/")
                ),
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let metrics = scrape("127.0.0.1:9642");
    assert!(
        metrics.contains("natkit_signal_") && metrics.contains("natkit_relay_"),
        "signal and relay metrics on one page, on the server's loopback"
    );
    assert!(
        !scrape("203.0.113.1:8080").contains("natkit_signal_"),
        "no metrics on the public listener"
    );

    // nat-probe from a client behind a symmetric NAT, against the one-IP relay container: the
    // mapping changes towards its alternate port.
    let probe = lab.sites[0].client.run(
        workspace_bin("nat-probe").to_str().unwrap(),
        &["203.0.113.1:3478", "--json"],
    );
    let report: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap_or_else(|e| {
        panic!(
            "nat-probe output is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&probe.stdout),
            String::from_utf8_lossy(&probe.stderr)
        )
    });
    assert_eq!(report["nat_type"], "symmetric", "{report}");
    assert_eq!(report["force_turn"], true, "{report}");

    // The deployment requires tokens: a client without one is refused...
    let refused = lab.sites[0]
        .client
        .cmd(workspace_bin("natkit-peer").to_str().unwrap())
        .env("RUST_LOG", "off")
        .args(["--signal", "wss://203.0.113.1:443", "--room", "compose"])
        .args(["--tls-ca", ca.to_str().unwrap()])
        .args(["--json", "--timeout", "10", "--send", "x"])
        .output()
        .unwrap();
    let refused_out = String::from_utf8_lossy(&refused.stdout);
    assert!(
        !refused.status.success(),
        "a tokenless client must be refused: {refused_out}"
    );
    assert!(refused_out.contains("unauthorized"), "{refused_out}");
    // ...and one with a token the application server minted gets in.
    let token = join_token("compose");
    // Two peers behind symmetric NATs, joining over WSS on the one TLS port, relayed by the
    // same process.
    let peer = |site: usize, mode: &str| {
        EventProcess::spawn(
            natkit_peer(&lab, site, &token)
                .args(["--signal", "wss://203.0.113.1:443", "--room", "compose"])
                .args(["--tls-ca", ca.to_str().unwrap()])
                .args(["--json", "--timeout", "150", mode]),
        )
    };
    // From the UDP-blocked site: through the relay over TCP or TLS.
    let blocked_room = "compose-blocked";
    let blocked_token = join_token(blocked_room);
    let in_room = |site: usize, extra: &[&str]| {
        let mut c = lab.sites[site]
            .client
            .cmd(workspace_bin("natkit-peer").to_str().unwrap());
        c.env("RUST_LOG", "off")
            .env("NATKIT_PEER_TOKEN", &blocked_token)
            .args(["--signal", "wss://203.0.113.1", "--room", blocked_room])
            .args(["--json", "--tls-ca", ca.to_str().unwrap()])
            .args(extra);
        c
    };
    let mut blocked_echo = EventProcess::spawn(&mut in_room(0, &["--echo", "--timeout", "60"]));
    blocked_echo.wait_for("probe", Duration::from_secs(20));
    let out = in_room(blocked, &["--send", "through the wall", "--timeout", "40"])
        .output()
        .unwrap();
    blocked_echo.process().kill();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "UDP-blocked client: {text}");
    let connected: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "connected")
        .unwrap_or_else(|| panic!("no connected event: {text}"));
    assert_eq!(connected["local_candidate_type"], "relay", "{connected}");
    assert!(
        matches!(connected["relay_protocol"].as_str(), Some("tcp" | "tls")),
        "{connected}"
    );
    assert!(text.contains("through the wall"), "{text}");

    // From the IPv6-only site over wss://[2001:db8::1] to a peer behind an IPv4 NAT: the pair
    // shares no family and meets through the container's dual-stack relay.
    let six_room = "compose-ipv6";
    let six_token = join_token(six_room);
    let in_six_room = |site: usize, signal: &str, extra: &[&str]| {
        let mut c = lab.sites[site]
            .client
            .cmd(workspace_bin("natkit-peer").to_str().unwrap());
        c.env("RUST_LOG", "off")
            .env("NATKIT_PEER_TOKEN", &six_token)
            .args(["--signal", signal, "--room", six_room])
            .args(["--json", "--tls-ca", ca.to_str().unwrap()])
            .args(extra);
        c
    };
    let mut v4_echo = EventProcess::spawn(&mut in_six_room(
        0,
        "wss://203.0.113.1",
        &["--echo", "--timeout", "60"],
    ));
    v4_echo.wait_for("probe", Duration::from_secs(20));
    let out = in_six_room(
        six,
        "wss://[2001:db8::1]",
        &["--send", "over ipv6", "--timeout", "40"],
    )
    .output()
    .unwrap();
    v4_echo.process().kill();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "IPv6-only client: {text}");
    assert!(text.contains("over ipv6"), "{text}");
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let policy = events.iter().find(|e| e["event"] == "policy").unwrap();
    assert_eq!(policy["rule"], "no-common-family", "{policy}");

    let t0 = Instant::now();
    let echo = peer(0, "--echo");
    echo.wait_for("probe", Duration::from_secs(20));
    let mut chat = peer(1, "--chat");
    let c = chat.wait_for("connected", Duration::from_secs(30));
    // Through the echo's relay: it answers, so it is the pair's relay-only side.
    assert_eq!(c["remote_candidate_type"], "relay", "{c}");
    if !restart_relay {
        let sent = send_every_second(&mut [&mut chat], "m", 3);
        assert!(
            late(&chat, &sent, Duration::from_secs(5)).is_empty(),
            "relayed echoes"
        );
        return;
    }
    // The page over HTTPS on 443: a plain page request is redirected there.
    let redirect = lab.sites[0].client.run(
        "bash",
        &[
            "-c",
            "exec 3<>/dev/tcp/203.0.113.1/8080; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
        ],
    );
    let redirect = String::from_utf8_lossy(&redirect.stdout);
    assert!(
        redirect.starts_with("HTTP/1.0 308") && redirect.contains("location: https://203.0.113.1/"),
        "{redirect}"
    );
    // ...and so is a plain WebSocket client: it must use wss://.
    let plain = natkit_peer(&lab, 0, &token)
        .args(["--signal", "ws://203.0.113.1:8080", "--room", "compose"])
        .args(["--json", "--timeout", "10", "--send", "x"])
        .output()
        .unwrap();
    assert!(!plain.status.success(), "ws:// is redirected, not served");
    // The container restarts: signaling and allocations are gone, the peers must come back.
    assert_session_recovers(&mut chat, &echo, t0, || {
        compose.ok(&["restart", "-t", "5", "natkit"]);
    });
    let restarted = compose.ok(&["ps", "-q", "natkit"]);
    assert_eq!(restarted, natkit_id, "the same container, restarted");
    compose.wait_healthy(&["natkit"], Duration::from_secs(30));
}

/// deploy/docker-compose.cluster.yml in the lab: Redis, two signaling nodes and two relays on
/// the server's two public addresses. Two natkit-peers behind symmetric NATs, each on its own
/// node, connect relayed; the first peer's signaling container is killed and the session goes
/// on, the peer rejoining through the other node.
#[test]
fn compose_cluster_serves_peers_on_two_nodes_and_survives_a_node_kill() {
    if !require_root("compose_cluster_serves_peers_on_two_nodes_and_survives_a_node_kill") {
        return;
    }
    require_tools();
    let lab = Lab::with_sites(&[Nat::Symmetric, Nat::Symmetric]);
    let dockerd = Dockerd::start(&lab);
    let base = import_runtime_base(&dockerd);
    let image = build_image(&dockerd, &lab, base);
    let redis_image = format!("natkit-redis:{}", lab.id());
    dockerd.build(
        base,
        &["--target", "redis"],
        &redis_image,
        &dockerd.dir.join("ctx"),
    );

    let secret = dockerd.dir.join("turn_secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let token_secret = dockerd.dir.join("token_secret");
    std::fs::write(&token_secret, format!("{TOKEN_SECRET}\n")).unwrap();
    for f in [&secret, &token_secret] {
        sh(Command::new("chmod").arg("0444").arg(f));
    }
    let example =
        std::fs::read_to_string(repo().join("deploy/natkit-cluster.env.example")).unwrap();
    let mut env: Vec<String> = example
        .lines()
        .filter(|l| {
            ![
                "NATKIT_A_IP=",
                "NATKIT_B_IP=",
                "NATKIT_IMAGE=",
                "NATKIT_REDIS_IMAGE=",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(str::to_owned)
        .collect();
    env.extend([
        "NATKIT_A_IP=203.0.113.1".to_owned(),
        "NATKIT_B_IP=203.0.113.2".to_owned(),
        format!("NATKIT_IMAGE={image}"),
        format!("NATKIT_REDIS_IMAGE={redis_image}"),
        format!("NATKIT_TURN_SECRET_FILE={}", secret.display()),
        format!("NATKIT_TOKEN_SECRET_FILE={}", token_secret.display()),
    ]);
    let env_file = dockerd.dir.join("cluster.env");
    std::fs::write(&env_file, env.join("\n") + "\n").unwrap();
    let compose = Compose {
        flavour: Flavour::V2,
        dockerd: &dockerd,
        file: "docker-compose.cluster.yml",
        env_file,
        project: format!("{}-cluster", lab.id()),
    };
    compose.ok(&["config", "-q"]);
    compose.ok(&["up", "-d", "--no-build"]);
    let services = ["redis", "relay-a", "relay-b", "signal-a", "signal-b"];
    compose.wait_healthy(&services, Duration::from_secs(90));
    let scrape = |port: u16| -> String {
        let out = lab.server.run(
            "bash",
            &[
                "-c",
                &format!(
                    "exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"
                ),
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let metric = |port: u16, series: &str| natkit_testkit::metric(&scrape(port), series);
    // Both nodes are in step with Redis; both relays announce themselves.
    natkit_testkit::wait_until("both nodes in the cluster", Duration::from_secs(20), || {
        metric(9642, "natkit_signal_cluster_up") == 1.0
            && metric(9644, "natkit_signal_cluster_up") == 1.0
    });

    let token = join_token("cluster");
    let (a, b) = ("ws://203.0.113.1:8080", "ws://203.0.113.2:8080");
    let peer = |site: usize, signal: &str, mode: &str| {
        EventProcess::spawn(
            natkit_peer(&lab, site, &token)
                .args(["--signal", signal, "--room", "cluster", "--peer-id"])
                .arg(if mode == "--echo" { "echo" } else { "chat" })
                .args(["--json", "--timeout", "150", mode]),
        )
    };
    // The echo peer on node a (then b), the chat peer on node b (then a).
    let t0 = Instant::now();
    let echo = peer(0, &format!("{a},{b}"), "--echo");
    echo.wait_for("probe", Duration::from_secs(20));
    let mut chat = peer(1, &format!("{b},{a}"), "--chat");
    let c = chat.wait_for("connected", Duration::from_secs(30));
    // Through the echo's relay: it answers, so it is the pair's relay-only side.
    assert_eq!(c["remote_candidate_type"], "relay", "{c}");
    assert_eq!(
        metric(9642, "natkit_signal_peers_connected"),
        1.0,
        "one peer on node a"
    );
    assert_eq!(
        metric(9644, "natkit_signal_peers_connected"),
        1.0,
        "one peer on node b"
    );
    let before = send_every_second(&mut [&mut chat], "before", 3);
    assert!(late(&chat, &before, Duration::from_secs(5)).is_empty());

    // Node a's container is killed: the data keeps flowing, the echo peer rejoins through b.
    compose.ok(&["kill", "-s", "KILL", "signal-a"]);
    let after = send_every_second(&mut [&mut chat], "after", 12);
    std::thread::sleep(Duration::from_secs(3));
    eprintln!(
        "chat peer:\n{}\necho peer:\n{}",
        chat.timeline(t0),
        echo.timeline(t0)
    );
    let lost = late(&chat, &after, Duration::from_secs(5));
    assert!(
        lost.is_empty(),
        "late or lost after the node kill: {lost:?}"
    );
    let rejoined = echo
        .events()
        .into_iter()
        .map(|(_, e)| e)
        .find(|e| e["event"] == "signaling" && e["state"] == "reconnected")
        .unwrap_or_else(|| panic!("the echo peer did not rejoin: {:?}", echo.events()));
    assert_eq!(rejoined["peers"], serde_json::json!(["chat"]), "{rejoined}");
    assert_eq!(
        metric(9644, "natkit_signal_peers_connected"),
        2.0,
        "both on node b now"
    );
}

/// natkit-peer in `site`'s client namespace with the join `token`, logging off (its events
/// are what the tests read).
fn natkit_peer(lab: &Lab, site: usize, token: &str) -> std::process::Command {
    let mut cmd = lab.sites[site]
        .client
        .cmd(workspace_bin("natkit-peer").to_str().unwrap());
    cmd.env("RUST_LOG", "off").env("NATKIT_PEER_TOKEN", token);
    cmd
}
