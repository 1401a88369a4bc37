//! coturn's `turnserver` set up as the benchmark compares it: UDP only on loopback, TURN REST API
//! secret, loopback peers allowed, logging off, its pid file and user database in `dir`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

/// Adds turnserver's arguments to `cmd` (which runs `turnserver`, possibly under `taskset`).
pub fn args(
    cmd: &mut Command,
    listen: SocketAddr,
    secret: &str,
    relay_ports: (u16, u16),
    dir: &Path,
) {
    cmd.args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp"])
        .arg(format!("--listening-ip={}", listen.ip()))
        .arg(format!("--relay-ip={}", listen.ip()))
        .arg(format!("--listening-port={}", listen.port()))
        .args([
            "--use-auth-secret",
            "--realm=natkit",
            "--allow-loopback-peers",
        ])
        .arg(format!("--static-auth-secret={secret}"))
        .arg(format!("--min-port={}", relay_ports.0))
        .arg(format!("--max-port={}", relay_ports.1))
        .args(["--no-stdout-log", "--log-file=/dev/null"])
        .arg(format!("--pidfile={}", dir.join("pid").display()))
        .arg(format!("--userdb={}", dir.join("db").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
}
