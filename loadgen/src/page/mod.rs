//! The charts and the HTML of every report page: capacity's `report.html`, a run's
//! `report.html` (and its live view, [`crate::dashboard`]) and the gate's `compare.html`,
//! so the three look like one product.
//!
//! Charts are SVG text drawn with `plotters` without any font crate: text stays `<text>`
//! for the browser to set, so a page can inline its charts with nothing to fetch. Each
//! `<svg>` root carries an id so tests and readers can find it. [`plot`] draws panels,
//! [`spectrum`] the latency percentile spectrum, [`html`] the page around them, and
//! [`format`] how numbers read.

pub mod format;
pub mod html;
pub mod plot;
pub mod spectrum;

use std::io;

use plotters::prelude::{DrawingAreaErrorKind, IntoDrawingArea, SVGBackend, WHITE};

use plot::{Area, DrawResult};

/// Why a chart could not be drawn. Drawing into a string only fails on a bug (ours or
/// plotters'), but the error is passed on rather than hidden.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the {chart} chart: {source}")]
pub struct ChartError {
    /// Which chart, e.g. `"latency"`.
    chart: &'static str,
    #[source]
    source: DrawingAreaErrorKind<io::Error>,
}

/// Draws into an SVG string of `size` and gives it the root element id `id`.
pub fn render(
    chart: &'static str,
    id: &str,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present())
            .map_err(|source| ChartError { chart, source })?;
    }
    Ok(with_id(&svg, id))
}

/// Puts `id="…"` on the root `<svg>` element, which plotters cannot do itself.
fn with_id(svg: &str, id: &str) -> String {
    svg.replacen("<svg ", &format!("<svg id=\"{id}\" "), 1)
}
