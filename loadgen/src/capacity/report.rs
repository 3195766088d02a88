//! The files a capacity search leaves behind: `capacity.csv` (one row per step, for
//! spreadsheets), `capacity.json` (everything, for tools), `report.md` (the conclusion and
//! the steps in words, for a pull request or a terminal) and `report.html` (the same with
//! charts, see [`super::html`]).
//!
//! The two human reports say the same things in the same words: the wording lives in
//! [`super::wording`], the numbers in [`super::format`].

use std::fmt::Write as _;
use std::path::Path;

use super::wording::{
    bottleneck_text, reproduction_cells, setup_rows, step_cells, step_mark, steps_by_level,
    REPRODUCTION_COLUMNS, REPRODUCTION_NOTE, STEPS_NOTE, STEP_COLUMNS,
};
use super::{html, CapacityReport, StepRecord};
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
    write_file(
        dir,
        REPORT_HTML,
        html::page(report)
            .map(String::into_bytes)
            .map_err(EncodeError::other),
    )
}

/// Columns of `capacity.csv`, in order.
pub const CSV_HEADER: [&str; 26] = [
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
    "latency_share",
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
fn csv_row(step: &StepRecord) -> [String; 26] {
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
        latency_share,
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
        fixed(*latency_share, 4),
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

    if !report.reproduction.is_empty() {
        writeln!(md, "## Reproduction\n")?;
        writeln!(md, "{REPRODUCTION_NOTE}\n")?;
        writeln!(md, "| {} |", REPRODUCTION_COLUMNS.join(" | "))?;
        writeln!(md, "|---|--:|--:|--:|--:|--:|---|")?;
        for row in &report.reproduction {
            let cells = reproduction_cells(row).map(|cell| cell_text(&cell));
            writeln!(md, "| {} |", cells.join(" | "))?;
        }
        writeln!(md)?;
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::fixtures::{empty_report, sample_report};
    use crate::scratch::TempDir;

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
        let steps = &md[md.find("## Steps").unwrap()..];
        let rows: Vec<&str> = steps
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| #") && !l.starts_with("| -"))
            .collect();
        assert!(md.contains("## Reproduction"), "{md}");
        assert!(
            md.contains("| knee | 1,400 | 50 | 1 of 3 | 1 of 3 | 44.0 – 55.2 | 10, 12, 15 |"),
            "{md}"
        );
        assert!(md.contains("- **Published capacity:** 1,200 users"), "{md}");
        assert!(
            md.contains("- **Machine calibration:** loopback send 7.21 → 7.30 µs (+1.2%)"),
            "{md}"
        );
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
                "| **6** (capacity)",
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
        crate::page::html::tests::parse(&page);
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
