//! Reading a generated report page the way the end-to-end tests check it: as XML (every
//! page is well-formed XHTML), its charts by id, its headline, and proof that it refers
//! to nothing outside the file.
#![allow(dead_code)]

/// Parses `page` as XML (allowing its `<!DOCTYPE html>`), or fails the test.
pub fn parse(page: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(page, options)
        .unwrap_or_else(|error| panic!("not well-formed XML: {error}"))
}

/// The ids of the page's `<svg>` charts, in page order.
pub fn chart_ids(doc: &roxmltree::Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "svg")
        .filter_map(|n| n.attribute("id").map(String::from))
        .collect()
}

/// The headline's class (`headline pass`, `headline fail`, …) and text.
pub fn headline(doc: &roxmltree::Document) -> (String, String) {
    let p = doc
        .descendants()
        .find(|n| {
            n.tag_name().name() == "p"
                && n.attribute("class")
                    .is_some_and(|c| c.starts_with("headline"))
        })
        .expect("the page has a headline");
    (p.attribute("class").unwrap_or("").to_string(), text_of(p))
}

/// The text inside `node`, concatenated.
pub fn text_of(node: roxmltree::Node) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect()
}

/// Fails unless `page` refers to nothing outside itself: no `src` or `href`, no element
/// that loads something, no URL but the two namespace declarations, no CSS import.
pub fn assert_self_contained(page: &str) {
    let doc = parse(page);
    for node in doc.descendants() {
        for attribute in node.attributes() {
            assert!(
                !matches!(attribute.name(), "src" | "href"),
                "the page refers to {}",
                attribute.value()
            );
        }
        let name = node.tag_name().name();
        assert!(
            !matches!(
                name,
                "script" | "link" | "img" | "iframe" | "object" | "embed" | "image"
            ),
            "<{name}> in the page"
        );
    }
    let mut rest = page.to_string();
    for namespace in ["http://www.w3.org/1999/xhtml", "http://www.w3.org/2000/svg"] {
        rest = rest.replace(&format!("xmlns=\"{namespace}\""), "");
    }
    assert!(
        !rest.contains("http://") && !rest.contains("https://"),
        "the page names a URL"
    );
    assert!(!page.contains("@import") && !page.contains("url("));
}
