//! The files a capacity search leaves behind: `capacity.csv` (one row per step, for
//! spreadsheets), `capacity.json` (everything, for tools), `report.md` (the conclusion and
//! the steps in words, for a pull request or a terminal) and `report.html` (the same with
//! charts, see [`super::html`]).
//!
//! The two human reports say the same things in the same words, so the wording lives here
//! once: how numbers, missing figures, the setup and the steps table read.

use std::fmt::Write as _;
use std::path::Path;

use super::{html, Bottleneck, CapacityReport, Outcome, StepRecord, UsageSource};
use crate::report::write_file;
use crate::report::{EncodeError, ReportError};

/// One row per step, in the order run.
pub const CAPACITY_CSV: &str = "capacity.csv";
/// The whole [`CapacityReport`].
pub const CAPACITY_JSON: &str = "capacity.json";
/// The conclusion, setup and steps in Markdown.
pub const REPORT_MD: &str = "report.md";
/// The same as a self-contained page with charts.
pub const REPORT_HTML: &str = "report.html";

/// How a missing figure reads in the human reports.
pub(super) const NONE: &str = "–";

const BYTES_PER_MIB: f64 = 1024.0 * 1024.0;
const BYTES_PER_GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Creates `dir` (and its parents) and writes the four report files into it, overwriting
/// files of the same names. Stops at the first file that fails.
pub fn write_all(dir: &Path, report: &CapacityReport) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    write_file(dir, CAPACITY_CSV, capacity_csv(report))?;
    write_file(dir, CAPACITY_JSON, serde_json::to_vec_pretty(report))?;
    write_file(
        dir,
        REPORT_MD,
        Ok::<_, EncodeError>(markdown(report).into_bytes()),
    )?;
    write_file(dir, REPORT_HTML, html::page(report).map(String::into_bytes))
}

/// Columns of `capacity.csv`, in order.
pub const CSV_HEADER: [&str; 25] = [
    "number",
    "stage",
    "level",
    "users",
    "rate",
    "senders",
    "offered_deliveries_per_sec",
    "achieved_deliveries_per_sec",
    "sent_per_sec",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "delivery_ratio",
    "lost",
    "errors",
    "eviction_failures",
    "server_cpu_percent",
    "server_rss_bytes",
    "loadgen_cpu_percent",
    "loadgen_rss_bytes",
    "machine_cpu_percent",
    "met",
    "failures",
];

/// The CSV text: the header, then one row per step in the order run.
fn capacity_csv(report: &CapacityReport) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER)?;
    for step in &report.steps {
        writer.write_record(csv_row(step))?;
    }
    writer.into_inner().map_err(|e| e.into_error().into())
}

/// One step as CSV cells. The destructuring lists every field, so a new one does not
/// compile until it is given a column (or left out on purpose).
fn csv_row(step: &StepRecord) -> [String; 25] {
    let StepRecord {
        number,
        stage,
        level,
        users,
        rate,
        senders,
        offered_deliveries_per_sec,
        achieved_deliveries_per_sec,
        sent_per_sec,
        p50_ms,
        p90_ms,
        p99_ms,
        p999_ms,
        max_ms,
        delivery_ratio,
        lost,
        errors,
        eviction_failures,
        server,
        loadgen,
        machine_cpu_percent,
        met,
        failures,
    } = step;
    // Empty cell for a missing or non-finite figure.
    let fixed = |v: f64, decimals: usize| {
        if v.is_finite() {
            format!("{v:.decimals$}")
        } else {
            String::new()
        }
    };
    let optional =
        |v: Option<f64>, decimals: usize| v.map_or(String::new(), |v| fixed(v, decimals));
    let bytes = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    [
        number.to_string(),
        stage.to_string(),
        fixed(*level, 3),
        users.to_string(),
        fixed(*rate, 3),
        senders.to_string(),
        fixed(*offered_deliveries_per_sec, 3),
        fixed(*achieved_deliveries_per_sec, 3),
        fixed(*sent_per_sec, 3),
        fixed(*p50_ms, 3),
        fixed(*p90_ms, 3),
        fixed(*p99_ms, 3),
        fixed(*p999_ms, 3),
        fixed(*max_ms, 3),
        fixed(*delivery_ratio, 6),
        lost.to_string(),
        errors.to_string(),
        eviction_failures.to_string(),
        optional(server.cpu_percent, 2),
        bytes(server.rss_bytes),
        optional(loadgen.cpu_percent, 2),
        bytes(loadgen.rss_bytes),
        optional(*machine_cpu_percent, 2),
        met.to_string(),
        failures.join("; "),
    ]
}

/// `report.md`: the same content as `report.html`, without the charts.
fn markdown(report: &CapacityReport) -> String {
    let mut md = String::new();
    // Writing into a String cannot fail.
    let _ = write_markdown(&mut md, report);
    md
}

fn write_markdown(md: &mut String, report: &CapacityReport) -> std::fmt::Result {
    writeln!(md, "# Capacity: {}\n", line(&report.name))?;
    writeln!(md, "**{}**\n", line(&report.conclusion.headline))?;
    for detail in &report.conclusion.details {
        writeln!(md, "- {}", line(detail))?;
    }
    if !report.conclusion.details.is_empty() {
        writeln!(md)?;
    }
    writeln!(
        md,
        "**Bottleneck:** {}\n",
        bottleneck_text(report.conclusion.bottleneck)
    )?;
    writeln!(
        md,
        "Charts of latency, throughput and resources by load are in \
         [{REPORT_HTML}]({REPORT_HTML}); every figure is in [{CAPACITY_CSV}]({CAPACITY_CSV}).\n"
    )?;

    writeln!(md, "## Objective\n")?;
    if report.objective.is_empty() {
        writeln!(md, "No thresholds: every step that ran to its end met it.")?;
    }
    for threshold in &report.objective {
        writeln!(md, "- {}", line(threshold))?;
    }
    writeln!(md)?;

    writeln!(md, "## Setup\n")?;
    for (label, value) in setup_rows(report) {
        writeln!(md, "- **{label}:** {}", line(&value))?;
    }
    writeln!(md)?;

    writeln!(md, "## Steps\n")?;
    writeln!(md, "{STEPS_NOTE}\n")?;
    writeln!(md, "| {} |", STEP_COLUMNS.join(" | "))?;
    let align: Vec<&str> = STEP_COLUMNS
        .iter()
        .map(|column| {
            if matches!(*column, "stage" | "met" | "failures") {
                "---"
            } else {
                "--:"
            }
        })
        .collect();
    writeln!(md, "| {} |", align.join(" | "))?;
    for step in steps_by_level(report) {
        let mut cells = step_cells(step).map(|cell| cell_text(&cell));
        if let Some(mark) = step_mark(report, step) {
            cells[0] = format!("**{}** ({mark})", cells[0]);
        }
        writeln!(md, "| {} |", cells.join(" | "))?;
    }
    if report.steps.is_empty() {
        writeln!(md, "\nNo step ran.")?;
    }
    Ok(())
}

/// `text` on one line (Markdown ends a list item or a paragraph at a line break).
fn line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` safe inside a Markdown table cell.
fn cell_text(text: &str) -> String {
    line(text).replace('|', "\\|")
}

/// What the steps table says above itself.
pub(super) const STEPS_NOTE: &str = "Sorted by offered load (bisection steps ran between \
     the others; # is the order run). The knee is the highest load that met the objective. \
     CPU is in percent of one core; RSS is the peak in the measured window.";

/// The steps sorted by level; ties keep the order run.
pub(super) fn steps_by_level(report: &CapacityReport) -> Vec<&StepRecord> {
    let mut steps: Vec<&StepRecord> = report.steps.iter().collect();
    steps.sort_by(|a, b| a.level.total_cmp(&b.level).then(a.number.cmp(&b.number)));
    steps
}

/// `"knee"` or `"first bad"` for the two steps around the knee.
pub(super) fn step_mark(report: &CapacityReport, step: &StepRecord) -> Option<&'static str> {
    if report.knee_step == Some(step.number) {
        Some("knee")
    } else if report.first_bad_step == Some(step.number) {
        Some("first bad")
    } else {
        None
    }
}

/// Headers of the steps table in the human reports.
pub(super) const STEP_COLUMNS: [&str; 22] = [
    "#",
    "stage",
    "users",
    "rate msg/s",
    "senders",
    "offered deliveries/s",
    "achieved deliveries/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "delivery ratio",
    "lost",
    "errors",
    "eviction failures",
    "server CPU %",
    "server RSS MiB",
    "loadgen CPU %",
    "loadgen RSS MiB",
    "machine CPU %",
    "met",
    "failures",
];

/// One step as the cells of the human steps table, as plain text.
pub(super) fn step_cells(step: &StepRecord) -> [String; 22] {
    let optional = |v: Option<f64>| v.map_or(NONE.to_string(), |v| number(v, 1));
    let mib = |v: Option<u64>| v.map_or(NONE.to_string(), |b| number(b as f64 / BYTES_PER_MIB, 1));
    [
        step.number.to_string(),
        step.stage.to_string(),
        count(u64::from(step.users)),
        short(step.rate),
        count(u64::from(step.senders)),
        number(step.offered_deliveries_per_sec, 0),
        number(step.achieved_deliveries_per_sec, 0),
        number(step.p50_ms, 2),
        number(step.p99_ms, 2),
        number(step.p999_ms, 2),
        number(step.max_ms, 2),
        number(step.delivery_ratio, 4),
        count(step.lost),
        count(step.errors),
        count(step.eviction_failures),
        optional(step.server.cpu_percent),
        mib(step.server.rss_bytes),
        optional(step.loadgen.cpu_percent),
        mib(step.loadgen.rss_bytes),
        optional(step.machine_cpu_percent),
        if step.met { "yes" } else { "no" }.to_string(),
        step.failures.join("; "),
    ]
}

/// The setup as label and value, in the order shown.
pub(super) fn setup_rows(report: &CapacityReport) -> Vec<(&'static str, String)> {
    let mut rows = vec![("Capacity file", report.path.clone())];
    if let Some(description) = &report.description {
        rows.push(("Description", description.clone()));
    }
    rows.extend([
        (
            "Grows",
            format!("{} (load measured in {})", report.grow, report.level_unit),
        ),
        ("Result", outcome_text(report)),
        ("Server", report.server.clone()),
        (
            "Server figures from",
            usage_source_text(report.server_usage_source).to_string(),
        ),
        ("Logical CPUs", report.cores.to_string()),
        (
            "Memory",
            report.memory_bytes.map_or(NONE.to_string(), |bytes| {
                format!("{} GiB", number(bytes as f64 / BYTES_PER_GIB, 1))
            }),
        ),
        (
            "Each step",
            format!(
                "{} s warm-up (not judged), then {} s measured",
                short(report.warmup_s),
                short(report.measure_s)
            ),
        ),
        ("loadgen version", report.loadgen_version.clone()),
        (
            "Git revision",
            report.git_revision.clone().unwrap_or_else(|| NONE.into()),
        ),
        ("Started", report.started_at.clone()),
        ("Ended", report.ended_at.clone()),
    ]);
    rows
}

/// How the search ended, in words.
pub(super) fn outcome_text(report: &CapacityReport) -> String {
    let unit = report.level_unit;
    match report.outcome {
        Outcome::Knee { good, bad } => format!(
            "the objective held at {} {unit} and failed at {} {unit}",
            short(good),
            short(bad)
        ),
        Outcome::HeldToLimit { good } => format!(
            "the objective held at every step, up to the limit of {} {unit}",
            short(good)
        ),
        Outcome::FailedAtStart { bad } => format!(
            "the objective failed already at the first step, {} {unit}",
            short(bad)
        ),
    }
}

/// What ran out, in words.
pub(super) fn bottleneck_text(bottleneck: Bottleneck) -> &'static str {
    super::conclusion::bottleneck_text(bottleneck)
}

fn usage_source_text(source: UsageSource) -> &'static str {
    match source {
        UsageSource::Proc => "/proc of the server process",
        UsageSource::Metrics => "the server's /metrics endpoint",
        UsageSource::Unknown => "not available",
    }
}

/// `v` with `decimals` digits and thousands separated by commas; [`NONE`] when not finite.
pub(super) fn number(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return NONE.to_string();
    }
    let text = format!("{v:.decimals$}");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text.as_str()),
    };
    let (int, fraction) = match digits.split_once('.') {
        Some((int, fraction)) => (int, Some(fraction)),
        None => (digits, None),
    };
    let mut out = String::new();
    // "-0.00" reads as "0.00".
    if negative && digits.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.push('-');
    }
    out.push_str(&grouped(int));
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// A whole number with thousands separated by commas.
pub(super) fn count(n: u64) -> String {
    grouped(&n.to_string())
}

/// A setting such as a rate or a level: whole numbers without decimals, others with up
/// to two.
pub(super) fn short(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 {
        number(v, 0)
    } else {
        let text = number(v, 2);
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    }
}

fn grouped(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::capacity::{Conclusion, ProcessUsage};

    #[allow(clippy::too_many_arguments)]
    fn step(
        number: usize,
        stage: &'static str,
        users: u32,
        p99_ms: f64,
        met: bool,
        server_cpu: Option<f64>,
        server_rss: Option<u64>,
        machine: Option<f64>,
    ) -> StepRecord {
        let rate = 50.0;
        let offered = rate * f64::from(users - 1);
        let achieved = if met { offered * 0.999 } else { offered * 0.8 };
        StepRecord {
            number,
            stage,
            level: f64::from(users),
            users,
            rate,
            senders: users,
            offered_deliveries_per_sec: offered,
            achieved_deliveries_per_sec: achieved,
            sent_per_sec: rate,
            p50_ms: p99_ms / 4.0,
            p90_ms: p99_ms / 2.0,
            p99_ms,
            p999_ms: p99_ms * 1.6,
            max_ms: p99_ms * 2.5,
            delivery_ratio: if met { 1.0 } else { 0.97 },
            lost: if met { 0 } else { 1234 },
            errors: 0,
            eviction_failures: 0,
            server: ProcessUsage {
                cpu_percent: server_cpu,
                rss_bytes: server_rss,
            },
            loadgen: ProcessUsage {
                cpu_percent: server_cpu.map(|c| c * 0.6),
                rss_bytes: Some(u64::from(users) * 40_000 + 30_000_000),
            },
            machine_cpu_percent: machine,
            met,
            failures: if met {
                Vec::new()
            } else {
                vec![
                    format!("p99 {p99_ms:.1} ms > 50 ms"),
                    "delivery ratio 0.97 < 0.999".into(),
                ]
            },
        }
    }

    /// Eight steps: up 200, 400, 800, 1600 (missed), then bisection 1200, 1400 (the knee),
    /// 1500 (missed, first bad); some figures missing.
    pub(crate) fn sample_report() -> CapacityReport {
        const MB: u64 = 1_000_000;
        let steps = vec![
            step(
                1,
                "step",
                100,
                3.1,
                true,
                Some(22.0),
                Some(40 * MB),
                Some(40.0),
            ),
            step(
                2,
                "step",
                200,
                4.0,
                true,
                Some(41.0),
                Some(52 * MB),
                Some(75.0),
            ),
            step(
                3,
                "step",
                400,
                6.2,
                true,
                Some(80.5),
                Some(71 * MB),
                Some(140.0),
            ),
            step(4, "step", 800, 12.9, true, None, Some(110 * MB), None),
            step(
                5,
                "step",
                1600,
                340.0,
                false,
                Some(390.0),
                Some(260 * MB),
                Some(398.0),
            ),
            step(
                6,
                "bisect",
                1200,
                24.0,
                true,
                Some(250.0),
                Some(160 * MB),
                Some(300.0),
            ),
            step(
                7,
                "bisect",
                1400,
                41.5,
                true,
                Some(330.0),
                None,
                Some(360.0),
            ),
            step(
                8,
                "bisect",
                1500,
                88.0,
                false,
                Some(371.0),
                Some(230 * MB),
                Some(392.0),
            ),
        ];
        CapacityReport {
            name: "chat-users".into(),
            path: "scenarios/capacity-users.toml".into(),
            description: Some("Users at 50 msg/s each, until p99 passes 50 ms".into()),
            grow: "users".into(),
            level_unit: "users",
            objective: vec!["p99 <= 50 ms".into(), "delivery ratio >= 0.999".into()],
            p99_limit_ms: Some(50.0),
            server: "embedded chat-server (fresh process per step)".into(),
            server_usage_source: UsageSource::Proc,
            cores: 4,
            memory_bytes: Some(16 * 1024 * 1024 * 1024),
            warmup_s: 5.0,
            measure_s: 20.0,
            started_at: "2025-01-02T03:04:05Z".into(),
            ended_at: "2025-01-02T03:09:55Z".into(),
            loadgen_version: "0.1.0".into(),
            git_revision: Some("0123abcd".into()),
            steps,
            outcome: Outcome::Knee {
                good: 1400.0,
                bad: 1500.0,
            },
            conclusion: Conclusion {
                headline: "Sustains 1,400 users at 50 msg/s (69,950 deliveries/s) with p99 \
                           41.5 ms; at 1,500 users p99 is 88.0 ms"
                    .into(),
                details: vec![
                    "The server's CPU ran out: 371% of 400% at the first failing step.".into(),
                    "loadgen used 223% CPU on the same machine.".into(),
                ],
                bottleneck: Bottleneck::ServerCpu,
            },
            knee_step: Some(7),
            first_bad_step: Some(8),
            incomplete: None,
        }
    }

    /// A search that ran no step at all.
    pub(crate) fn empty_report() -> CapacityReport {
        CapacityReport {
            name: "empty".into(),
            description: None,
            git_revision: None,
            memory_bytes: None,
            p99_limit_ms: None,
            objective: Vec::new(),
            server_usage_source: UsageSource::Unknown,
            steps: Vec::new(),
            outcome: Outcome::FailedAtStart { bad: 100.0 },
            conclusion: Conclusion {
                headline: "No step completed.".into(),
                details: Vec::new(),
                bottleneck: Bottleneck::Unknown,
            },
            knee_step: None,
            first_bad_step: None,
            incomplete: None,
            ..sample_report()
        }
    }

    /// A fresh folder under the system temp dir, removed when dropped.
    pub(crate) struct TempDir(pub std::path::PathBuf);

    impl TempDir {
        pub(crate) fn new(label: &str) -> TempDir {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            TempDir(std::env::temp_dir().join(format!(
                "loadgen-capacity-{label}-{}-{nanos}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            )))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn read_csv(bytes: &[u8]) -> (Vec<String>, Vec<csv::StringRecord>) {
        let mut reader = csv::Reader::from_reader(bytes);
        let header = reader.headers().unwrap().iter().map(String::from).collect();
        let rows = reader.records().map(Result::unwrap).collect();
        (header, rows)
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_step_in_run_order() {
        let report = sample_report();
        let (header, rows) = read_csv(&capacity_csv(&report).unwrap());
        assert_eq!(header, CSV_HEADER);
        assert_eq!(rows.len(), report.steps.len());
        let column = |name: &str| CSV_HEADER.iter().position(|c| *c == name).unwrap();
        let numbers: Vec<&str> = rows.iter().map(|r| &r[column("number")]).collect();
        assert_eq!(numbers, ["1", "2", "3", "4", "5", "6", "7", "8"]);
        assert_eq!(&rows[4][column("met")], "false");
        assert_eq!(
            &rows[4][column("failures")],
            "p99 340.0 ms > 50 ms; delivery ratio 0.97 < 0.999"
        );
        assert_eq!(&rows[3][column("server_cpu_percent")], "");
        assert_eq!(&rows[3][column("machine_cpu_percent")], "");
        assert_eq!(&rows[3][column("server_rss_bytes")], "110000000");
        assert_eq!(&rows[6][column("server_rss_bytes")], "");
        assert_eq!(&rows[0][column("server_cpu_percent")], "22.00");
        assert_eq!(&rows[0][column("level")], "100.000");
        assert_eq!(&rows[0][column("p99_ms")], "3.100");
    }

    #[test]
    fn csv_of_no_steps_is_just_the_header() {
        let (header, rows) = read_csv(&capacity_csv(&empty_report()).unwrap());
        assert_eq!(header, CSV_HEADER);
        assert!(rows.is_empty());
    }

    #[test]
    fn markdown_says_what_the_page_says_without_charts() {
        let report = sample_report();
        let md = markdown(&report);
        assert!(md.starts_with("# Capacity: chat-users\n"), "{md}");
        assert!(md.contains(&format!("**{}**", report.conclusion.headline)));
        for detail in &report.conclusion.details {
            assert!(md.contains(&format!("- {detail}")), "{detail}");
        }
        assert!(md.contains("**Bottleneck:** server CPU"));
        assert!(md.contains("- p99 <= 50 ms"));
        assert!(md.contains("- **Logical CPUs:** 4"));
        assert!(md.contains("- **Memory:** 16.0 GiB"));
        assert!(md.contains("[report.html](report.html)"));
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| #") && !l.starts_with("| -"))
            .collect();
        assert_eq!(rows.len(), report.steps.len());
        let first_cells: Vec<&str> = rows
            .iter()
            .map(|r| r.split(" | ").next().unwrap_or(""))
            .collect();
        assert_eq!(
            first_cells,
            [
                "| 1",
                "| 2",
                "| 3",
                "| 4",
                "| 6",
                "| **7** (knee)",
                "| **8** (first bad)",
                "| 5"
            ]
        );
        assert!(
            rows[3].contains(" – "),
            "missing CPU reads as a dash: {}",
            rows[3]
        );
    }

    #[test]
    fn markdown_of_no_steps_says_so() {
        let md = markdown(&empty_report());
        assert!(md.contains("No step ran."));
        assert!(md.contains("No thresholds"));
    }

    #[test]
    fn numbers_read_with_separators_and_dashes() {
        assert_eq!(number(69950.0, 0), "69,950");
        assert_eq!(number(1234567.891, 2), "1,234,567.89");
        assert_eq!(number(-1500.0, 0), "-1,500");
        assert_eq!(number(-0.001, 2), "0.00");
        assert_eq!(number(999.0, 1), "999.0");
        assert_eq!(number(f64::NAN, 1), NONE);
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(100), "100");
        assert_eq!(short(50.0), "50");
        assert_eq!(short(12.5), "12.5");
        assert_eq!(short(1400.25), "1,400.25");
    }

    #[test]
    fn write_all_writes_four_files_that_parse() {
        let report = sample_report();
        let temp = TempDir::new("all");
        let dir = temp.0.join("nested").join("chat-users");
        write_all(&dir, &report).unwrap();

        let (header, rows) = read_csv(&std::fs::read(dir.join(CAPACITY_CSV)).unwrap());
        assert_eq!(header, CSV_HEADER);
        assert_eq!(rows.len(), report.steps.len());

        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(CAPACITY_JSON)).unwrap()).unwrap();
        let steps = json["steps"].as_array().unwrap();
        assert_eq!(steps.len(), report.steps.len());
        assert_eq!(steps[6]["number"], 7);
        assert_eq!(steps[3]["server"]["cpu_percent"], serde_json::Value::Null);
        assert_eq!(json["outcome"]["kind"], "knee");
        assert_eq!(json["conclusion"]["bottleneck"], "server-cpu");
        assert_eq!(json["knee_step"], 7);

        let md = std::fs::read_to_string(dir.join(REPORT_MD)).unwrap();
        assert!(md.contains(&report.conclusion.headline));
        let page = std::fs::read_to_string(dir.join(REPORT_HTML)).unwrap();
        crate::capacity::html::tests::parse(&page);
    }

    #[test]
    fn failure_names_the_file() {
        let temp = TempDir::new("blocked");
        // A folder where report.md should go makes writing it fail.
        std::fs::create_dir_all(temp.0.join(REPORT_MD)).unwrap();
        let error = write_all(&temp.0, &sample_report()).unwrap_err();
        assert!(matches!(error, ReportError::Write { .. }), "{error:?}");
        assert!(error.to_string().contains(REPORT_MD), "{error}");
    }
}
