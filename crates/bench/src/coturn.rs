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
    cmd.args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp"]);
    common(cmd, listen, secret, relay_ports, dir);
}

/// turnserver with TURN over TCP on `listen`'s port and over TLS on `tls_port` with the PEM
/// certificate and key given (the streams benchmark; DTLS stays off).
pub fn stream_args(
    cmd: &mut Command,
    listen: SocketAddr,
    tls: (u16, &Path, &Path),
    secret: &str,
    relay_ports: (u16, u16),
    dir: &Path,
) {
    cmd.args(["-n", "--no-cli", "--no-dtls"])
        .arg(format!("--tls-listening-port={}", tls.0))
        .arg(format!("--cert={}", tls.1.display()))
        .arg(format!("--pkey={}", tls.2.display()));
    common(cmd, listen, secret, relay_ports, dir);
}

fn common(
    cmd: &mut Command,
    listen: SocketAddr,
    secret: &str,
    relay_ports: (u16, u16),
    dir: &Path,
) {
    cmd.arg(format!("--listening-ip={}", listen.ip()))
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
