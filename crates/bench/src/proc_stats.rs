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

/// Busy and softirq seconds of one CPU since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTime {
    /// user + nice + system + irq + softirq (idle, iowait and steal left out).
    pub busy: f64,
    pub softirq: f64,
}

/// Every CPU's [`CpuTime`], indexed by CPU number.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuTimes(pub Vec<CpuTime>);

impl CpuTimes {
    /// Now, from `/proc/stat` (empty where it cannot be read).
    pub fn now() -> CpuTimes {
        Self::parse(
            &std::fs::read_to_string("/proc/stat").unwrap_or_default(),
            clock_ticks(),
        )
    }

    /// The `cpuN` lines of a `/proc/stat` text, in ticks of `1 / hz` seconds.
    pub fn parse(stat: &str, hz: f64) -> CpuTimes {
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
            let t = CpuTime {
                busy: (at(0) + at(1) + at(2) + at(5) + at(6)) / hz,
                softirq: at(6) / hz,
            };
            if cpus.len() <= n {
                cpus.resize(n + 1, CpuTime::default());
            }
            cpus[n] = t;
        }
        CpuTimes(cpus)
    }

    /// What each CPU spent between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes(
            self.0
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let e = earlier.0.get(i).copied().unwrap_or_default();
                    CpuTime {
                        busy: t.busy - e.busy,
                        softirq: t.softirq - e.softirq,
                    }
                })
                .collect(),
        )
    }

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
    fn proc_stat_lines_become_busy_and_softirq_seconds_per_cpu() {
        let stat = "cpu  300 0 100 900 10 0 40 5 0 0\n\
                    cpu0 100 0 50 500 5 0 10 2 0 0\n\
                    cpu1 200 0 50 400 5 3 30 3 0 0\n\
                    intr 1 2 3\n";
        let t = CpuTimes::parse(stat, 100.0);
        assert_eq!(
            t.0,
            vec![
                CpuTime {
                    busy: 1.6,
                    softirq: 0.1
                },
                CpuTime {
                    busy: 2.83,
                    softirq: 0.3
                },
            ]
        );
        let later = CpuTimes::parse(
            "cpu0 150 0 50 500 5 0 20 2 0 0\ncpu1 200 0 60 400 5 3 30 3 0 0\n",
            100.0,
        );
        let d = later.since(&t);
        assert!((d.0[0].busy - 0.6).abs() < 1e-9 && (d.0[0].softirq - 0.1).abs() < 1e-9);
        assert!((d.0[1].busy - 0.1).abs() < 1e-9 && d.0[1].softirq.abs() < 1e-9);
        assert!((d.total().busy - 0.7).abs() < 1e-9);
    }

    #[test]
    fn this_machine_reports_every_cpu() {
        let t = CpuTimes::now();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(t.0.len() >= cpus, "{} CPUs in /proc/stat", t.0.len());
        assert!(t.total().busy > 0.0);
    }
}
