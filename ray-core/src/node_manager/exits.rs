//! How a worker process ended, in words: the signal or exit code, and for a SIGKILL while the
//! machine or the worker's cgroup ran out of memory, that it was most likely the kernel's
//! out-of-memory killer and how much memory the worker last used.
//!
//! The monitor of each worker samples its memory and cgroup while it runs ([`Watch`]); the
//! kernel counts OOM kills per memory cgroup (`memory.events` on cgroup v2,
//! `memory.oom_control` on v1) and for the whole machine (`/proc/vmstat`).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// Exit code of a worker that lost its connection to the node manager.
pub(crate) const EXIT_LOST_NODE: i32 = 70;
/// Exit code of a worker started without a complete environment.
pub(crate) const EXIT_BAD_ENV: i32 = 71;
/// Exit code of a worker refused at connect.
pub(crate) const EXIT_REFUSED: i32 = 72;

/// What is known about a running worker's memory.
#[derive(Default)]
pub(crate) struct Watch {
    /// Peak resident memory seen, in KiB.
    peak_kib: u64,
    /// The worker's memory cgroup (a directory under /sys/fs/cgroup) and its OOM-kill count
    /// when first seen there.
    cgroup: Option<(String, u64)>,
    /// The machine's OOM-kill count when the worker started.
    machine_ooms: Option<u64>,
}

impl Watch {
    pub(crate) fn start(pid: u32) -> Watch {
        let mut w = Watch {
            machine_ooms: machine_oom_kills(),
            ..Watch::default()
        };
        w.sample(pid);
        w
    }

    /// Reads the worker's memory use and cgroup now.
    pub(crate) fn sample(&mut self, pid: u32) {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for line in status.lines() {
                if let Some(rest) = line
                    .strip_prefix("VmHWM:")
                    .or_else(|| line.strip_prefix("VmRSS:"))
                {
                    let kib = rest
                        .split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                    self.peak_kib = self.peak_kib.max(kib);
                }
            }
        }
        if let Some(dir) = memory_cgroup_dir(pid) {
            if self.cgroup.as_ref().is_none_or(|(d, _)| *d != dir) {
                let count = cgroup_oom_kills(&dir).unwrap_or(0);
                self.cgroup = Some((dir, count));
            }
        }
    }

    /// Why the process ended, for messages ("was killed by signal 9 (SIGKILL) ...").
    pub(crate) fn describe(&self, status: std::io::Result<ExitStatus>) -> String {
        let status = match status {
            Ok(s) => s,
            Err(e) => return format!("ended in an unknown way ({e})"),
        };
        match (status.signal(), status.code()) {
            (Some(sig), _) => {
                let mut cause = format!("was killed by signal {sig} ({})", signal_name(sig));
                if sig == libc::SIGKILL {
                    if let Some(oom) = self.oom_note() {
                        cause.push_str(&oom);
                    }
                }
                cause
            }
            (None, Some(EXIT_LOST_NODE)) => format!(
                "exited with code {EXIT_LOST_NODE}: it lost its connection to the node manager"
            ),
            (None, Some(EXIT_REFUSED)) => {
                format!("exited with code {EXIT_REFUSED}: the node manager refused it")
            }
            (None, Some(code)) => format!("exited with code {code}"),
            (None, None) => "exited".to_string(),
        }
    }

    fn oom_note(&self) -> Option<String> {
        let used = if self.peak_kib > 0 {
            format!(
                "; it used at least {} MiB when last measured",
                self.peak_kib.div_ceil(1024)
            )
        } else {
            String::new()
        };
        if let Some((dir, before)) = &self.cgroup {
            if cgroup_oom_kills(dir).is_some_and(|now| now > *before) {
                let limit = cgroup_limit(dir)
                    .map(|l| format!(", limit {} MiB", l / (1 << 20)))
                    .unwrap_or_default();
                return Some(format!(
                    ", by the kernel's out-of-memory killer: its memory cgroup ({dir}{limit}) \
                     ran out of memory{used}"
                ));
            }
        }
        let before = self.machine_ooms?;
        (machine_oom_kills()? > before).then(|| {
            format!(
                ", most likely by the kernel's out-of-memory killer (the machine or a cgroup ran \
                 out of memory while it ran){used}"
            )
        })
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

/// OOM kills on this machine so far (`/proc/vmstat`, Linux 4.13+).
fn machine_oom_kills() -> Option<u64> {
    let vmstat = std::fs::read_to_string("/proc/vmstat").ok()?;
    vmstat
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// The directory of `pid`'s memory cgroup (v1 `memory` controller, else v2).
fn memory_cgroup_dir(pid: u32) -> Option<String> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut v2 = None;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            return Some(format!("/sys/fs/cgroup/memory{path}"));
        }
        if controllers.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    let path = v2?;
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(|root| format!("{root}{path}"))
        .find(|dir| std::path::Path::new(&format!("{dir}/memory.events")).exists())
}

/// A memory cgroup's limit in bytes, if it has one.
fn cgroup_limit(dir: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{dir}/memory.max"))
        .or_else(|_| std::fs::read_to_string(format!("{dir}/memory.limit_in_bytes")))
        .ok()?;
    text.trim().parse().ok().filter(|l| *l < (1u64 << 60))
}

/// OOM kills counted by a memory cgroup.
fn cgroup_oom_kills(dir: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{dir}/memory.events"))
        .or_else(|_| std::fs::read_to_string(format!("{dir}/memory.oom_control")))
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_with_their_cause() {
        let w = Watch::default();
        assert_eq!(
            w.describe(Ok(ExitStatus::from_raw(libc::SIGABRT))),
            "was killed by signal 6 (SIGABRT)"
        );
        assert_eq!(
            w.describe(Ok(ExitStatus::from_raw(3 << 8))),
            "exited with code 3"
        );
        assert!(
            w.describe(Ok(ExitStatus::from_raw(EXIT_LOST_NODE << 8)))
                .contains("lost its connection")
        );
        let mut me = Watch::start(std::process::id());
        me.sample(std::process::id());
        assert!(me.peak_kib > 0, "this process's memory is read");
    }
}
