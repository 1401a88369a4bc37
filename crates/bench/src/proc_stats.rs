//! CPU time and resident memory of a process, from `/proc/<pid>`, and the machine's CPU time per
//! CPU from `/proc/stat` (softirq included), so work a server moves into the kernel's softirqs
//! or onto another CPU still shows in the figures.

/// utime + stime of `pid`, in seconds. Softirq time is not in it when the kernel accounts IRQ
/// time separately (CONFIG_IRQ_TIME_ACCOUNTING): see [`CpuTimes`].
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// One CPU's idle (idle + iowait), steal and softirq seconds since boot, from `/proc/stat`.
///
/// Busy time is not read from the user and system columns: those are sampled at the timer tick,
/// and a server that runs in short bursts between ticks shows there as almost idle, while idle
/// time is measured exactly (NO_HZ). Busy time over an interval is its wall time less the idle
/// and steal time it gained ([`CpuTimes::since`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuCounters {
    pub idle: f64,
    pub steal: f64,
    pub softirq: f64,
}

/// Every CPU's [`CpuCounters`] (indexed by CPU number) at one instant.
#[derive(Clone, Debug)]
pub struct CpuTimes {
    pub at: std::time::Instant,
    pub cpus: Vec<CpuCounters>,
}

/// What one CPU spent over an interval: busy (softirq included), and the softirq part.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTime {
    pub busy: f64,
    pub softirq: f64,
}

/// Every CPU's [`CpuTime`] over an interval, by CPU number.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuUse(pub Vec<CpuTime>);

impl CpuTimes {
    /// Now, from `/proc/stat` (no CPUs where it cannot be read).
    pub fn now() -> CpuTimes {
        let at = std::time::Instant::now();
        CpuTimes {
            at,
            cpus: Self::parse(
                &std::fs::read_to_string("/proc/stat").unwrap_or_default(),
                clock_ticks(),
            ),
        }
    }

    /// The `cpuN` lines of a `/proc/stat` text, in ticks of `1 / hz` seconds.
    pub fn parse(stat: &str, hz: f64) -> Vec<CpuCounters> {
        let mut cpus = Vec::new();
        for line in stat.lines() {
            let mut f = line.split_whitespace();
            let Some(n) = f
                .next()
                .and_then(|name| name.strip_prefix("cpu"))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let v: Vec<f64> = f.map(|x| x.parse().unwrap_or(0.0)).collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
            // user nice system idle iowait irq softirq steal ...
            let t = CpuCounters {
                idle: (at(3) + at(4)) / hz,
                steal: at(7) / hz,
                softirq: at(6) / hz,
            };
            if cpus.len() <= n {
                cpus.resize(n + 1, CpuCounters::default());
            }
            cpus[n] = t;
        }
        cpus
    }

    /// What each CPU spent between `earlier` and `self`: busy is the wall time less the idle and
    /// steal time gained.
    pub fn since(&self, earlier: &CpuTimes) -> CpuUse {
        let wall = self.at.saturating_duration_since(earlier.at).as_secs_f64();
        CpuUse(between(&earlier.cpus, &self.cpus, wall))
    }
}

fn between(earlier: &[CpuCounters], later: &[CpuCounters], wall: f64) -> Vec<CpuTime> {
    later
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let e = earlier.get(i).copied().unwrap_or_default();
            CpuTime {
                busy: (wall - (t.idle - e.idle) - (t.steal - e.steal)).clamp(0.0, wall),
                softirq: t.softirq - e.softirq,
            }
        })
        .collect()
}

impl CpuUse {
    /// The sum over every CPU.
    pub fn total(&self) -> CpuTime {
        self.0.iter().fold(CpuTime::default(), |a, t| CpuTime {
            busy: a.busy + t.busy,
            softirq: a.softirq + t.softirq,
        })
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_wall_time_less_idle_and_steal() {
        let before = CpuTimes::parse(
            "cpu  300 0 100 900 10 0 40 5 0 0\n\
             cpu0 100 0 50 500 5 0 10 2 0 0\n\
             cpu1 200 0 50 400 5 3 30 3 0 0\n\
             intr 1 2 3\n",
            100.0,
        );
        assert_eq!(
            before,
            vec![
                CpuCounters {
                    idle: 5.05,
                    steal: 0.02,
                    softirq: 0.1
                },
                CpuCounters {
                    idle: 4.05,
                    steal: 0.03,
                    softirq: 0.3
                },
            ]
        );
        // Over 1 s: CPU 0 idled 0.5 s and lost 0.1 s to steal; CPU 1 idled all along.
        let after = CpuTimes::parse(
            "cpu0 150 0 50 550 5 0 20 12 0 0\ncpu1 200 0 60 500 5 3 30 3 0 0\n",
            100.0,
        );
        let d = between(&before, &after, 1.0);
        assert!((d[0].busy - 0.4).abs() < 1e-9, "{d:?}");
        assert!((d[0].softirq - 0.1).abs() < 1e-9, "{d:?}");
        assert!(d[1].busy.abs() < 1e-9, "{d:?}");
        assert!((CpuUse(d).total().busy - 0.4).abs() < 1e-9);
    }

    #[test]
    fn this_machine_reports_every_cpu() {
        let t = CpuTimes::now();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(t.cpus.len() >= cpus, "{} CPUs in /proc/stat", t.cpus.len());
        // Spin for 200 ms: this CPU cannot have been idle all along.
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(200) {
            std::hint::black_box(0u64);
        }
        let used = CpuTimes::now().since(&t).total().busy;
        assert!(used > 0.1, "busy {used} s over 200 ms of spinning");
    }
}
