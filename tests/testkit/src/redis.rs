//! A real `redis-server` (Debian's package) on 127.0.0.1 for the cluster tests: no persistence,
//! stopped and reaped when dropped, restartable on the same port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{third_party_tcp_port, wait_until, Process};

pub struct RedisServer {
    pub addr: SocketAddr,
    process: Option<Process>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        let mut last = String::new();
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", third_party_tcp_port())
                .parse()
                .expect("addr");
            let mut r = RedisServer {
                addr,
                process: None,
            };
            match r.spawn() {
                Ok(()) => return r,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &self.addr.port().to_string(),
        ])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let mut p = Process::spawn(&mut cmd);
        for _ in 0..250 {
            if self.ping() {
                self.process = Some(p);
                return Ok(());
            }
            if let Ok(Some(status)) = p.child().try_wait() {
                return Err(format!(
                    "exited with {status} (port {} taken?)",
                    self.addr.port()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("no PONG within 5 s".into())
    }

    /// Does it answer PING now?
    pub fn ping(&self) -> bool {
        self.command("PING").is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Sends one inline command and returns the raw reply.
    pub fn command(&self, line: &str) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        s.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Kills it (SIGKILL: everything in memory is gone).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
        wait_until("redis-server gone", Duration::from_secs(5), || !self.ping());
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("redis-server restarts on its port");
    }
}
