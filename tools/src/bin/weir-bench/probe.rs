//! Reading a local process's CPU time and memory from `/proc`: the server's (given as
//! `?pid=N` in the target URL) and weir-bench's own, so each figure comes with what it cost.

use std::fs;
use std::time::Duration;

/// A process to watch: `/proc/PID` or `/proc/self`.
#[derive(Clone, Debug)]
pub(crate) struct Process {
    dir: String,
}

impl Process {
    pub(crate) fn pid(pid: u32) -> Process {
        Process {
            dir: format!("/proc/{pid}"),
        }
    }

    pub(crate) fn current() -> Process {
        Process {
            dir: "/proc/self".to_owned(),
        }
    }

    /// User + system CPU time so far; `None` if the process is gone or not local.
    pub(crate) fn cpu_time(&self) -> Option<Duration> {
        let stat = fs::read_to_string(format!("{}/stat", self.dir)).ok()?;
        parse_cpu_ticks(&stat).map(|ticks| Duration::from_millis(ticks * 1_000 / CLOCK_TICKS))
    }

    /// Resident set size (VmRSS) in bytes.
    pub(crate) fn rss_bytes(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("{}/status", self.dir)).ok()?;
        parse_rss_bytes(&status)
    }
}

/// CPU use of a process over an interval, as a percentage of one core.
#[derive(Clone, Debug)]
pub(crate) struct CpuMeter {
    process: Process,
    start: Option<Duration>,
}

impl CpuMeter {
    pub(crate) fn start(process: Process) -> CpuMeter {
        let start = process.cpu_time();
        CpuMeter { process, start }
    }

    /// Percent of one core used since [`CpuMeter::start`], over `elapsed` of wall time (the
    /// measured part of a run, not the setup).
    pub(crate) fn percent_over(&self, elapsed: Duration) -> Option<f64> {
        let start_cpu = self.start?;
        let cpu = self.process.cpu_time()?;
        percent(cpu.saturating_sub(start_cpu), elapsed)
    }
}

fn percent(cpu: Duration, wall: Duration) -> Option<f64> {
    (!wall.is_zero()).then(|| 100.0 * cpu.as_secs_f64() / wall.as_secs_f64())
}

/// utime + stime (fields 14 and 15 of `/proc/PID/stat`), in clock ticks. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS:    1234 kB` → bytes.
fn parse_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1_024)
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux architecture weir-bench runs on.
const CLOCK_TICKS: u64 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        let stat = "4242 (weir server (x)) R 1 4242 4242 0 -1 4194560 120 0 0 0 \
                    250 37 0 0 20 0 1 0 12345 1000000 300 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(287));
        assert_eq!(parse_cpu_ticks("4242 (x) R 1"), None);
    }

    #[test]
    fn rss_is_read_in_bytes() {
        let status = "Name:\tweir-server\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(parse_rss_bytes(status), Some(2_097_152));
        assert_eq!(parse_rss_bytes("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = Process::current();
        assert!(me.rss_bytes().unwrap() > 0);
        assert!(me.cpu_time().is_some());
        assert_eq!(
            percent(Duration::from_millis(500), Duration::from_secs(1)),
            Some(50.0)
        );
        assert_eq!(percent(Duration::ZERO, Duration::ZERO), None);
    }
}
