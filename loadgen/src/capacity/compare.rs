//! `loadgen capacity --compare A B`: is the difference between two capacity reports more
//! than the difference between their machines explains?
//!
//! Each report carries a machine calibration ([`crate::calibration`]): the loopback send
//! cost and the time of a fixed CPU workload, at the start and the end of its search. The
//! speed ratio of the two machines is taken from each workload separately (A's time over
//! B's: above 1 means B is faster), because a chat server's capacity follows the kernel's
//! send path at least as much as the core's speed. The capacity ratio (B over A) is
//! explained by the machines when it lies within the range the two speed ratios span,
//! widened by `--tolerance` percent either way (the run-to-run noise of a capacity figure).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::report::CAPACITY_JSON;
use crate::calibration::{Calibration, MachineSpeed};

/// The parts of a `capacity.json` a comparison reads.
#[derive(Debug, Deserialize)]
pub struct SavedReport {
    pub level_unit: String,
    pub started_at: String,
    pub cores: usize,
    #[serde(default)]
    pub objective: Vec<String>,
    pub margin: Option<f64>,
    pub capacity: Option<SavedCapacity>,
    pub calibration: Option<Calibration>,
}

/// `capacity` of a `capacity.json`.
#[derive(Debug, Deserialize)]
pub struct SavedCapacity {
    pub level: f64,
}

/// Why a report cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a capacity.json: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {what}")]
    Missing { path: PathBuf, what: String },
    #[error("A counts {a} and B counts {b}: capacities in different units cannot be compared")]
    Units { a: String, b: String },
}

/// What the comparison found.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// B's capacity over A's.
    pub capacity_ratio: f64,
    /// A's loopback send cost over B's (above 1: B's machine is faster).
    pub send_speed_ratio: f64,
    /// A's CPU workload time over B's.
    pub cpu_speed_ratio: f64,
    /// The range of capacity ratios the machines explain.
    pub explained: (f64, f64),
    pub verdict: bool,
}

/// Compares capacity `a` with `b`, speeds and tolerance in percent.
pub fn compare(
    a_level: f64,
    b_level: f64,
    a: &MachineSpeed,
    b: &MachineSpeed,
    tolerance: f64,
) -> Comparison {
    let capacity_ratio = b_level / a_level;
    let send_speed_ratio = a.loopback_send_us / b.loopback_send_us;
    let cpu_speed_ratio = a.cpu_workload_ms / b.cpu_workload_ms;
    let low = send_speed_ratio.min(cpu_speed_ratio) * (1.0 - tolerance / 100.0);
    let high = send_speed_ratio.max(cpu_speed_ratio) * (1.0 + tolerance / 100.0);
    Comparison {
        capacity_ratio,
        send_speed_ratio,
        cpu_speed_ratio,
        explained: (low, high),
        verdict: (low..=high).contains(&capacity_ratio),
    }
}

/// Reads a report folder's (or a file's) `capacity.json`.
pub fn read(path: &Path) -> Result<SavedReport, CompareError> {
    let file = if path.is_dir() {
        path.join(CAPACITY_JSON)
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|source| CompareError::Read {
        path: file.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| CompareError::Parse { path: file, source })
}

/// The capacity level and the machine speed of a report, or what it lacks.
fn figures(path: &Path, report: &SavedReport) -> Result<(f64, MachineSpeed), CompareError> {
    let missing = |what: &str| CompareError::Missing {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let level = report
        .capacity
        .as_ref()
        .map(|c| c.level)
        .filter(|l| *l > 0.0)
        .ok_or_else(|| missing("no published capacity (the search found none, or the report is older than the margin)"))?;
    let speed = report
        .calibration
        .as_ref()
        .map(Calibration::typical)
        .filter(|s| s.loopback_send_us > 0.0 && s.cpu_workload_ms > 0.0)
        .ok_or_else(|| {
            missing("no machine calibration (searched with --calibration off, or an older loadgen)")
        })?;
    Ok((level, speed))
}

/// Compares the reports at `a_path` and `b_path`: the text to show, and whether the
/// machines explain the difference (within `tolerance`, percent).
pub fn compare_reports(
    a_path: &Path,
    b_path: &Path,
    tolerance: f64,
) -> Result<(String, bool), CompareError> {
    let (a, b) = (read(a_path)?, read(b_path)?);
    if a.level_unit != b.level_unit {
        return Err(CompareError::Units {
            a: a.level_unit,
            b: b.level_unit,
        });
    }
    let (a_level, a_speed) = figures(a_path, &a)?;
    let (b_level, b_speed) = figures(b_path, &b)?;
    let c = compare(a_level, b_level, &a_speed, &b_speed, tolerance);
    Ok((text(&a, &b, a_path, b_path, &c, tolerance), c.verdict))
}

/// The comparison as Markdown.
fn text(
    a: &SavedReport,
    b: &SavedReport,
    a_path: &Path,
    b_path: &Path,
    c: &Comparison,
    tolerance: f64,
) -> String {
    let unit = &a.level_unit;
    let speed = |r: &SavedReport| r.calibration.as_ref().map(Calibration::typical);
    let (sa, sb) = (speed(a), speed(b));
    let mut out = String::new();
    out.push_str("# Capacity comparison\n\n");
    out.push_str("| | A | B | B / A |\n|---|--:|--:|--:|\n");
    out.push_str(&format!(
        "| report | {} ({}) | {} ({}) | |\n",
        a_path.display(),
        a.started_at,
        b_path.display(),
        b.started_at
    ));
    let level = |r: &SavedReport| r.capacity.as_ref().map_or(0.0, |c| c.level);
    out.push_str(&format!(
        "| published capacity, {unit} | {:.0} | {:.0} | {:.3} |\n",
        level(a),
        level(b),
        c.capacity_ratio
    ));
    if let (Some(sa), Some(sb)) = (&sa, &sb) {
        out.push_str(&format!(
            "| loopback send, µs (lower is faster) | {:.2} | {:.2} | speed {:.3} |\n",
            sa.loopback_send_us, sb.loopback_send_us, c.send_speed_ratio
        ));
        out.push_str(&format!(
            "| CPU workload, ms (lower is faster) | {:.0} | {:.0} | speed {:.3} |\n",
            sa.cpu_workload_ms, sb.cpu_workload_ms, c.cpu_speed_ratio
        ));
    }
    out.push_str(&format!(
        "| logical CPUs | {} | {} | |\n\n",
        a.cores, b.cores
    ));
    let change = (c.capacity_ratio - 1.0) * 100.0;
    let (low, high) = c.explained;
    if c.verdict {
        out.push_str(&format!(
            "EXPLAINED: B's capacity is {change:+.1}% of A's; the machines' speed ratios ({:.3} send, {:.3} CPU, ±{tolerance}%) allow {:.3} to {:.3}. The difference is what the machines' speed explains.\n",
            c.send_speed_ratio, c.cpu_speed_ratio, low, high
        ));
    } else {
        let beyond = if c.capacity_ratio > high {
            format!("{:.1}% more", (c.capacity_ratio / high - 1.0) * 100.0)
        } else {
            format!("{:.1}% less", (1.0 - c.capacity_ratio / low) * 100.0)
        };
        out.push_str(&format!(
            "NOT EXPLAINED: B's capacity is {change:+.1}% of A's, {beyond} than the machines' speed ratios ({:.3} send, {:.3} CPU, ±{tolerance}%: {:.3} to {:.3}) explain. Something besides the machine's speed changed: the server, the load, or the machine's other load.\n",
            c.send_speed_ratio, c.cpu_speed_ratio, low, high
        ));
    }
    let mut notes = Vec::new();
    if a.objective != b.objective {
        notes.push("The two searches had different objectives: compare with care.".to_string());
    }
    if a.margin != b.margin {
        notes.push(format!(
            "The two searches had different margins ({} and {}).",
            a.margin.map_or("none".into(), |m| m.to_string()),
            b.margin.map_or("none".into(), |m| m.to_string())
        ));
    }
    for (name, r) in [("A", a), ("B", b)] {
        if let Some(cal) = &r.calibration {
            if cal.drifted {
                notes.push(format!(
                    "{name}'s machine drifted during its search: {}.",
                    cal.line()
                ));
            }
        }
    }
    for note in notes {
        out.push_str(&format!("\n- {note}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speed(send: f64, cpu: f64) -> MachineSpeed {
        MachineSpeed {
            at: String::new(),
            loopback_send_us: send,
            cpu_workload_ms: cpu,
        }
    }

    #[test]
    fn a_faster_machine_explains_a_higher_capacity() {
        // B sends 30% faster and computes 25% faster; its capacity is 28% higher.
        let c = compare(
            1000.0,
            1280.0,
            &speed(7.8, 1000.0),
            &speed(6.0, 800.0),
            10.0,
        );
        assert!((c.send_speed_ratio - 1.3).abs() < 1e-9);
        assert!((c.cpu_speed_ratio - 1.25).abs() < 1e-9);
        assert!(c.verdict, "{c:?}");
    }

    #[test]
    fn the_same_machine_does_not_explain_a_halved_capacity() {
        let c = compare(1375.0, 700.0, &speed(7.0, 800.0), &speed(7.1, 805.0), 10.0);
        assert!(!c.verdict, "{c:?}");
        // Nor a doubled one.
        let c = compare(700.0, 1375.0, &speed(7.0, 800.0), &speed(7.1, 805.0), 10.0);
        assert!(!c.verdict, "{c:?}");
    }
}
