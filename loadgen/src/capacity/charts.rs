//! The three SVG charts of a capacity report: latency, throughput and resources, each
//! against the offered load.
//!
//! A reader should see at a glance where the objective stopped holding. So every chart
//! plots the steps sorted by level (bisection steps ran interleaved with the others), draws
//! a step that met the objective as a filled dot and one that missed it as a red ring, and
//! marks the knee with a vertical line. The legend sits in its own column to the right of
//! each plot, so it never covers data.
//!
//! The charts are SVG text drawn with `plotters` without any font crate: text stays
//! `<text>` for the browser to set, so `report.html` can inline the charts with nothing to
//! fetch. Each `<svg>` root carries an id ([`LATENCY_ID`], …) so tests and readers can find
//! it. Every range is made drawable (finite, not empty) before plotters sees it, so a
//! report with no steps, or with all-equal or missing figures, still gives a chart.

use std::io;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::format::{number, short};
use super::wording::steps_by_level;
use super::{CapacityReport, StepRecord};

/// `id` of the latency chart's `<svg>` element.
pub const LATENCY_ID: &str = "latency-chart";
/// `id` of the throughput chart's `<svg>` element.
pub const THROUGHPUT_ID: &str = "throughput-chart";
/// `id` of the resources chart's `<svg>` element.
pub const RESOURCES_ID: &str = "resources-chart";

/// Size of the latency and throughput charts, in pixels.
const SIZE: (u32, u32) = (960, 480);
/// Size of the resources chart: two panels, one above the other, each as wide as the other
/// charts so that its text reads at the same size on the page.
const RESOURCES_SIZE: (u32, u32) = (960, 880);
/// Width of the legend column at the right of every panel.
const LEGEND_WIDTH: u32 = 190;
/// A guide further above the highest figure than this factor is not plotted.
const GUIDE_REACH: f64 = 5.0;
/// Generic family: the browser picks the font, nothing is embedded or fetched.
const FONT: &str = "sans-serif";
const BYTES_PER_MIB: f64 = 1024.0 * 1024.0;

/// Series colours. None is red: red marks a step that missed the objective.
const C_BLUE: RGBColor = RGBColor(31, 119, 180);
const C_TEAL: RGBColor = RGBColor(23, 160, 150);
const C_ORANGE: RGBColor = RGBColor(235, 130, 20);
const C_PURPLE: RGBColor = RGBColor(128, 80, 170);
const C_GREEN: RGBColor = RGBColor(60, 150, 60);
const C_SLATE: RGBColor = RGBColor(120, 130, 145);
/// Ring around a step that missed the objective.
const C_MISSED: RGBColor = RGBColor(214, 39, 40);
/// The objective's limit line.
const C_LIMIT: RGBColor = RGBColor(150, 20, 20);
/// The knee line and neutral reference lines.
const C_KNEE: RGBColor = RGBColor(70, 70, 70);
const C_GUIDE: RGBColor = RGBColor(140, 140, 140);
const C_GRID_BOLD: RGBColor = RGBColor(215, 215, 215);
const C_GRID_LIGHT: RGBColor = RGBColor(240, 240, 240);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<io::Error>>;

/// Why a chart could not be drawn. Drawing into a string only fails on a bug (ours or
/// plotters'), but the error is passed on rather than hidden.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the {chart} chart: {source}")]
pub struct ChartError {
    /// Which chart: `"latency"`, `"throughput"` or `"resources"`.
    chart: &'static str,
    #[source]
    source: DrawingAreaErrorKind<io::Error>,
}

/// Delivery latency percentiles (p50, p90, p99, p99.9) against the offered load, with the
/// objective's p99 limit as a dashed line. Points far above the limit are pinned to the
/// top edge as triangles, so that one runaway step does not flatten the rest.
pub fn latency_chart(report: &CapacityReport) -> Result<String, ChartError> {
    let steps = steps_by_level(report);
    let limit = report
        .p99_limit_ms
        .filter(|limit| limit.is_finite() && *limit > 0.0);
    let series = vec![
        Series::new("p50", C_BLUE, &steps, |s| Some(s.p50_ms)),
        Series::new("p90", C_TEAL, &steps, |s| Some(s.p90_ms)),
        Series::new("p99", C_ORANGE, &steps, |s| Some(s.p99_ms)),
        Series::new("p99.9", C_PURPLE, &steps, |s| Some(s.p999_ms)),
    ];
    let guides = limit
        .map(|limit| Guide {
            label: format!("p99 limit {} ms", short(limit)),
            value: limit,
            color: C_LIMIT,
        })
        .into_iter()
        .collect();
    let panel = Panel {
        caption: "Delivery latency by offered load".into(),
        y_desc: "latency (ms)",
        y_cap: latency_cap(&steps, limit),
        series,
        guides,
    };
    let axes = Axes::new(report, &steps);
    render("latency", LATENCY_ID, SIZE, |root| {
        draw_panel(root, &axes, &panel)
    })
}

/// Offered and achieved deliveries per second against the offered load: where the two
/// part, the server (or loadgen) stopped keeping up.
pub fn throughput_chart(report: &CapacityReport) -> Result<String, ChartError> {
    let steps = steps_by_level(report);
    let panel = Panel {
        caption: "Deliveries per second by offered load".into(),
        y_desc: "deliveries per second",
        y_cap: None,
        series: vec![
            Series::new("offered", C_SLATE, &steps, |s| {
                Some(s.offered_deliveries_per_sec)
            }),
            Series::new("achieved", C_BLUE, &steps, |s| {
                Some(s.achieved_deliveries_per_sec)
            }),
        ],
        guides: Vec::new(),
    };
    let axes = Axes::new(report, &steps);
    render("throughput", THROUGHPUT_ID, SIZE, |root| {
        draw_panel(root, &axes, &panel)
    })
}

/// CPU (server, loadgen, whole machine; percent of one core) and peak RSS (server and
/// loadgen, MiB) against the offered load, as two panels one above the other. Missing
/// figures are left out; a series may be empty.
pub fn resources_chart(report: &CapacityReport) -> Result<String, ChartError> {
    let steps = steps_by_level(report);
    let cpu_series = vec![
        Series::new("server", C_BLUE, &steps, |s| s.server.cpu_percent),
        Series::new("loadgen", C_ORANGE, &steps, |s| s.loadgen.cpu_percent),
        Series::new("machine", C_GREEN, &steps, |s| s.machine_cpu_percent),
    ];
    // "All cores busy" helps read the machine's line, but only when the figures come near
    // it; on a big machine it would flatten everything else.
    let all_cores = report.cores as f64 * 100.0;
    let cpu_guides = if all_cores > 0.0 && highest(&cpu_series) >= all_cores / 4.0 {
        vec![Guide {
            label: format!("all {} cores", report.cores),
            value: all_cores,
            color: C_GUIDE,
        }]
    } else {
        Vec::new()
    };
    let cpu = Panel {
        caption: "CPU by offered load".into(),
        y_desc: "CPU (% of one core)",
        y_cap: None,
        series: cpu_series,
        guides: cpu_guides,
    };
    let mib = |bytes: Option<u64>| bytes.map(|b| b as f64 / BYTES_PER_MIB);
    let memory = Panel {
        caption: "Peak memory (RSS) by offered load".into(),
        y_desc: "RSS (MiB)",
        y_cap: None,
        series: vec![
            Series::new("server", C_BLUE, &steps, |s| mib(s.server.rss_bytes)),
            Series::new("loadgen", C_ORANGE, &steps, |s| mib(s.loadgen.rss_bytes)),
        ],
        guides: Vec::new(),
    };
    let axes = Axes::new(report, &steps);
    render("resources", RESOURCES_ID, RESOURCES_SIZE, |root| {
        let (top, bottom) = root.split_vertically(RESOURCES_SIZE.1 / 2);
        draw_panel(&top, &axes, &cpu)?;
        draw_panel(&bottom, &axes, &memory)
    })
}

/// Draws into an SVG string of `size` and gives it the root element id `id`.
fn render(
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

/// One plotted point.
struct Point {
    level: f64,
    value: f64,
    /// Whether its step met the objective (filled dot) or not (red ring).
    met: bool,
}

/// One line of a chart.
struct Series {
    label: String,
    color: RGBColor,
    /// Sorted by level; steps without a (finite) figure are left out.
    points: Vec<Point>,
}

impl Series {
    fn new(
        label: &str,
        color: RGBColor,
        steps: &[&StepRecord],
        value: impl Fn(&StepRecord) -> Option<f64>,
    ) -> Series {
        let points = steps
            .iter()
            .filter(|step| step.level.is_finite())
            .filter_map(|step| {
                value(step).filter(|v| v.is_finite()).map(|value| Point {
                    level: step.level,
                    value,
                    met: step.met,
                })
            })
            .collect();
        Series {
            label: label.to_string(),
            color,
            points,
        }
    }
}

/// A horizontal reference line, e.g. the p99 limit.
struct Guide {
    label: String,
    value: f64,
    color: RGBColor,
}

/// One plot with its legend.
struct Panel {
    caption: String,
    y_desc: &'static str,
    series: Vec<Series>,
    guides: Vec<Guide>,
    /// Highest value the y axis shows; points above it are pinned to the top edge.
    y_cap: Option<f64>,
}

/// What every panel of a report shares: the load axis and the knee.
struct Axes {
    x_desc: String,
    x: Range<f64>,
    /// Level of the knee step, if the report has one.
    knee: Option<f64>,
}

impl Axes {
    fn new(report: &CapacityReport, steps: &[&StepRecord]) -> Axes {
        let knee = report
            .knee_step
            .and_then(|number| report.steps.iter().find(|s| s.number == number))
            .map(|step| step.level)
            .filter(|level| level.is_finite());
        let levels = steps.iter().map(|s| s.level).chain(knee);
        let (lo, hi) = bounds(levels).unwrap_or((0.0, 1.0));
        let (lo, hi) = widen(lo, hi);
        let pad = (hi - lo) * 0.04;
        Axes {
            x_desc: format!("offered load ({})", report.level_unit),
            x: drawable(lo - pad, hi + pad),
            knee,
        }
    }
}

/// Lowest and highest finite value, if any.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

fn highest(series: &[Series]) -> f64 {
    bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.value))).map_or(0.0, |(_, hi)| hi)
}

/// `lo..hi`, widened around its middle when it is (almost) a single value.
fn widen(lo: f64, hi: f64) -> (f64, f64) {
    let magnitude = lo.abs().max(hi.abs());
    let least = if magnitude > 0.0 {
        magnitude * 0.1
    } else {
        1.0
    };
    if hi - lo >= least * 1e-3 {
        (lo, hi)
    } else {
        let middle = lo / 2.0 + hi / 2.0;
        (middle - least, middle + least)
    }
}

/// A range plotters can draw: finite, ordered and not empty; `0..1` when there is none.
fn drawable(lo: f64, hi: f64) -> Range<f64> {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() && lo <= hi {
        widen(lo, hi)
    } else {
        (0.0, 1.0)
    };
    if lo.is_finite() && hi.is_finite() && lo < hi {
        lo..hi
    } else {
        0.0..1.0
    }
}

/// The y range of a panel: from zero (or below, for a negative figure) to the highest
/// figure or guide, capped at `y_cap`, with room above.
fn y_range(panel: &Panel) -> Range<f64> {
    let data = bounds(
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.value)),
    );
    // A guide far above every figure (a lax limit) would flatten them on the axis: it is
    // then left off the plot and named in the legend instead.
    let reach = data.map_or(f64::INFINITY, |(_, hi)| {
        if hi > 0.0 {
            hi * GUIDE_REACH
        } else {
            f64::INFINITY
        }
    });
    let guides = panel.guides.iter().map(|g| g.value).filter(|v| *v <= reach);
    let values = data.into_iter().flat_map(|(lo, hi)| [lo, hi]).chain(guides);
    let (lo, hi) = bounds(values).unwrap_or((0.0, 1.0));
    let hi = match panel.y_cap {
        Some(cap) if cap.is_finite() && cap > 0.0 => hi.min(cap),
        _ => hi,
    };
    let lo = lo.min(0.0);
    let hi = if hi > lo { hi } else { lo + 1.0 };
    drawable(lo, hi + (hi - lo) * 0.08)
}

/// Where the latency axis stops, so that the region around the objective stays readable:
/// three times the p99 limit, or twice the highest figure of a step that met the objective,
/// whichever is higher. `None` (show everything) when neither is known.
fn latency_cap(steps: &[&StepRecord], limit: Option<f64>) -> Option<f64> {
    let met = steps
        .iter()
        .filter(|s| s.met)
        .flat_map(|s| [s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms]);
    let met_high = bounds(met).map_or(0.0, |(_, hi)| hi) * 2.0;
    let cap = met_high.max(limit.unwrap_or(0.0) * 3.0);
    (cap.is_finite() && cap > 0.0).then_some(cap)
}

/// Digits after the point for tick labels of an axis `width` wide (about eight ticks).
fn tick_decimals(width: f64) -> usize {
    let step = width / 8.0;
    if !step.is_finite() || step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    }
}

fn label_style(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// Draws one plot (left) and its legend (right column) into `area`.
fn draw_panel(area: &Area<'_>, axes: &Axes, panel: &Panel) -> DrawResult {
    let width = area.dim_in_pixel().0;
    let (plot, legend) = area.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    let x = axes.x.clone();
    let y = y_range(panel);
    let mut chart = ChartBuilder::on(&plot)
        .caption(&panel.caption, (FONT, 20).into_font().color(&BLACK))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(76)
        .build_cartesian_2d(x.clone(), y.clone())?;

    let x_decimals = tick_decimals(x.end - x.start);
    let y_decimals = tick_decimals(y.end - y.start);
    let x_ticks = move |v: &f64| number(*v, x_decimals);
    let y_ticks = move |v: &f64| number(*v, y_decimals);
    chart
        .configure_mesh()
        .x_desc(axes.x_desc.as_str())
        .y_desc(panel.y_desc)
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&x_ticks)
        .y_label_formatter(&y_ticks)
        .label_style(label_style(13))
        .axis_desc_style(label_style(14))
        .bold_line_style(C_GRID_BOLD)
        .light_line_style(C_GRID_LIGHT)
        .draw()?;

    for guide in &panel.guides {
        if guide.value <= y.end {
            chart.draw_series(std::iter::once(DashedPathElement::new(
                [(x.start, guide.value), (x.end, guide.value)],
                8,
                5,
                guide.color.stroke_width(2),
            )))?;
        }
    }
    if let Some(knee) = axes.knee {
        chart.draw_series(std::iter::once(PathElement::new(
            [(knee, y.start), (knee, y.end)],
            C_KNEE.mix(0.8).stroke_width(2),
        )))?;
        // The label goes on the side of the line with more room.
        let (dx, h_pos) = if knee > x.start / 2.0 + x.end / 2.0 {
            (-5, HPos::Right)
        } else {
            (5, HPos::Left)
        };
        chart.draw_series(std::iter::once(
            EmptyElement::at((knee, y.end))
                + Text::new(
                    "knee",
                    (dx, 4),
                    label_style(12)
                        .color(&C_KNEE)
                        .pos(Pos::new(h_pos, VPos::Top)),
                ),
        ))?;
    }

    if panel.series.iter().all(|s| s.points.is_empty()) {
        let middle = (x.start / 2.0 + x.end / 2.0, y.start / 2.0 + y.end / 2.0);
        chart.draw_series(std::iter::once(Text::new(
            "no figures",
            middle,
            label_style(16)
                .color(&C_GUIDE)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        )))?;
    }

    // Points above the axis are drawn on its top edge.
    let top = y.end;
    let pinned = |p: &Point| (p.level, p.value.min(top));
    for series in &panel.series {
        // One vertex per load: repeated measurements (confirmations) are drawn as their
        // own markers below, and the line goes through their median.
        chart.draw_series(LineSeries::new(
            line_through_medians(&series.points)
                .into_iter()
                .map(|(level, value)| (level, value.min(top))),
            series.color.stroke_width(2),
        ))?;
    }
    let mut any_pinned = false;
    for series in &panel.series {
        for point in &series.points {
            let at = pinned(point);
            let fill = if point.met { series.color } else { C_MISSED };
            if point.value > top {
                any_pinned = true;
                chart.draw_series(std::iter::once(TriangleMarker::new(at, 7, fill.filled())))?;
            } else if point.met {
                chart.draw_series(std::iter::once(Circle::new(at, 4, fill.filled())))?;
            } else {
                chart.draw_series([
                    Circle::new(at, 5, WHITE.filled()),
                    Circle::new(at, 5, C_MISSED.stroke_width(2)),
                ])?;
            }
        }
    }

    let mut entries: Vec<(String, Mark)> = panel
        .series
        .iter()
        .map(|s| (s.label.clone(), Mark::Line(s.color)))
        .collect();
    for guide in &panel.guides {
        entries.push((guide.label.clone(), Mark::Dashed(guide.color)));
        if guide.value > y.end {
            entries.push(("(above the axis)".into(), Mark::Nothing));
        }
    }
    if let Some(knee) = axes.knee {
        entries.push((format!("knee at {}", short(knee)), Mark::Knee));
    }
    entries.push(("met objective".into(), Mark::Met));
    entries.push(("missed objective".into(), Mark::Missed));
    if any_pinned {
        entries.push(("above the axis".into(), Mark::Pinned));
    }
    draw_legend(&legend, &entries)
}

/// The vertices of a series' line: one per level (points are sorted by level), at the
/// median of the values measured at that level.
fn line_through_medians(points: &[Point]) -> Vec<(f64, f64)> {
    let mut line = Vec::new();
    let mut rest = points;
    while let Some(first) = rest.first() {
        let same = rest.iter().take_while(|p| p.level == first.level).count();
        let mut values: Vec<f64> = rest[..same].iter().map(|p| p.value).collect();
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        let median = if values.len() % 2 == 0 {
            (values[middle - 1] + values[middle]) / 2.0
        } else {
            values[middle]
        };
        line.push((first.level, median));
        rest = &rest[same..];
    }
    line
}

/// How a legend entry is drawn.
enum Mark {
    /// A series: its line with a dot.
    Line(RGBColor),
    /// A guide: a dashed line.
    Dashed(RGBColor),
    Knee,
    /// A step that met the objective: a filled dot.
    Met,
    /// A step that missed it: a red ring.
    Missed,
    /// A point above the axis, pinned to its top edge.
    Pinned,
    /// Text only, continuing the entry above.
    Nothing,
}

/// Draws the legend entries as a column, top-aligned with the plot below its caption.
fn draw_legend(area: &Area<'_>, entries: &[(String, Mark)]) -> DrawResult {
    const TOP: i32 = 64;
    const ROW: i32 = 24;
    const SAMPLE: (i32, i32) = (4, 34);
    const TEXT_X: i32 = 42;
    let text = label_style(13).pos(Pos::new(HPos::Left, VPos::Center));
    let middle = (SAMPLE.0 + SAMPLE.1) / 2;
    for (row, (label, mark)) in (0..).zip(entries) {
        let y = TOP + row * ROW;
        let line = [(SAMPLE.0, y), (SAMPLE.1, y)];
        match mark {
            Mark::Line(color) => {
                area.draw(&PathElement::new(line, color.stroke_width(2)))?;
                area.draw(&Circle::new((middle, y), 4, color.filled()))?;
            }
            Mark::Dashed(color) => {
                area.draw(&DashedPathElement::new(line, 6, 4, color.stroke_width(2)))?;
            }
            Mark::Knee => {
                area.draw(&PathElement::new(
                    [(middle, y - 9), (middle, y + 9)],
                    C_KNEE.mix(0.8).stroke_width(2),
                ))?;
            }
            Mark::Met => area.draw(&Circle::new((middle, y), 4, C_KNEE.filled()))?,
            Mark::Missed => {
                area.draw(&Circle::new((middle, y), 5, C_MISSED.stroke_width(2)))?;
            }
            Mark::Pinned => {
                area.draw(&TriangleMarker::new((middle, y), 7, C_KNEE.filled()))?;
            }
            Mark::Nothing => {}
        }
        area.draw(&Text::new(label.as_str(), (TEXT_X, y), text.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::fixtures::{empty_report, sample_report};

    fn root_id(svg: &str) -> Option<String> {
        let doc = roxmltree::Document::parse(svg).unwrap();
        doc.root_element().attribute("id").map(String::from)
    }

    #[test]
    fn every_chart_is_svg_with_its_id() {
        for report in [sample_report(), empty_report()] {
            let charts = [
                (latency_chart(&report).unwrap(), LATENCY_ID),
                (throughput_chart(&report).unwrap(), THROUGHPUT_ID),
                (resources_chart(&report).unwrap(), RESOURCES_ID),
            ];
            for (svg, id) in charts {
                assert!(svg.starts_with(&format!("<svg id=\"{id}\" ")), "{svg}");
                assert_eq!(root_id(&svg).as_deref(), Some(id));
                assert!(svg.contains("<text"), "{id} has no text");
                let no_figures = svg.contains(">\nno figures\n<");
                assert_eq!(no_figures, report.steps.is_empty(), "{id}");
            }
        }
    }

    #[test]
    fn charts_have_captions_legends_and_the_load_unit() {
        let report = sample_report();
        let latency = latency_chart(&report).unwrap();
        for text in [
            "Delivery latency by offered load",
            "offered load (users)",
            "p99.9",
            "p99 limit 50 ms",
            "knee at 1,400",
            "missed objective",
        ] {
            assert!(latency.contains(text), "latency chart lacks {text:?}");
        }
        let throughput = throughput_chart(&report).unwrap();
        assert!(throughput.contains("achieved") && throughput.contains("knee at"));
        let resources = resources_chart(&report).unwrap();
        for text in ["CPU by offered load", "RSS (MiB)", "machine", "knee at"] {
            assert!(resources.contains(text), "resources chart lacks {text:?}");
        }
    }

    #[test]
    fn missed_steps_are_red_rings_and_met_steps_are_not() {
        let mut report = sample_report();
        // Each ring is a circle with a red stroke; the legend has one.
        let rings = |svg: String| svg.matches("stroke=\"#D62728\"").count();
        for step in &mut report.steps {
            step.met = true;
        }
        assert_eq!(rings(throughput_chart(&report).unwrap()), 1);
        report.steps[0].met = false;
        report.steps[1].met = false;
        // Two series (offered and achieved) with two missed steps each.
        assert_eq!(rings(throughput_chart(&report).unwrap()), 1 + 2 * 2);
    }

    #[test]
    fn runaway_latency_is_pinned_to_the_top() {
        let mut report = sample_report();
        let last = report.steps.len() - 1;
        report.steps[last].p999_ms = 1.0e9;
        let svg = latency_chart(&report).unwrap();
        assert!(svg.contains("above the axis"), "{svg}");
    }

    #[test]
    fn a_lax_limit_does_not_flatten_the_figures() {
        let mut report = sample_report();
        report.p99_limit_ms = Some(60_000.0);
        let svg = latency_chart(&report).unwrap();
        assert!(svg.contains("p99 limit 60,000 ms"), "{svg}");
        assert!(svg.contains("(above the axis)"), "{svg}");
        assert!(
            !svg.contains("60,000\n</text>"),
            "no tick reaches the limit"
        );
        report.p99_limit_ms = Some(50.0);
        let svg = latency_chart(&report).unwrap();
        assert!(!svg.contains("(above the axis)"), "{svg}");
    }

    #[test]
    fn degenerate_figures_still_draw() {
        let mut report = sample_report();
        for step in &mut report.steps {
            step.level = 100.0;
            step.p50_ms = f64::NAN;
            step.p99_ms = f64::INFINITY;
            step.achieved_deliveries_per_sec = 0.0;
            step.offered_deliveries_per_sec = 0.0;
            step.server = Default::default();
        }
        report.p99_limit_ms = Some(f64::NAN);
        report.knee_step = Some(999);
        latency_chart(&report).unwrap();
        throughput_chart(&report).unwrap();
        resources_chart(&report).unwrap();
        report.steps.truncate(1);
        report.steps[0].level = f64::NAN;
        latency_chart(&report).unwrap();
        resources_chart(&report).unwrap();
    }

    #[test]
    fn ranges_are_always_drawable() {
        assert_eq!(drawable(f64::NAN, 1.0), 0.0..1.0);
        assert_eq!(drawable(3.0, 1.0), 0.0..1.0);
        assert_eq!(drawable(0.0, 0.0), -1.0..1.0);
        let r = drawable(100.0, 100.0);
        assert!(r.start < 100.0 && r.end > 100.0);
        assert_eq!(drawable(f64::MAX, f64::MAX), 0.0..1.0);
    }

    #[test]
    fn repeated_measurements_give_one_vertex_at_their_median() {
        let point = |level: f64, value: f64| Point {
            level,
            value,
            met: true,
        };
        let points = [
            point(100.0, 5.0),
            point(200.0, 9.0),
            point(200.0, 7.0),
            point(200.0, 30.0),
            point(300.0, 10.0),
            point(300.0, 12.0),
        ];
        assert_eq!(
            line_through_medians(&points),
            vec![(100.0, 5.0), (200.0, 9.0), (300.0, 11.0)]
        );
        assert!(line_through_medians(&[]).is_empty());
    }

    #[test]
    fn steps_are_plotted_in_level_order() {
        let report = sample_report();
        let levels: Vec<f64> = steps_by_level(&report).iter().map(|s| s.level).collect();
        assert!(levels.windows(2).all(|w| w[0] <= w[1]), "{levels:?}");
        let run_order: Vec<f64> = report.steps.iter().map(|s| s.level).collect();
        assert_ne!(levels, run_order, "the sample should have bisection steps");
    }
}
