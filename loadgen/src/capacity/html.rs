//! `report.html`: the capacity report as one self-contained page, to open from disk,
//! attach to a ticket or archive.
//!
//! Everything is inline: the CSS, and the three charts as SVG. There are no scripts and no
//! references outside the file (no stylesheets, images, fonts or CDNs), so the page shows
//! the same offline and years later. It is also well-formed XML (every tag closed, every
//! value escaped, only XML's own entities), so tools and tests can read it with an XML
//! parser. The wording is shared with `report.md` through [`super::wording`].

use std::fmt::Write as _;

use super::charts;
use super::procedure::Load;
use super::wording::{
    bottleneck_text, reproduction_cells, setup_rows, step_cells, step_mark, steps_by_level,
    REPRODUCTION_COLUMNS, REPRODUCTION_NOTE, STEPS_NOTE, STEP_COLUMNS,
};
use super::CapacityReport;
use crate::page::html::{Cell, Document, Tone};
use crate::page::ChartError;
use crate::xml::escape;

/// How to read each chart, one line under it.
const LATENCY_CAPTION: &str = "Delivery latency percentiles at each offered load. Filled \
     dots met the objective, red rings missed it; the red dashed line is the p99 limit and the \
     green one the margin the published capacity keeps; the vertical lines are the \
     published capacity (green) and the knee (grey). Triangles on the top edge lie above the axis (the table below \
     has their values).";
const THROUGHPUT_CAPTION: &str = "Deliveries per second offered and achieved at each load: \
     where achieved falls below offered, the server (or loadgen) stopped keeping up.";
const RESOURCES_CAPTION: &str = "CPU (percent of one core: 100 per busy core) and peak \
     memory of the server and of loadgen at each load: the one that nears its limit first \
     is the bottleneck. Missing figures are left out.";

/// The whole page.
pub fn page(report: &CapacityReport) -> Result<String, ChartError> {
    let latency = charts::latency_chart(report)?;
    let throughput = charts::throughput_chart(report)?;
    let resources = charts::resources_chart(report)?;
    let mut doc = Document::new(&format!("Capacity: {}", report.name), None);
    let conclusion = &report.conclusion;
    doc.headline(&conclusion.headline, Tone::Neutral);
    if !conclusion.details.is_empty() {
        doc.list("details", &conclusion.details);
    }
    doc.labelled(
        "bottleneck",
        "Bottleneck:",
        bottleneck_text(conclusion.bottleneck),
    );

    if !report.reproduction.is_empty() {
        doc.heading("Reproduction");
        doc.paragraph("note", REPRODUCTION_NOTE);
        let rows: Vec<Vec<Cell>> = report
            .reproduction
            .iter()
            .map(|r| {
                // A miss is news at the capacity and the knee; above the knee it is expected.
                let short = r.met < r.runs && r.load != Load::AboveKnee;
                reproduction_cells(r)
                    .into_iter()
                    .enumerate()
                    .map(|(i, text)| match i {
                        0 => Cell::words(text),
                        3 if short => Cell::failed(text),
                        6 => Cell::words(text),
                        _ => Cell::figure(text),
                    })
                    .collect()
            })
            .collect();
        doc.table("reproduction", &REPRODUCTION_COLUMNS, &rows, "");
    }

    doc.heading("Objective");
    if report.objective.is_empty() {
        doc.paragraph(
            "note",
            "No thresholds: every step that ran to its end met it.",
        );
    } else {
        doc.list("objective", &report.objective);
    }

    doc.heading("Setup");
    doc.setup(setup_rows(report));

    doc.heading("Charts");
    for (svg, caption) in [
        (latency, LATENCY_CAPTION),
        (throughput, THROUGHPUT_CAPTION),
        (resources, RESOURCES_CAPTION),
    ] {
        doc.figure(&svg, caption);
    }

    doc.heading("Steps");
    doc.paragraph("note", STEPS_NOTE);
    // Writing into a String cannot fail.
    let _ = write_steps_table(doc.markup(), report);

    Ok(doc.finish(&format!(
        "Written by loadgen {} from {}.",
        report.loadgen_version, report.path
    )))
}

fn write_steps_table(html: &mut String, report: &CapacityReport) -> std::fmt::Result {
    writeln!(html, "<div class=\"scroll\">")?;
    writeln!(html, "<table class=\"steps\">")?;
    write!(html, "<thead><tr>")?;
    for column in STEP_COLUMNS {
        write!(html, "<th scope=\"col\">{}</th>", escape(column))?;
    }
    writeln!(html, "</tr></thead>")?;
    writeln!(html, "<tbody>")?;
    for step in steps_by_level(report) {
        let mark = step_mark(report, step);
        let mut classes = Vec::new();
        match mark {
            Some("knee") => classes.push("knee"),
            Some("capacity") => classes.push("capacity"),
            Some("capacity and knee") => classes.extend(["knee", "capacity"]),
            Some(_) => classes.push("first-bad"),
            None => {}
        }
        if !step.met {
            classes.push("missed");
        }
        if classes.is_empty() {
            write!(html, "<tr>")?;
        } else {
            write!(html, "<tr class=\"{}\">", classes.join(" "))?;
        }
        for (column, cell) in STEP_COLUMNS.iter().zip(step_cells(step)) {
            let class = match *column {
                "stage" => " class=\"text\"",
                "met" => " class=\"text met\"",
                "failures" => " class=\"failures\"",
                _ => "",
            };
            write!(html, "<td{class}>{}", escape(&cell))?;
            if *column == "#" {
                if let Some(mark) = mark {
                    write!(html, "<span class=\"tag\">{}</span>", escape(mark))?;
                }
            }
            write!(html, "</td>")?;
        }
        writeln!(html, "</tr>")?;
    }
    if report.steps.is_empty() {
        writeln!(
            html,
            "<tr><td class=\"text\" colspan=\"{}\">No step ran.</td></tr>",
            STEP_COLUMNS.len()
        )?;
    }
    writeln!(html, "</tbody>")?;
    writeln!(html, "</table>")?;
    writeln!(html, "</div>")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::capacity::fixtures::{empty_report, sample_report};

    pub(crate) use crate::page::html::tests::{elements, parse, text_of};

    /// The rows of the steps table's body.
    fn step_rows<'a, 'input>(
        doc: &'a roxmltree::Document<'input>,
    ) -> Vec<roxmltree::Node<'a, 'input>> {
        let table = elements(doc, "table")
            .find(|t| t.attribute("class") == Some("steps"))
            .unwrap();
        let body = table
            .children()
            .find(|n| n.tag_name().name() == "tbody")
            .unwrap();
        body.children().filter(|n| n.is_element()).collect()
    }

    #[test]
    fn page_is_well_formed_xml_with_three_charts_and_the_conclusion() {
        let report = sample_report();
        let page = page(&report).unwrap();
        assert!(page.starts_with("<!DOCTYPE html>\n"));
        let doc = parse(&page);
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "html");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/1999/xhtml")
        );

        let svg_ids: Vec<&str> = elements(&doc, "svg")
            .map(|svg| svg.attribute("id").unwrap_or(""))
            .collect();
        assert_eq!(
            svg_ids,
            [
                charts::LATENCY_ID,
                charts::THROUGHPUT_ID,
                charts::RESOURCES_ID
            ]
        );
        for svg in elements(&doc, "svg") {
            assert_eq!(
                svg.tag_name().namespace(),
                Some("http://www.w3.org/2000/svg")
            );
        }

        let title = elements(&doc, "h1").next().map(text_of);
        assert_eq!(title.as_deref(), Some("Capacity: chat-users"));
        let headline = elements(&doc, "p")
            .find(|p| p.attribute("class") == Some("headline"))
            .map(text_of);
        assert_eq!(
            headline.as_deref(),
            Some(report.conclusion.headline.as_str())
        );
        assert_eq!(elements(&doc, "figcaption").count(), 3);
        let whole = text_of(root);
        for detail in &report.conclusion.details {
            assert!(whole.contains(detail.as_str()), "{detail}");
        }
        for threshold in &report.objective {
            assert!(whole.contains(threshold.as_str()), "{threshold}");
        }
        assert!(whole.contains("0123abcd"));
    }

    #[test]
    fn steps_table_has_one_row_per_step_by_level_with_the_knee_marked() {
        let report = sample_report();
        let page = page(&report).unwrap();
        let doc = parse(&page);
        let rows = step_rows(&doc);
        assert_eq!(rows.len(), report.steps.len());
        let users: Vec<String> = rows
            .iter()
            .map(|row| text_of(row.children().filter(|n| n.is_element()).nth(2).unwrap()))
            .collect();
        assert_eq!(
            users,
            ["100", "200", "400", "800", "1,200", "1,400", "1,500", "1,600"]
        );
        let knee: Vec<_> = rows
            .iter()
            .filter(|r| r.attribute("class") == Some("knee"))
            .collect();
        assert_eq!(knee.len(), 1);
        let capacity: Vec<_> = rows
            .iter()
            .filter(|r| r.attribute("class") == Some("capacity"))
            .collect();
        assert_eq!(capacity.len(), 1);
        assert!(
            text_of(*capacity[0]).starts_with("6capacitybisect1,200"),
            "{}",
            text_of(*capacity[0])
        );
        assert!(
            text_of(*knee[0]).starts_with("7kneebisect1,400"),
            "{}",
            text_of(*knee[0])
        );
        let cells = rows[0].children().filter(|n| n.is_element()).count();
        assert_eq!(cells, STEP_COLUMNS.len());
        // Step 4 has no server CPU figure.
        assert!(text_of(rows[3]).contains('–'));
    }

    #[test]
    fn a_missed_re_run_is_red_at_the_knee_but_not_above_it() {
        let page = page(&sample_report()).unwrap();
        let doc = parse(&page);
        let table = doc
            .descendants()
            .find(|n| n.attribute("id") == Some("reproduction"))
            .expect("the reproduction table");
        let red: Vec<String> = table
            .descendants()
            .filter(|n| n.has_tag_name("tr"))
            .filter(|row| {
                row.descendants()
                    .any(|cell| cell.attribute("class") == Some("text fail"))
            })
            .map(|row| text_of(row))
            .collect();
        assert_eq!(red.len(), 1, "{red:?}");
        assert!(red[0].starts_with("knee"), "{red:?}");
    }

    #[test]
    fn page_fetches_nothing() {
        crate::page::html::tests::assert_fetches_nothing(&page(&sample_report()).unwrap());
    }

    #[test]
    fn text_is_escaped() {
        let mut report = sample_report();
        report.name = "a<b>&\"c'".into();
        report.conclusion.headline = "p99 < 50 ms & \"fine\"".into();
        report.objective.push("<script>alert(1)</script>".into());
        report.steps[0].failures = vec!["x < y & z".into()];
        let page = page(&report).unwrap();
        assert!(page.contains("Capacity: a&lt;b&gt;&amp;&quot;c&apos;"));
        assert!(!page.contains("<script>"));
        let doc = parse(&page);
        let title = elements(&doc, "title").next().map(text_of);
        assert_eq!(title.as_deref(), Some("Capacity: a<b>&\"c'"));
        let headline = elements(&doc, "p")
            .find(|p| p.attribute("class") == Some("headline"))
            .map(text_of);
        assert_eq!(headline.as_deref(), Some("p99 < 50 ms & \"fine\""));
        assert_eq!(elements(&doc, "script").count(), 0);
    }

    #[test]
    fn empty_report_gives_a_valid_page() {
        let report = empty_report();
        let page = page(&report).unwrap();
        let doc = parse(&page);
        assert_eq!(elements(&doc, "svg").count(), 3);
        let rows = step_rows(&doc);
        assert_eq!(rows.len(), 1);
        assert_eq!(text_of(rows[0]), "No step ran.");
    }

    /// Leaves the sample page at `$TMPDIR/capacity-sample/report.html` (and the page of
    /// a search without steps as `empty.html` beside it) to look at in a browser.
    #[test]
    fn writes_the_sample_page_for_viewing() {
        let dir = std::env::temp_dir().join("capacity-sample");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, report) in [
            ("report.html", sample_report()),
            ("empty.html", empty_report()),
        ] {
            let page = page(&report).unwrap();
            std::fs::write(dir.join(name), &page).unwrap();
            parse(&page);
        }
    }
}
