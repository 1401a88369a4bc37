//! Processes a test starts: [`Process`] kills and reaps its child when dropped; [`Daemon`]
//! waits for a natkit server's `listening` line and keeps what it logs.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process, killed (SIGKILL) and reaped when dropped, also when a test panics.
pub struct Process {
    child: Child,
}

impl Process {
    /// Starts `cmd` as it is configured (its standard streams included).
    pub fn spawn(cmd: &mut Command) -> Process {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Process { child }
    }

    /// Takes over a child started elsewhere.
    pub fn adopt(child: Child) -> Process {
        Process { child }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// SIGKILL and reap, as a crash or `docker kill` would end it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (the operator's stop).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends SIGHUP (reload).
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    /// Sends the signal named `name` (`TERM`, `HUP`, `USR1`, ...).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "cannot send SIG{name} to {}", self.id());
    }

    /// Waits for the process to exit; panics if it is still running after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let until = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < until,
                "process {} still running after {within:?}",
                self.id()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a server may take to print its `listening` line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A natkit server (natkit-relay, natkit-signal) that has bound its sockets: the addresses come
/// from its `listening` line, so tests give it port 0 and never race for a free port.
pub struct Daemon {
    process: Process,
    program: String,
    sockets: Vec<(String, SocketAddr)>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `cmd` with its standard error read by the kit, and waits for the `listening`
    /// line. Panics with everything the server printed if it exits or says nothing in time.
    pub fn start(cmd: &mut Command) -> Daemon {
        let mut process = Process::spawn(cmd.stdout(Stdio::null()).stderr(Stdio::piped()));
        let stderr = process.child().stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(found) = natkit_daemon::parse_listening(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(found);
                    }
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let until = Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok((program, sockets)) => {
                    return Daemon {
                        process,
                        program,
                        sockets,
                        log,
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < until => {
                    if let Ok(Some(status)) = process.child().try_wait() {
                        // Give the reader a moment to collect the last lines.
                        std::thread::sleep(Duration::from_millis(100));
                        panic!(
                            "{cmd:?} exited ({status}) before listening:\n{}",
                            log.lock().expect("log lock").join("\n")
                        );
                    }
                }
                Err(_) => panic!(
                    "{cmd:?} printed no listening line in {START_TIMEOUT:?}:\n{}",
                    log.lock().expect("log lock").join("\n")
                ),
            }
        }
    }

    /// The address of the socket `name` (`http`, `stun`, `stun-alt`, `metrics`, ...).
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.sockets
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("{} has no {name} socket: {:?}", self.program, self.sockets))
    }

    pub fn has(&self, name: &str) -> bool {
        self.sockets.iter().any(|(k, _)| k == name)
    }

    /// `ws://` of the `http` socket (natkit-signal).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr("http"))
    }

    /// Every line the server wrote to standard error so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Has the server written a line containing `needle`?
    pub fn logged(&self, needle: &str) -> bool {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Waits until the server writes a line containing `needle`; panics with the log after
    /// `within`.
    pub fn wait_for_log(&self, needle: &str, within: std::time::Duration) {
        let until = std::time::Instant::now() + within;
        while !self.logged(needle) {
            assert!(
                std::time::Instant::now() < until,
                "{} wrote no line with {needle:?} within {within:?}:\n{}",
                self.program,
                self.log().join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    pub fn process_ref(&self) -> &Process {
        &self.process
    }

    pub fn id(&self) -> u32 {
        self.process.id()
    }
}
