//! One self-contained report page, as every report writes it: to open from disk, attach to
//! a ticket or archive.
//!
//! Everything is inline: the CSS, and the charts as SVG. There are no scripts and no
//! references outside the file (no stylesheets, images, fonts or CDNs), so the page shows
//! the same offline and years later. It is also well-formed XML (every tag closed, every
//! value escaped, only XML's own entities), so tools and tests can read it with an XML
//! parser. [`Document`] writes the parts every page has (title, headline, setup table,
//! figures, tables, footer); a report module decides what goes in them.

use std::fmt::Write as _;

use crate::xml::escape;

/// How a headline reads: its colour says the verdict before the words do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A finding without a verdict (a capacity search's conclusion).
    Neutral,
    /// Every threshold held.
    Pass,
    /// A threshold failed, or the run broke.
    Fail,
    /// Not finished: a live view, or an incomplete run.
    Pending,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Neutral => "headline",
            Tone::Pass => "headline pass",
            Tone::Fail => "headline fail",
            Tone::Pending => "headline pending",
        }
    }
}

/// One cell of a [`Document::table`].
pub struct Cell {
    pub text: String,
    /// Its `class` (e.g. `"text"` for left-aligned words, `"fail"` for a failed figure).
    pub class: Option<&'static str>,
}

impl Cell {
    /// A right-aligned figure.
    pub fn figure(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            class: None,
        }
    }

    /// Left-aligned words.
    pub fn words(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            class: Some("text"),
        }
    }

    /// Words marked as a failure (red).
    pub fn failed(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            class: Some("text fail"),
        }
    }

    /// Words marked as a success.
    pub fn passed(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            class: Some("text pass"),
        }
    }
}

/// A page being written. Writing into a `String` cannot fail, so no method returns an
/// error.
pub struct Document {
    html: String,
}

impl Document {
    /// The page's head and its title as the first heading. With `refresh`, the browser
    /// reloads it every that many seconds (the live view).
    pub fn new(title: &str, refresh: Option<u32>) -> Document {
        let title = escape(title);
        let mut html = String::new();
        let _ = writeln!(html, "<!DOCTYPE html>");
        let _ = writeln!(
            html,
            "<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">"
        );
        let _ = writeln!(html, "<head>");
        let _ = writeln!(html, "<meta charset=\"utf-8\"/>");
        let _ = writeln!(
            html,
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>"
        );
        if let Some(seconds) = refresh {
            let _ = writeln!(html, "<meta http-equiv=\"refresh\" content=\"{seconds}\"/>");
        }
        let _ = writeln!(html, "<title>{title}</title>");
        let _ = writeln!(html, "<style>{STYLE}</style>");
        let _ = writeln!(html, "</head>");
        let _ = writeln!(html, "<body>");
        let _ = writeln!(html, "<main>");
        let _ = writeln!(html, "<h1>{title}</h1>");
        Document { html }
    }

    /// The verdict in words, in a coloured box.
    pub fn headline(&mut self, text: &str, tone: Tone) {
        let _ = writeln!(
            self.html,
            "<p class=\"{}\">{}</p>",
            tone.class(),
            escape(text)
        );
    }

    /// A section heading.
    pub fn heading(&mut self, text: &str) {
        let _ = writeln!(self.html, "<h2>{}</h2>", escape(text));
    }

    /// A paragraph of `class` (e.g. `"note"`).
    pub fn paragraph(&mut self, class: &str, text: &str) {
        let _ = writeln!(
            self.html,
            "<p class=\"{}\">{}</p>",
            escape(class),
            escape(text)
        );
    }

    /// A paragraph that starts with a bold label: "**Bottleneck:** the server …".
    pub fn labelled(&mut self, class: &str, label: &str, text: &str) {
        let _ = writeln!(
            self.html,
            "<p class=\"{}\"><span class=\"label\">{}</span> {}</p>",
            escape(class),
            escape(label),
            escape(text)
        );
    }

    /// A bulleted list of `class`.
    pub fn list<S: AsRef<str>>(&mut self, class: &str, items: impl IntoIterator<Item = S>) {
        let _ = writeln!(self.html, "<ul class=\"{}\">", escape(class));
        for item in items {
            let _ = writeln!(self.html, "<li>{}</li>", escape(item.as_ref()));
        }
        let _ = writeln!(self.html, "</ul>");
    }

    /// A two-column table of labels and values.
    pub fn setup<L: AsRef<str>>(&mut self, rows: impl IntoIterator<Item = (L, String)>) {
        let _ = writeln!(self.html, "<table class=\"setup\"><tbody>");
        for (label, value) in rows {
            let _ = writeln!(
                self.html,
                "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                escape(label.as_ref()),
                escape(&value)
            );
        }
        let _ = writeln!(self.html, "</tbody></table>");
    }

    /// A chart (SVG text) with how to read it below.
    pub fn figure(&mut self, svg: &str, caption: &str) {
        let _ = writeln!(self.html, "<figure>");
        self.html.push_str(svg.trim_end());
        let _ = writeln!(self.html);
        let _ = writeln!(self.html, "<figcaption>{}</figcaption>", escape(caption));
        let _ = writeln!(self.html, "</figure>");
    }

    /// A table of figures with a header row, `id` for readers and tests; `empty` is shown
    /// in one cell when there are no rows.
    pub fn table(&mut self, id: &str, columns: &[&str], rows: &[Vec<Cell>], empty: &str) {
        let _ = writeln!(self.html, "<div class=\"scroll\">");
        let _ = writeln!(self.html, "<table class=\"data\" id=\"{}\">", escape(id));
        let _ = write!(self.html, "<thead><tr>");
        for column in columns {
            let _ = write!(self.html, "<th scope=\"col\">{}</th>", escape(column));
        }
        let _ = writeln!(self.html, "</tr></thead>");
        let _ = writeln!(self.html, "<tbody>");
        for row in rows {
            let _ = write!(self.html, "<tr>");
            for cell in row {
                match cell.class {
                    Some(class) => {
                        let _ = write!(self.html, "<td class=\"{class}\">");
                    }
                    None => {
                        let _ = write!(self.html, "<td>");
                    }
                }
                let _ = write!(self.html, "{}</td>", escape(&cell.text));
            }
            let _ = writeln!(self.html, "</tr>");
        }
        if rows.is_empty() {
            let _ = writeln!(
                self.html,
                "<tr><td class=\"text\" colspan=\"{}\">{}</td></tr>",
                columns.len().max(1),
                escape(empty)
            );
        }
        let _ = writeln!(self.html, "</tbody>");
        let _ = writeln!(self.html, "</table>");
        let _ = writeln!(self.html, "</div>");
    }

    /// The page so far, for markup of a report's own (already escaped by the caller).
    pub fn markup(&mut self) -> &mut String {
        &mut self.html
    }

    /// Closes the page with `footer` as its last line.
    pub fn finish(mut self, footer: &str) -> String {
        let _ = writeln!(self.html, "<footer>{}</footer>", escape(footer));
        let _ = writeln!(self.html, "</main>");
        let _ = writeln!(self.html, "</body>");
        let _ = writeln!(self.html, "</html>");
        self.html
    }
}

const STYLE: &str = "
body { margin: 0; background: #f6f7f9; color: #1d232b;
  font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 12px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid #e3e6ea; }
.headline { font-size: 20px; font-weight: 600; margin: 0 0 12px; padding: 14px 18px;
  background: #eef5fc; border-left: 5px solid #1f77b4; border-radius: 4px; }
.headline.pass { background: #edf7ee; border-left-color: #2e7d32; }
.headline.fail { background: #fdecea; border-left-color: #b3261e; }
.headline.pending { background: #fff8e1; border-left-color: #e08a00; }
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
.steps, .data { font-size: 12.5px; font-variant-numeric: tabular-nums; }
.steps th, .steps td, .data th, .data td { border: 1px solid #dde1e6; padding: 4px 6px;
  text-align: right; white-space: nowrap; }
.steps th, .data th { background: #f0f2f5; white-space: normal; vertical-align: bottom;
  min-width: 3em; }
.steps td.text, .data td.text { text-align: left; }
.data td.fail { color: #b3261e; font-weight: 600; }
.data td.pass { color: #2e7d32; font-weight: 600; }
.steps td.failures { text-align: left; white-space: normal; min-width: 220px; }
.steps tr.missed td.met { color: #b3261e; font-weight: 600; }
.steps tr.knee td { background: #fff4c2; font-weight: 600; }
.steps tr.capacity td { background: #dcefdc; font-weight: 600; }
.steps tr.first-bad td { background: #fdecea; }
.tag { display: inline-block; white-space: nowrap; font-size: 11px; font-weight: 600;
  padding: 0 5px; margin-left: 4px; border-radius: 3px; background: #1d232b; color: #fff; }
.note { color: #4a5361; font-size: 14px; }
footer { margin-top: 28px; color: #6a7382; font-size: 13px; }
";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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

    /// Every element called `name`.
    pub(crate) fn elements<'a, 'input>(
        doc: &'a roxmltree::Document<'input>,
        name: &'a str,
    ) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> + 'a {
        doc.descendants()
            .filter(move |n| n.is_element() && n.tag_name().name() == name)
    }

    /// The text inside `node`, concatenated.
    pub(crate) fn text_of(node: roxmltree::Node) -> String {
        node.descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect()
    }

    /// Fails unless `page` references nothing outside itself: no scripts, links, images,
    /// frames or objects, no URL other than the two namespaces, no `@import` or `url(`.
    pub(crate) fn assert_fetches_nothing(page: &str) {
        let doc = parse(page);
        let namespaces = ["http://www.w3.org/1999/xhtml", "http://www.w3.org/2000/svg"];
        let mut rest = page.to_string();
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
    fn a_page_is_well_formed_and_escapes_everything() {
        let mut doc = Document::new("a<b>&\"c'", Some(2));
        doc.headline("p99 < 5 ms & \"fine\"", Tone::Fail);
        doc.setup([("x<y", "1 & 2".to_string())]);
        doc.table(
            "t",
            &["a", "b"],
            &[vec![Cell::words("<script>"), Cell::failed("x")]],
            "none",
        );
        doc.table("empty", &["a"], &[], "No rows.");
        let page = doc.finish("<end>");
        assert!(!page.contains("<script>"));
        assert_fetches_nothing(&page);
        let xml = parse(&page);
        let title = elements(&xml, "title").next().map(text_of);
        assert_eq!(title.as_deref(), Some("a<b>&\"c'"));
        let refresh = elements(&xml, "meta")
            .find(|m| m.attribute("http-equiv") == Some("refresh"))
            .and_then(|m| m.attribute("content"));
        assert_eq!(refresh, Some("2"));
        let headline = elements(&xml, "p")
            .find(|p| p.attribute("class") == Some("headline fail"))
            .map(text_of);
        assert_eq!(headline.as_deref(), Some("p99 < 5 ms & \"fine\""));
        let empty = elements(&xml, "table")
            .find(|t| t.attribute("id") == Some("empty"))
            .map(text_of)
            .unwrap_or_default();
        assert!(empty.contains("No rows."), "{empty}");
    }
}
