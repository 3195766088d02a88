//! Machine calibration: how fast this machine was, measured by loadgen itself at the start
//! and at the end of a run, a gate or a capacity search.
//!
//! A latency or capacity figure is a property of the server *and* the machine it ran on.
//! Two reports taken on different machines, or on the same shared machine an hour apart,
//! can only be compared if each says how fast the machine was while it was measured. Two
//! fixed workloads stand for the two things a chat server spends its time on:
//!
//! - **loopback send**: 128-byte writes through a loopback TCP connection to a thread that
//!   drains it, in µs per write — the kernel's network path, which dominates a broadcast;
//! - **CPU workload**: a fixed single-threaded integer workload (a pseudo-random walk over
//!   a 256 KiB table), in ms — the core's speed and its caches.
//!
//! Each is measured in [`CHUNKS`] chunks and the median chunk is kept, so one descheduled
//! moment does not move the figure. Taken at the start and the end, the two
//! [`MachineSpeed`]s give the drift: when either workload moved by more than
//! [`DRIFT_FLAG_PERCENT`], the report says the machine changed speed under the run.
//! `--calibration quick` runs a tenth of the work (for tests), `off` skips it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// Drift (in percent, either way) beyond which the report flags the calibration.
pub const DRIFT_FLAG_PERCENT: f64 = 5.0;

/// Wait before the end's measurement, for the run's own teardown (thousands of sockets
/// closing, the server process exiting) to finish.
const SETTLE: Duration = Duration::from_secs(1);

/// Chunks each workload is measured in; the median chunk counts.
const CHUNKS: usize = 5;

/// Writes per chunk of the loopback workload at full length (~0.2 s per chunk at 7 µs).
const SENDS_PER_CHUNK: u64 = 25_000;

/// Bytes per loopback write: a chat message of the capacity scenario's size.
const SEND_BYTES: usize = 128;

/// Steps per chunk of the CPU workload at full length (~0.2 s per chunk on a 2020s core).
const CPU_STEPS_PER_CHUNK: u64 = 25_000_000;

/// Entries of the CPU workload's table (256 KiB of u64: larger than L1, inside L2).
const CPU_TABLE: usize = 32 * 1024;

/// How much calibration to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationMode {
    /// Both workloads at full length: about 1 s each, at the start and at the end.
    #[default]
    Full,
    /// A tenth of the work: a rough figure in ~0.2 s (tests, smoke runs).
    Quick,
    /// No calibration: the report says the machine's speed is unknown.
    Off,
}

impl CalibrationMode {
    fn scale(self) -> u64 {
        match self {
            CalibrationMode::Full => 10,
            CalibrationMode::Quick => 1,
            CalibrationMode::Off => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CalibrationMode::Full => "full",
            CalibrationMode::Quick => "quick",
            CalibrationMode::Off => "off",
        }
    }
}

/// One measurement of the machine's speed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineSpeed {
    /// When it was taken, RFC 3339 UTC.
    pub at: String,
    /// Median cost of one 128-byte write through loopback TCP, µs (lower is faster).
    pub loopback_send_us: f64,
    /// Time of the fixed CPU workload, ms (median chunk × chunks, as at full length; lower
    /// is faster).
    pub cpu_workload_ms: f64,
}

/// The calibration of one report: the machine's speed at the start and at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// `full` or `quick` (figures of the two are not comparable with each other).
    pub mode: CalibrationMode,
    pub start: MachineSpeed,
    /// Absent when the run stopped before the end could be measured.
    pub end: Option<MachineSpeed>,
    /// Change from start to end, percent (positive: slower at the end).
    pub drift_percent: Option<Drift>,
    /// Whether either drift exceeds [`DRIFT_FLAG_PERCENT`].
    pub drifted: bool,
}

/// Start-to-end change of each workload, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub loopback_send: f64,
    pub cpu_workload: f64,
}

/// What went wrong measuring (the calibration is then left out; the run goes on).
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("loopback workload: {0}")]
    Loopback(#[from] std::io::Error),
    #[error("the calibration thread failed: {0}")]
    Thread(String),
}

/// A calibration in progress: the start is measured, the end is still to come.
#[derive(Debug, Clone)]
pub struct Started {
    mode: CalibrationMode,
    start: MachineSpeed,
}

impl Started {
    /// Measures the start (on a blocking thread). `None` when the mode is `off`.
    pub async fn measure(mode: CalibrationMode) -> Result<Option<Started>, CalibrationError> {
        if mode == CalibrationMode::Off {
            return Ok(None);
        }
        let start = measure(mode).await?;
        Ok(Some(Started { mode, start }))
    }

    /// Measures the end and returns the whole calibration.
    pub async fn finish(self) -> Calibration {
        tokio::time::sleep(SETTLE).await;
        let end = measure(self.mode).await.ok();
        Calibration::of(self.mode, self.start, end)
    }

    /// The calibration without an end (the run stopped early).
    pub fn unfinished(self) -> Calibration {
        Calibration::of(self.mode, self.start, None)
    }

    pub fn start(&self) -> &MachineSpeed {
        &self.start
    }
}

impl Calibration {
    /// Puts together a start and an end, working out the drift.
    pub fn of(mode: CalibrationMode, start: MachineSpeed, end: Option<MachineSpeed>) -> Self {
        let drift_percent = end.as_ref().map(|end| Drift {
            loopback_send: percent_change(start.loopback_send_us, end.loopback_send_us),
            cpu_workload: percent_change(start.cpu_workload_ms, end.cpu_workload_ms),
        });
        let drifted = drift_percent.is_some_and(|d| {
            d.loopback_send.abs() > DRIFT_FLAG_PERCENT || d.cpu_workload.abs() > DRIFT_FLAG_PERCENT
        });
        Calibration {
            mode,
            start,
            end,
            drift_percent,
            drifted,
        }
    }

    /// The speed to compare with other reports: the mean of the start and the end.
    pub fn typical(&self) -> MachineSpeed {
        match &self.end {
            Some(end) => MachineSpeed {
                at: self.start.at.clone(),
                loopback_send_us: (self.start.loopback_send_us + end.loopback_send_us) / 2.0,
                cpu_workload_ms: (self.start.cpu_workload_ms + end.cpu_workload_ms) / 2.0,
            },
            None => self.start.clone(),
        }
    }

    /// One line for a summary: "loopback send 7.21 → 7.30 µs (+1.2%), CPU workload 812 →
    /// 820 ms (+1.0%): steady".
    pub fn line(&self) -> String {
        let quick = if self.mode == CalibrationMode::Quick {
            " (quick)"
        } else {
            ""
        };
        let Some(end) = &self.end else {
            return format!(
                "loopback send {} µs, CPU workload {} ms at the start{quick}; the end was not measured",
                us(self.start.loopback_send_us),
                ms(self.start.cpu_workload_ms)
            );
        };
        let drift = self.drift_percent.unwrap_or(Drift {
            loopback_send: 0.0,
            cpu_workload: 0.0,
        });
        format!(
            "loopback send {} → {} µs ({:+.1}%), CPU workload {} → {} ms ({:+.1}%){quick}: {}",
            us(self.start.loopback_send_us),
            us(end.loopback_send_us),
            drift.loopback_send,
            ms(self.start.cpu_workload_ms),
            ms(end.cpu_workload_ms),
            drift.cpu_workload,
            self.verdict()
        )
    }

    /// "steady" or the flag, in words.
    pub fn verdict(&self) -> String {
        if !self.drifted {
            return format!("steady (within {DRIFT_FLAG_PERCENT}%)");
        }
        let drift = self.drift_percent.unwrap_or(Drift {
            loopback_send: 0.0,
            cpu_workload: 0.0,
        });
        let worst = if drift.loopback_send.abs() >= drift.cpu_workload.abs() {
            drift.loopback_send
        } else {
            drift.cpu_workload
        };
        format!(
            "DRIFTED: the machine was {:.1}% {} at the end than at the start (more than {DRIFT_FLAG_PERCENT}%), so figures taken early and late in this report were measured on a different machine speed",
            worst.abs(),
            if worst > 0.0 { "slower" } else { "faster" }
        )
    }
}

/// `(after / before − 1) × 100`, 0 when `before` is not a positive number.
pub fn percent_change(before: f64, after: f64) -> f64 {
    if before > 0.0 && after.is_finite() {
        (after / before - 1.0) * 100.0
    } else {
        0.0
    }
}

pub fn us(value: f64) -> String {
    format!("{value:.2}")
}

pub fn ms(value: f64) -> String {
    format!("{value:.0}")
}

/// Measures both workloads on a blocking thread.
pub async fn measure(mode: CalibrationMode) -> Result<MachineSpeed, CalibrationError> {
    let scale = mode.scale().max(1);
    tokio::task::spawn_blocking(move || measure_blocking(scale))
        .await
        .map_err(|error| CalibrationError::Thread(error.to_string()))?
}

fn measure_blocking(scale: u64) -> Result<MachineSpeed, CalibrationError> {
    let at = crate::clock::rfc3339(SystemTime::now());
    let loopback_send_us = loopback_send_us(SENDS_PER_CHUNK * scale / 10)?;
    // A quick calibration runs a tenth of the workload; scaled up, its figure stays
    // comparable (if rougher) with a full one.
    let cpu_workload_ms = cpu_workload_ms(CPU_STEPS_PER_CHUNK * scale / 10) * 10.0 / scale as f64;
    Ok(MachineSpeed {
        at,
        loopback_send_us,
        cpu_workload_ms,
    })
}

/// Median µs per write over [`CHUNKS`] chunks of `sends` writes. Each write is read back
/// from the other end by the same thread before the next, so the figure is one core's
/// cost of the kernel's loopback path (send and receive), not the scheduling of two.
fn loopback_send_us(sends: u64) -> Result<f64, std::io::Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let mut writer = TcpStream::connect(listener.local_addr()?)?;
    writer.set_nodelay(true)?;
    let (mut reader, _) = listener.accept()?;
    let message = [b'x'; SEND_BYTES];
    let mut buffer = [0u8; SEND_BYTES];
    let mut chunks = Vec::with_capacity(CHUNKS);
    for _ in 0..CHUNKS {
        let started = Instant::now();
        for _ in 0..sends.max(1) {
            writer.write_all(&message)?;
            reader.read_exact(&mut buffer)?;
        }
        chunks.push(started.elapsed());
    }
    Ok(median(&mut chunks).as_secs_f64() * 1e6 / sends.max(1) as f64)
}

/// The fixed CPU workload: median chunk time × [`CHUNKS`], in ms.
fn cpu_workload_ms(steps: u64) -> f64 {
    let mut table = vec![0u64; CPU_TABLE];
    let mut chunks = Vec::with_capacity(CHUNKS);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..CHUNKS {
        let started = Instant::now();
        state = cpu_chunk(&mut table, state, steps.max(1));
        chunks.push(started.elapsed());
    }
    std::hint::black_box(&table);
    median(&mut chunks).as_secs_f64() * 1000.0 * CHUNKS as f64
}

/// A xorshift walk that reads and writes the table at pseudo-random places: integer
/// arithmetic, branches and cache traffic, with nothing the compiler can skip.
fn cpu_chunk(table: &mut [u64], mut state: u64, steps: u64) -> u64 {
    let mask = table.len() - 1;
    for _ in 0..steps {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let slot = (state as usize) & mask;
        table[slot] = table[slot].wrapping_add(state).rotate_left(5);
        if table[slot] & 1 == 0 {
            state = state.wrapping_add(table[slot]);
        }
    }
    std::hint::black_box(state)
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speed(send: f64, cpu: f64) -> MachineSpeed {
        MachineSpeed {
            at: "2026-11-26T07:00:00Z".into(),
            loopback_send_us: send,
            cpu_workload_ms: cpu,
        }
    }

    #[test]
    fn a_steady_machine_is_not_flagged() {
        let c = Calibration::of(
            CalibrationMode::Full,
            speed(7.0, 800.0),
            Some(speed(7.2, 790.0)),
        );
        assert!(!c.drifted, "{c:?}");
        assert!(c.line().contains("steady"), "{}", c.line());
        assert!(c.line().contains("+2.9%"), "{}", c.line());
    }

    #[test]
    fn a_machine_that_slowed_down_is_flagged_either_way() {
        let slower = Calibration::of(
            CalibrationMode::Full,
            speed(7.0, 800.0),
            Some(speed(7.0, 880.0)),
        );
        assert!(slower.drifted);
        assert!(
            slower.verdict().contains("10.0% slower at the end"),
            "{}",
            slower.verdict()
        );
        let faster = Calibration::of(
            CalibrationMode::Full,
            speed(8.0, 800.0),
            Some(speed(7.0, 800.0)),
        );
        assert!(faster.drifted);
        assert!(faster.verdict().contains("faster"), "{}", faster.verdict());
    }

    #[test]
    fn no_end_is_no_drift() {
        let c = Calibration::of(CalibrationMode::Quick, speed(7.0, 800.0), None);
        assert!(!c.drifted);
        assert!(c.line().contains("not measured"), "{}", c.line());
        assert_eq!(c.typical(), speed(7.0, 800.0));
    }

    #[tokio::test]
    async fn the_quick_workloads_measure_something_positive() {
        let speed = measure(CalibrationMode::Quick).await.expect("measures");
        assert!(speed.loopback_send_us > 0.0 && speed.loopback_send_us.is_finite());
        assert!(speed.cpu_workload_ms > 0.0 && speed.cpu_workload_ms.is_finite());
        let json = serde_json::to_string(&speed).expect("serialises");
        let back: MachineSpeed = serde_json::from_str(&json).expect("parses");
        assert_eq!(back.at, speed.at);
        assert!((back.loopback_send_us - speed.loopback_send_us).abs() < 1e-9);
    }
}
