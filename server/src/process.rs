//! The server process's own CPU time and resident memory, for `GET /metrics`.
//!
//! A load generator measures a local server's CPU and memory from the outside, by pid; a
//! server on another machine it can only ask. So `/metrics` also carries the two standard
//! metrics of the Prometheus client's process collector, `process_cpu_seconds_total` and
//! `process_resident_memory_bytes`, with their names, help and meaning. Both come from
//! `/proc/self` and are read only when `/metrics` is rendered, never on a hot path. Where
//! `/proc` cannot be read or parsed (not Linux) a value is `None` and simply not shown: a
//! missing metric is honest, a made-up one is not.

/// The process's resource use at one moment; each value is `None` when it could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User plus system CPU time, in seconds (utime + stime of `/proc/self/stat`).
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes (resident pages of `/proc/self/statm` times page size).
    pub resident_bytes: Option<u64>,
}

impl Usage {
    /// Reads `/proc/self`. Two small reads of kernel-generated files, so cheap enough for
    /// every `/metrics` request, but not meant for anything more frequent.
    pub fn read() -> Usage {
        #[cfg(target_os = "linux")]
        {
            Usage {
                cpu_seconds: linux::cpu_seconds(),
                resident_bytes: linux::resident_bytes(),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            Usage::default()
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    /// utime + stime, converted from clock ticks to seconds.
    pub(super) fn cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let ticks = super::stat_cpu_ticks(&stat)?;
        let per_second = sysconf(libc::_SC_CLK_TCK)?;
        Some(ticks as f64 / per_second as f64)
    }

    /// Resident pages times the page size.
    pub(super) fn resident_bytes() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages = super::statm_resident_pages(&statm)?;
        pages.checked_mul(sysconf(libc::_SC_PAGESIZE)?)
    }

    /// A positive `sysconf` value, or `None` (it returns -1 when the name is unknown).
    fn sysconf(name: libc::c_int) -> Option<u64> {
        // SAFETY: sysconf only reads a system constant; it takes and returns plain integers.
        let value = unsafe { libc::sysconf(name) };
        u64::try_from(value).ok().filter(|&v| v > 0)
    }
}

/// utime + stime (fields 14 and 15 of `/proc/<pid>/stat`), in clock ticks. Field 2, the
/// command name, is in parentheses and may itself hold spaces and `)`, so the fields are
/// counted from after the *last* `)`. `None` if the text is truncated or not numbers there.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // `after_comm` starts at field 3 (the state), so field n is at index n - 3.
    let mut fields = after_comm.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// Resident pages (field 2 of `/proc/<pid>/statm`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn statm_resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from a process named `cat`, utime 7 and stime 3.
    const PLAIN: &str = "4242 (cat) R 1 4242 4242 34816 4242 4194304 120 0 0 0 7 3 0 0 20 0 \
                         1 0 123456 5754880 236 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 \
                         17 1 0 0 0 0 0\n";

    #[test]
    fn stat_cpu_is_utime_plus_stime() {
        assert_eq!(stat_cpu_ticks(PLAIN), Some(10));
    }

    #[test]
    fn stat_comm_with_spaces_and_parentheses_is_skipped_whole() {
        // A command may be renamed to anything up to 15 bytes, `) (` and digits included:
        // counting fields from the first `)`, or by spaces from the start, reads garbage.
        let tricky = PLAIN.replace("(cat)", "(a) 9 9 (b c) 1)");
        assert_eq!(stat_cpu_ticks(&tricky), Some(10));
        let empty = PLAIN.replace("(cat)", "()");
        assert_eq!(stat_cpu_ticks(&empty), Some(10));
    }

    #[test]
    fn stat_truncated_or_malformed_is_none() {
        let stime_at = PLAIN.find(" 7 3 ").unwrap() + 3; // just before stime
        assert_eq!(stat_cpu_ticks(&PLAIN[..stime_at]), None);
        assert_eq!(stat_cpu_ticks("4242 (cat"), None);
        assert_eq!(stat_cpu_ticks("4242 (cat)"), None);
        assert_eq!(stat_cpu_ticks(""), None);
        assert_eq!(stat_cpu_ticks(&PLAIN.replace(" 7 3 ", " 7 x ")), None);
        assert_eq!(stat_cpu_ticks(&PLAIN.replace(" 7 3 ", " -7 3 ")), None);
    }

    #[test]
    fn statm_resident_is_the_second_field() {
        assert_eq!(statm_resident_pages("5620 236 200 5 0 120 0\n"), Some(236));
        assert_eq!(statm_resident_pages("5620"), None);
        assert_eq!(statm_resident_pages("5620 x 200"), None);
        assert_eq!(statm_resident_pages(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let usage = Usage::read();
        let cpu = usage.cpu_seconds.expect("cpu seconds on Linux");
        assert!(cpu.is_finite() && cpu >= 0.0, "{cpu}");
        assert!(usage.resident_bytes.expect("resident bytes on Linux") > 1 << 20);
    }
}
