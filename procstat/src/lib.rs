//! CPU time and memory of a process and of the whole machine, read from Linux `/proc`: the
//! one `/proc` reader of the workspace, shared by chat-server (the process metrics of its
//! `/metrics`) and loadgen (sampling the server, itself and the machine during a run).
//! Beside it, the one place that raises the open-file limit ([`raise_open_file_limit`]):
//! every connection is a file, for the server and for loadgen alike.
//!
//! Every figure is an `Option`: `None` where `/proc` is not there (not Linux), the process
//! is gone, or the text is not what the kernel documents. A missing figure is honest; a
//! made-up 0 is not. Each call reads one or two small kernel-generated files: cheap enough
//! for a `/metrics` request or a few samples a second, not for a hot path.
//!
//! The parsers are plain functions of the file's text, so they are tested with real and
//! hostile lines (a command name may hold spaces and `)`) on any platform.

/// A process's resource use at one moment; each value is `None` when it could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User plus system CPU time, in seconds (utime + stime of `/proc/PID/stat`).
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes (resident pages of `/proc/PID/statm` times page size).
    pub resident_bytes: Option<u64>,
}

impl Usage {
    /// The calling process's own use, from `/proc/self`.
    pub fn of_self() -> Usage {
        Usage::of_dir("/proc/self")
    }

    /// Another process's use, from `/proc/PID`; both values are `None` if it is gone.
    pub fn of_pid(pid: u32) -> Usage {
        Usage::of_dir(&format!("/proc/{pid}"))
    }

    fn of_dir(dir: &str) -> Usage {
        Usage {
            cpu_seconds: cpu_seconds_in(dir),
            resident_bytes: resident_bytes_in(dir),
        }
    }
}

/// The most memory the calling process has held resident so far, in bytes (`VmHWM` of
/// `/proc/self/status`).
pub fn peak_resident_bytes_of_self() -> Option<u64> {
    status_peak_resident_bytes(&read_proc("/proc/self/status")?)
}

/// The same for process `pid` (`None` once it is gone).
pub fn peak_resident_bytes(pid: u32) -> Option<u64> {
    status_peak_resident_bytes(&read_proc(&format!("/proc/{pid}/status"))?)
}

/// `VmHWM:   12345 kB` of a `/proc/PID/status` text, in bytes.
fn status_peak_resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut words = line["VmHWM:".len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next()? == "kB").then(|| kib.checked_mul(1024))?
}

/// The work a process has asked of the kernel so far: exact counts that barely move
/// between runs of the same build under the same load, unlike its timings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkCounts {
    /// `read`-family system calls (`syscr` of `/proc/PID/io`).
    pub read_syscalls: Option<u64>,
    /// `write`-family system calls (`syscw`).
    pub write_syscalls: Option<u64>,
    /// Bytes passed to them (`wchar`: sockets included, unlike `write_bytes`).
    pub bytes_written: Option<u64>,
    /// Context switches of all its threads: given up (waiting) and forced (preempted),
    /// `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` of every
    /// `/proc/PID/task/*/status` added up.
    pub voluntary_switches: Option<u64>,
    pub involuntary_switches: Option<u64>,
}

/// [`WorkCounts`] of process `pid` now (every value `None` off Linux or once it is gone).
/// Threads that have ended are not in the context switches (a server keeps its threads).
pub fn work_counts(pid: u32) -> WorkCounts {
    let io = read_proc(&format!("/proc/{pid}/io"));
    let field = |name: &str| io.as_deref().and_then(|text| named_number(text, name));
    let (voluntary, involuntary) = thread_switches(pid).unzip();
    WorkCounts {
        read_syscalls: field("syscr:"),
        write_syscalls: field("syscw:"),
        bytes_written: field("wchar:"),
        voluntary_switches: voluntary,
        involuntary_switches: involuntary,
    }
}

/// Context switches of every thread of `pid`, added up.
fn thread_switches(pid: u32) -> Option<(u64, u64)> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = (0u64, 0u64);
    for task in tasks.flatten() {
        // A thread that ended since the listing is left out.
        let Some(status) = read_proc(&format!("{}/status", task.path().display())) else {
            continue;
        };
        total.0 += named_number(&status, "voluntary_ctxt_switches:")?;
        total.1 += named_number(&status, "nonvoluntary_ctxt_switches:")?;
    }
    Some(total)
}

/// The number after `name` on the line that starts with it (`syscr: 42`).
fn named_number(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/PID/stat` alone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_in(&format!("/proc/{pid}"))
}

/// Busy CPU seconds of the whole machine (all cores added up) since boot: every column of
/// the `cpu` line of `/proc/stat` but idle and iowait.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = read_proc("/proc/stat")?;
    ticks_to_seconds(busy_ticks(&stat)?)
}

/// Physical memory of the machine, in bytes (`MemTotal` of `/proc/meminfo`).
pub fn memory_total() -> Option<u64> {
    meminfo_total_bytes(&read_proc("/proc/meminfo")?)
}

fn cpu_seconds_in(dir: &str) -> Option<f64> {
    let stat = read_proc(&format!("{dir}/stat"))?;
    ticks_to_seconds(stat_cpu_ticks(&stat)?)
}

fn resident_bytes_in(dir: &str) -> Option<u64> {
    let statm = read_proc(&format!("{dir}/statm"))?;
    statm_resident_pages(&statm)?.checked_mul(page_size()?)
}

/// The text of a `/proc` file; `None` if it cannot be read, and always `None` off Linux,
/// where a `/proc` (if any) does not hold these files in this format.
fn read_proc(path: &str) -> Option<String> {
    if cfg!(target_os = "linux") {
        std::fs::read_to_string(path).ok()
    } else {
        None
    }
}

fn ticks_to_seconds(ticks: u64) -> Option<f64> {
    Some(ticks as f64 / clock_ticks_per_second()? as f64)
}

/// The unit of the CPU times in `/proc` (`USER_HZ`, almost always 100).
fn clock_ticks_per_second() -> Option<u64> {
    #[cfg(unix)]
    {
        sysconf(libc::_SC_CLK_TCK)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The size of the pages `/proc/PID/statm` counts.
fn page_size() -> Option<u64> {
    #[cfg(unix)]
    {
        sysconf(libc::_SC_PAGESIZE)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// A positive `sysconf` value, or `None` (it returns -1 when the name is unknown).
#[cfg(unix)]
fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a system constant; it takes and returns plain integers.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).ok().filter(|&v| v > 0)
}

/// utime + stime (fields 14 and 15 of `/proc/PID/stat`), in clock ticks. Field 2, the
/// command name, is in parentheses and may itself hold spaces and `)`, so the fields are
/// counted from after the *last* `)`. `None` if the text is truncated or not numbers there.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // `after_comm` starts at field 3 (the state), so field n is at index n - 3.
    let mut fields = after_comm.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// Resident pages (field 2 of `/proc/PID/statm`).
fn statm_resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// Busy ticks of the `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq
/// steal, less idle and iowait. Guest time is left out because it is already in user.
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let busy = ticks
        .iter()
        .take(8)
        .try_fold(0u64, |sum, &t| sum.checked_add(t))?;
    let idle = ticks
        .get(3)?
        .checked_add(ticks.get(4).copied().unwrap_or(0))?;
    busy.checked_sub(idle)
}

/// `MemTotal` of `/proc/meminfo`, which the kernel gives in KiB, in bytes.
fn meminfo_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Gives the heap's free memory back to the kernel (glibc's `malloc_trim(0)`: free pages
/// inside the arenas are released, not only the top of the heap); a no-op elsewhere.
///
/// Why: a long-running process that opens and closes connections all day frees memory in
/// pieces glibc keeps for reuse, and its resident memory creeps up for an hour or more
/// while its heap stays flat — a leak to anyone watching RSS, and a soak's verdict. Called
/// every few seconds (it walks the arenas under their locks: a fraction of a millisecond
/// for a heap of tens of MB), it keeps resident memory close to what is in use. Call it
/// off the async runtime's worker threads (`spawn_blocking`).
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only works on glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Raises this process's soft open-file limit (`RLIMIT_NOFILE`) to its hard limit, as far
/// as allowed, and returns the soft limit in force afterwards (1,024, the common default,
/// when it cannot be read). The hard limit itself cannot be raised from inside.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; setrlimit reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_resident_memory_is_read_from_vmhwm() {
        let status = "Name:\tcat\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(status_peak_resident_bytes(status), Some(1234 * 1024));
        assert_eq!(status_peak_resident_bytes("VmHWM: lots kB\n"), None);
        assert_eq!(status_peak_resident_bytes("VmHWM: 12 MB\n"), None);
        assert_eq!(status_peak_resident_bytes("Name: x\n"), None);
        if cfg!(target_os = "linux") {
            assert!(peak_resident_bytes_of_self().is_some_and(|b| b > 0));
            assert_eq!(peak_resident_bytes(u32::MAX), None);
        }
    }

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
    fn stat_fields_count_from_the_last_parenthesis() {
        let stat = "42 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0";
        assert_eq!(stat_cpu_ticks(stat), Some(175));
        assert_eq!(stat_cpu_ticks("42 (cut) S 1 2"), None);
        assert_eq!(stat_cpu_ticks("42 (no close"), None);
        assert_eq!(stat_cpu_ticks("42 (x)"), None);
    }

    #[test]
    fn stat_truncated_or_malformed_is_none() {
        let stime_at = PLAIN.find(" 7 3 ").expect("utime and stime in PLAIN") + 3;
        assert_eq!(stat_cpu_ticks(&PLAIN[..stime_at]), None);
        assert_eq!(stat_cpu_ticks("4242 (cat"), None);
        assert_eq!(stat_cpu_ticks("4242 (cat)"), None);
        assert_eq!(stat_cpu_ticks(""), None);
        assert_eq!(stat_cpu_ticks(&PLAIN.replace(" 7 3 ", " 7 x ")), None);
        assert_eq!(stat_cpu_ticks(&PLAIN.replace(" 7 3 ", " -7 3 ")), None);
        let huge = PLAIN.replace(" 7 3 ", &format!(" {} 3 ", u64::MAX));
        assert_eq!(stat_cpu_ticks(&huge), None);
    }

    #[test]
    fn statm_resident_is_the_second_field() {
        assert_eq!(statm_resident_pages("5620 236 200 5 0 120 0\n"), Some(236));
        assert_eq!(statm_resident_pages("5620"), None);
        assert_eq!(statm_resident_pages("5620 x 200"), None);
        assert_eq!(statm_resident_pages(""), None);
    }

    #[test]
    fn machine_busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(busy_ticks(stat), Some(160));
        assert_eq!(busy_ticks("intr 1 2\n"), None);
        assert_eq!(busy_ticks("cpu  x y\n"), None);
        let overflowing = format!("cpu  {} 1 0 0 0 0 0 0\n", u64::MAX);
        assert_eq!(busy_ticks(&overflowing), None);
    }

    #[test]
    fn memory_total_is_mem_total_in_bytes() {
        let meminfo = "MemTotal:        8048576 kB\nMemFree:          123456 kB\n";
        assert_eq!(meminfo_total_bytes(meminfo), Some(8_048_576 * 1024));
        assert_eq!(meminfo_total_bytes("MemFree: 1 kB\n"), None);
        assert_eq!(meminfo_total_bytes("MemTotal: lots kB\n"), None);
        assert_eq!(meminfo_total_bytes(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process_and_the_machine() {
        let own = Usage::of_self();
        let cpu = own.cpu_seconds.expect("cpu seconds on Linux");
        assert!(cpu.is_finite() && cpu >= 0.0, "{cpu}");
        assert!(own.resident_bytes.expect("resident bytes on Linux") > 1 << 20);
        let by_pid = Usage::of_pid(std::process::id());
        assert!(by_pid.cpu_seconds.is_some() && by_pid.resident_bytes.is_some());
        assert!(cpu_seconds(std::process::id()).is_some());
        assert!(machine_busy_seconds().is_some());
        assert!(memory_total().is_some_and(|m| m > 0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_that_does_not_exist_reads_as_none() {
        assert_eq!(Usage::of_pid(u32::MAX), Usage::default());
        assert_eq!(cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let soft = raise_open_file_limit();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(soft, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }

    #[test]
    fn work_counts_are_read_from_io_and_every_thread() {
        let io = "rchar: 10\nwchar: 2048\nsyscr: 7\nsyscw: 3\nread_bytes: 0\n";
        assert_eq!(named_number(io, "syscw:"), Some(3));
        assert_eq!(named_number(io, "wchar:"), Some(2048));
        assert_eq!(named_number(io, "cancelled_write_bytes:"), None);
        if cfg!(target_os = "linux") {
            let me = work_counts(std::process::id());
            assert!(
                me.read_syscalls.is_some() && me.voluntary_switches.is_some(),
                "{me:?}"
            );
        }
        assert_eq!(work_counts(u32::MAX), WorkCounts::default());
    }
}
