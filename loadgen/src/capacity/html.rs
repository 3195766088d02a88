//! `report.html`: the capacity report as one self-contained page, to open from disk,
//! attach to a ticket or archive.
//!
//! Everything is inline: the CSS, and the three charts as SVG. There are no scripts and no
//! references outside the file (no stylesheets, images, fonts or CDNs), so the page shows
//! the same offline and years later. It is also well-formed XML (every tag closed, every
//! value escaped, only XML's own entities), so tools and tests can read it with an XML
//! parser. The wording is shared with `report.md` through [`super::wording`].

use std::fmt::Write as _;

use super::charts::{self, ChartError};
use super::wording::{
    bottleneck_text, setup_rows, step_cells, step_mark, steps_by_level, STEPS_NOTE, STEP_COLUMNS,
};
use super::CapacityReport;
use crate::xml::escape;

/// How to read each chart, one line under it.
const LATENCY_CAPTION: &str = "Delivery latency percentiles at each offered load. Filled \
     dots met the objective, red rings missed it; the dashed line is the p99 limit and the \
     vertical line the knee. Triangles on the top edge lie above the axis (the table below \
     has their values).";
const THROUGHPUT_CAPTION: &str = "Deliveries per second offered and achieved at each load: \
     where achieved falls below offered, the server (or loadgen) stopped keeping up.";
const RESOURCES_CAPTION: &str = "CPU (percent of one core: 100 per busy core) and peak \
     memory of the server and of loadgen at each load: the one that nears its limit first \
     is the bottleneck. Missing figures are left out.";

const STYLE: &str = "
body { margin: 0; background: #f6f7f9; color: #1d232b;
  font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 12px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid #e3e6ea; }
.headline { font-size: 20px; font-weight: 600; margin: 0 0 12px; padding: 14px 18px;
  background: #eef5fc; border-left: 5px solid #1f77b4; border-radius: 4px; }
.details { margin: 0 0 12px; }
.bottleneck { margin: 0 0 8px; }
.label { font-weight: 600; }
table { border-collapse: collapse; }
.setup th { text-align: left; font-weight: 600; padding: 3px 18px 3px 0; vertical-align: top; }
.setup td { padding: 3px 0; }
figure { margin: 18px 0 28px; }
figure svg { display: block; width: 100%; height: auto; border: 1px solid #e3e6ea; }
figcaption { color: #4a5361; font-size: 14px; margin-top: 6px; }
.scroll { overflow-x: auto; }
.steps { font-size: 12.5px; font-variant-numeric: tabular-nums; }
.steps th, .steps td { border: 1px solid #dde1e6; padding: 4px 6px; text-align: right;
  white-space: nowrap; }
.steps th { background: #f0f2f5; white-space: normal; vertical-align: bottom;
  min-width: 3em; }
.steps td.text { text-align: left; }
.steps td.failures { text-align: left; white-space: normal; min-width: 220px; }
.steps tr.missed td.met { color: #b3261e; font-weight: 600; }
.steps tr.knee td { background: #fff4c2; font-weight: 600; }
.steps tr.first-bad td { background: #fdecea; }
.tag { display: inline-block; white-space: nowrap; font-size: 11px; font-weight: 600;
  padding: 0 5px; margin-left: 4px; border-radius: 3px; background: #1d232b; color: #fff; }
.note { color: #4a5361; font-size: 14px; }
footer { margin-top: 28px; color: #6a7382; font-size: 13px; }
";

/// The whole page.
pub fn page(report: &CapacityReport) -> Result<String, ChartError> {
    let latency = charts::latency_chart(report)?;
    let throughput = charts::throughput_chart(report)?;
    let resources = charts::resources_chart(report)?;
    let mut html = String::new();
    // Writing into a String cannot fail.
    let _ = write_page(
        &mut html,
        report,
        [
            (latency, LATENCY_CAPTION),
            (throughput, THROUGHPUT_CAPTION),
            (resources, RESOURCES_CAPTION),
        ],
    );
    Ok(html)
}

fn write_page(
    html: &mut String,
    report: &CapacityReport,
    charts: [(String, &str); 3],
) -> std::fmt::Result {
    let title = escape(&format!("Capacity: {}", report.name));
    writeln!(html, "<!DOCTYPE html>")?;
    writeln!(
        html,
        "<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">"
    )?;
    writeln!(html, "<head>")?;
    writeln!(html, "<meta charset=\"utf-8\"/>")?;
    writeln!(
        html,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>"
    )?;
    writeln!(html, "<title>{title}</title>")?;
    writeln!(html, "<style>{STYLE}</style>")?;
    writeln!(html, "</head>")?;
    writeln!(html, "<body>")?;
    writeln!(html, "<main>")?;
    writeln!(html, "<h1>{title}</h1>")?;

    let conclusion = &report.conclusion;
    writeln!(
        html,
        "<p class=\"headline\">{}</p>",
        escape(&conclusion.headline)
    )?;
    if !conclusion.details.is_empty() {
        writeln!(html, "<ul class=\"details\">")?;
        for detail in &conclusion.details {
            writeln!(html, "<li>{}</li>", escape(detail))?;
        }
        writeln!(html, "</ul>")?;
    }
    writeln!(
        html,
        "<p class=\"bottleneck\"><span class=\"label\">Bottleneck:</span> {}</p>",
        escape(bottleneck_text(conclusion.bottleneck))
    )?;

    writeln!(html, "<h2>Objective</h2>")?;
    if report.objective.is_empty() {
        writeln!(
            html,
            "<p>No thresholds: every step that ran to its end met it.</p>"
        )?;
    } else {
        writeln!(html, "<ul class=\"objective\">")?;
        for threshold in &report.objective {
            writeln!(html, "<li>{}</li>", escape(threshold))?;
        }
        writeln!(html, "</ul>")?;
    }

    writeln!(html, "<h2>Setup</h2>")?;
    writeln!(html, "<table class=\"setup\"><tbody>")?;
    for (label, value) in setup_rows(report) {
        writeln!(
            html,
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
            escape(label),
            escape(&value)
        )?;
    }
    writeln!(html, "</tbody></table>")?;

    writeln!(html, "<h2>Charts</h2>")?;
    for (svg, caption) in charts {
        writeln!(html, "<figure>")?;
        html.push_str(svg.trim_end());
        writeln!(html)?;
        writeln!(html, "<figcaption>{}</figcaption>", escape(caption))?;
        writeln!(html, "</figure>")?;
    }

    writeln!(html, "<h2>Steps</h2>")?;
    writeln!(html, "<p class=\"note\">{}</p>", escape(STEPS_NOTE))?;
    write_steps_table(html, report)?;

    writeln!(
        html,
        "<footer>Written by loadgen {} from {}.</footer>",
        escape(&report.loadgen_version),
        escape(&report.path)
    )?;
    writeln!(html, "</main>")?;
    writeln!(html, "</body>")?;
    writeln!(html, "</html>")
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

    /// Parses `page` as XML (allowing its `<!DOCTYPE html>`), or fails the test.
    pub(crate) fn parse(page: &str) -> roxmltree::Document<'_> {
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        };
        match roxmltree::Document::parse_with_options(page, options) {
            Ok(doc) => doc,
            Err(error) => panic!("not well-formed XML: {error}\n{page}"),
        }
    }

    fn elements<'a, 'input>(
        doc: &'a roxmltree::Document<'input>,
        name: &'a str,
    ) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> + 'a {
        doc.descendants()
            .filter(move |n| n.is_element() && n.tag_name().name() == name)
    }

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

    fn text_of(node: roxmltree::Node) -> String {
        node.descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect()
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
    fn page_fetches_nothing() {
        let page = page(&sample_report()).unwrap();
        let doc = parse(&page);
        let namespaces = ["http://www.w3.org/1999/xhtml", "http://www.w3.org/2000/svg"];
        let mut rest = page.clone();
        for ns in namespaces {
            rest = rest.replace(&format!("xmlns=\"{ns}\""), "");
        }
        assert!(
            !rest.contains("http://") && !rest.contains("https://"),
            "{rest}"
        );
        for name in [
            "script", "link", "img", "iframe", "object", "embed", "image",
        ] {
            assert_eq!(elements(&doc, name).count(), 0, "<{name}> in the page");
        }
        assert!(!page.contains("@import") && !page.contains("url("));
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
