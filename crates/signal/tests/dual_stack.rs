//! natkit-signal on both address families, on loopback: its web port on `[::]` answers over
//! IPv4 and IPv6 on one socket, and a dual-stack embedded relay's STUN and TURN URLs are handed
//! out for each family (the IPv6 literal bracketed), each family's listener answering.

use std::process::Command;

use natkit_testkit::{http_get, process::Daemon, workspace_bin};

#[test]
fn the_web_port_and_the_relay_urls_serve_both_families() {
    let d = Daemon::start(
        Command::new(workspace_bin("natkit-signal"))
            .env("NATKIT_TURN_SECRET", "dual-stack-secret")
            .env("NATKIT_ALT_PORT", "0")
            .env("RUST_LOG", "warn")
            .args(["--open", "--listen", "[::]:0", "--metrics-listen", "off"])
            .args(["--trusted-proxy", "127.0.0.1"])
            .args(["--relay-listen", "127.0.0.1:0", "--relay-listen", "[::1]:0"]),
    );
    let port = d.addr("http").port();
    for host in ["127.0.0.1", "[::1]"] {
        assert_eq!(
            http_get(&format!("http://{host}:{port}/healthz")).trim(),
            "ok",
            "{host}"
        );
    }
    // An IPv4 client of the `[::]` socket is its IPv4 address, not `::ffff:127.0.0.1`: a
    // balancer listed as 127.0.0.1 is trusted there.
    let proxied = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"PROXY TCP4 192.0.2.8 127.0.0.1 4001 80\r\nGET /healthz HTTP/1.0\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(proxied.contains(" 200 OK"), "{proxied}");
    let (stun4, stun6) = (d.addr("stun"), d.addr("stun6"));
    assert!(stun4.is_ipv4() && stun6.is_ipv6(), "{stun4} {stun6}");
    let body = http_get(&format!("http://[::1]:{port}/v1/ice-servers"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let urls: Vec<String> = v["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["urls"].as_array().unwrap().iter())
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    for want in [
        format!("stun:{stun4}"),
        format!("turn:{stun4}?transport=udp"),
        format!("stun:{stun6}"),
        format!("turn:{stun6}?transport=udp"),
        format!("turn:{stun6}?transport=tcp"),
    ] {
        assert!(urls.contains(&want), "{want} missing from {urls:?}");
    }
    // Each family's relay listener answers STUN on its own socket.
    for (local, server) in [("127.0.0.1:0", stun4), ("[::1]:0", stun6)] {
        assert!(
            binding_answered(local, server),
            "no Binding answer from {server}"
        );
    }
}

/// A Binding request from `local` to `server`, answered within a second.
fn binding_answered(local: &str, server: std::net::SocketAddr) -> bool {
    let s = std::net::UdpSocket::bind(local).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    // A Binding request: type 0x0001, length 0, the magic cookie, a transaction id.
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    req.extend_from_slice(&[7; 12]);
    s.send_to(&req, server).unwrap();
    let mut buf = [0u8; 512];
    matches!(s.recv_from(&mut buf), Ok((n, from)) if n >= 20 && from == server && buf[0..2] == [0x01, 0x01])
}
