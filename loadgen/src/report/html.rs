//! `report.html`: a run as one self-contained page — the verdict in words, the thresholds,
//! the charts over time, the figures and the setup. The live view
//! ([`crate::dashboard`]) serves the same page, drawn from the figures so far.

use super::charts;
use super::picture::RunPicture;
use super::table::value;
use crate::page::html::{Cell, Document};
use crate::page::ChartError;

/// How to read each chart, one line under it (in [`charts::all`]'s order).
const CAPTIONS: [&str; 6] = [
    "Delivery latency per one-second interval. The dashed line is the p99 limit; dashed \
     vertical lines mark where each phase begins, and the shaded span is the warm-up, which \
     is not judged. Triangles on the top edge lie above the axis.",
    "Messages sent per second by all senders (above) and deliveries received per second by \
     all users (below). A broadcast to N users is N deliveries.",
    "Users online (above), and connections opened, relogins, planned churn leaves and \
     unexpected disconnects per interval (below).",
    "Errors per interval (above): lost messages are counted when the run ends, in the \
     interval they were sent in. Relogin eviction outcomes per interval (below): anything \
     but ok is a failed eviction.",
    "The whole run's delivery latency (after the warm-up) by percentile, on HdrHistogram's \
     log-scaled axis: each step right is ten times rarer (90%, 99%, 99.9%, …). The line ends \
     at the maximum.",
    "Resident memory of loadgen and of the server, sampled every few seconds through the \
     run (resources.csv has the samples and both processes' CPU). A soak judges its slope \
     after the settling time: summary.json's memory_growth.",
];

/// Columns of the thresholds table.
const THRESHOLD_COLUMNS: [&str; 5] = ["threshold", "measured", "must be", "limit", "verdict"];

/// The whole page.
pub fn page(picture: &RunPicture) -> Result<String, ChartError> {
    let charts = charts::all(picture)?;
    let mut doc = Document::new(&format!("Run: {}", picture.name), picture.refresh);
    doc.headline(&picture.headline, picture.tone);
    if let Some(seconds) = picture.refresh {
        doc.paragraph(
            "note",
            &format!(
                "Live view: this page reloads every {seconds} s while the run lasts. Loss is \
                 counted when the run ends; report.html in the report folder is the final page."
            ),
        );
    }

    doc.heading("Thresholds");
    if let Some(note) = &picture.thresholds_note {
        doc.paragraph("note", note);
    }
    let rows: Vec<Vec<Cell>> = picture
        .verdicts
        .iter()
        .map(|v| {
            vec![
                Cell::words(v.name.clone()),
                Cell::figure(value(v.actual, v.unit)),
                Cell::words(v.relation()),
                Cell::figure(value(v.limit, v.unit)),
                if v.passed {
                    Cell::passed("PASS")
                } else {
                    Cell::failed("FAIL")
                },
            ]
        })
        .collect();
    doc.table(
        "thresholds",
        &THRESHOLD_COLUMNS,
        &rows,
        "No thresholds: the run is judged by nothing.",
    );

    doc.heading("Over time");
    if charts::thinned(picture) {
        doc.paragraph(
            "note",
            &format!(
                "This run has {} intervals: each line below shows at most {} points, the \
                 lowest and the highest of each group of consecutive intervals, so no spike \
                 is hidden. timeseries.csv has every interval.",
                picture.rows.len(),
                charts::MAX_POINTS
            ),
        );
    }
    for ((_, svg), caption) in charts.iter().zip(CAPTIONS) {
        doc.figure(svg, caption);
    }

    // The setup below already names the scenario, the server and the targets.
    let figures = picture
        .figures
        .iter()
        .filter(|(label, _)| !matches!(*label, "scenario" | "server" | "targets" | "tls"));
    if !picture.figures.is_empty() {
        doc.heading("Figures");
        doc.setup(figures.map(|(l, v)| (*l, v.clone())));
    }
    doc.heading("Setup");
    doc.setup(picture.setup.iter().map(|(l, v)| (*l, v.clone())));
    Ok(doc.finish(&picture.footer))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::page::html::tests::{assert_fetches_nothing, elements, parse, text_of};
    use crate::report::tests::sample;

    /// The ids of every chart a run page must have.
    pub(crate) const CHART_IDS: [&str; 5] = [
        charts::LATENCY_ID,
        charts::THROUGHPUT_ID,
        charts::USERS_ID,
        charts::ERRORS_ID,
        charts::SPECTRUM_ID,
    ];

    #[test]
    fn a_long_run_says_its_charts_are_thinned_and_stays_small() {
        let report = sample();
        let verdicts = report.verdicts();
        let short = RunPicture::of(&report, &verdicts);
        assert!(!page(&short).unwrap().contains("at most 2000 points"));
        // A day of intervals: the page must stay about as small as a short run's.
        let mut long = RunPicture::of(&report, &verdicts);
        let row = long.rows[1].clone();
        long.rows = (0..86_400)
            .map(|i| {
                let mut r = row.clone();
                r.start_s = f64::from(i);
                r
            })
            .collect();
        let html = page(&long).unwrap();
        assert!(
            html.contains("This run has 86400 intervals"),
            "the page says so"
        );
        assert!(html.len() < 3_000_000, "{} bytes", html.len());
    }

    #[test]
    fn the_page_has_the_verdict_thresholds_and_every_chart() {
        let report = sample();
        let verdicts = report.verdicts();
        let page = page(&RunPicture::of(&report, &verdicts)).unwrap();
        assert_fetches_nothing(&page);
        let doc = parse(&page);
        let ids: Vec<&str> = elements(&doc, "svg")
            .filter_map(|svg| svg.attribute("id"))
            .collect();
        assert_eq!(ids, CHART_IDS);
        let headline = elements(&doc, "p")
            .find(|p| p.attribute("class") == Some("headline fail"))
            .map(text_of)
            .unwrap_or_default();
        assert!(headline.starts_with("FAIL"), "{headline}");
        let table = elements(&doc, "table")
            .find(|t| t.attribute("id") == Some("thresholds"))
            .unwrap();
        let body_rows = table
            .descendants()
            .filter(|n| n.tag_name().name() == "tr")
            .count();
        assert_eq!(body_rows, 1 + verdicts.len());
        let whole = text_of(doc.root_element());
        for text in [
            "smoke (scenarios/smoke.toml)",
            "0123abcd",
            "phase 1 2s",
            "relogins",
        ] {
            assert!(whole.contains(text), "lacks {text:?}");
        }
        assert!(!page.contains("http-equiv"), "a final page does not reload");
    }
}
