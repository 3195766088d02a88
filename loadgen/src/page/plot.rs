//! Plotting primitives of every chart of the reports (capacity, run, gate): panels of
//! series drawn with `plotters` into SVG, with a legend column, guides (limits), vertical
//! markers (the knee, phase boundaries) and shaded spans (the warm-up).
//!
//! The chart modules decide what each chart shows; this module decides how a panel looks:
//! colours (red only for a missed objective), ranges that are always drawable (finite, not
//! empty), points above a cap pinned to the top edge, one line vertex per x at the median
//! of the values measured there.

use std::io;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::format::number;

/// Width of the legend column at the right of every panel.
pub const LEGEND_WIDTH: u32 = 190;
/// A guide further above the highest figure than this factor is not plotted.
pub const GUIDE_REACH: f64 = 5.0;
/// Generic family: the browser picks the font, nothing is embedded or fetched.
pub const FONT: &str = "sans-serif";
/// Series colours. None is red: red marks a step that missed the objective.
pub const C_BLUE: RGBColor = RGBColor(31, 119, 180);
pub const C_TEAL: RGBColor = RGBColor(23, 160, 150);
pub const C_ORANGE: RGBColor = RGBColor(235, 130, 20);
pub const C_PURPLE: RGBColor = RGBColor(128, 80, 170);
pub const C_GREEN: RGBColor = RGBColor(60, 150, 60);
pub const C_SLATE: RGBColor = RGBColor(120, 130, 145);
/// Ring around a step that missed the objective.
pub const C_MISSED: RGBColor = RGBColor(214, 39, 40);
/// The objective's limit line.
pub const C_LIMIT: RGBColor = RGBColor(150, 20, 20);
/// The knee line and neutral reference lines.
pub const C_KNEE: RGBColor = RGBColor(70, 70, 70);
pub const C_GUIDE: RGBColor = RGBColor(140, 140, 140);
pub const C_GRID_BOLD: RGBColor = RGBColor(215, 215, 215);
/// A shaded span (the warm-up).
pub const C_SHADE: RGBColor = RGBColor(234, 236, 240);
pub const C_GRID_LIGHT: RGBColor = RGBColor(240, 240, 240);

pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
pub type DrawResult = Result<(), DrawingAreaErrorKind<io::Error>>;

/// How a point is marked on its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dot {
    /// No marker: a time series, where the line is the figure.
    Plain,
    /// A filled dot for each measurement, with no verdict of its own.
    Point,
    /// A step that met the objective: a filled dot.
    Met,
    /// A step that missed it: a red ring.
    Missed,
}

/// One plotted point.
pub struct Point {
    pub x: f64,
    pub value: f64,
    pub dot: Dot,
}

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    /// Sorted by x; points without a finite x or value are left out by [`Series::new`].
    pub points: Vec<Point>,
}

impl Series {
    /// A series of `points`, keeping only the finite ones, sorted by x (stable, so
    /// repeated measurements keep their order).
    pub fn new(label: &str, color: RGBColor, points: impl IntoIterator<Item = Point>) -> Series {
        let mut points: Vec<Point> = points
            .into_iter()
            .filter(|p| p.x.is_finite() && p.value.is_finite())
            .collect();
        points.sort_by(|a, b| a.x.total_cmp(&b.x));
        Series {
            label: label.to_string(),
            color,
            points,
        }
    }

    /// A time series: one unmarked point per `(x, value)`.
    pub fn line(
        label: &str,
        color: RGBColor,
        points: impl IntoIterator<Item = (f64, f64)>,
    ) -> Series {
        Series::new(
            label,
            color,
            points.into_iter().map(|(x, value)| Point {
                x,
                value,
                dot: Dot::Plain,
            }),
        )
    }
}

/// A horizontal reference line, e.g. the p99 limit.
pub struct Guide {
    pub label: String,
    pub value: f64,
    pub color: RGBColor,
}

/// One plot with its legend.
pub struct Panel {
    pub caption: String,
    pub y_desc: &'static str,
    pub series: Vec<Series>,
    pub guides: Vec<Guide>,
    /// Highest value the y axis shows; points above it are pinned to the top edge.
    pub y_cap: Option<f64>,
    /// Whether the y axis starts at zero (amounts); `false` zooms in on the figures and
    /// guides (ratios around 1).
    pub y_from_zero: bool,
}

/// What a vertical marker marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// The knee of a capacity search: a bold line labelled "knee".
    Knee,
    /// The published capacity of a capacity search: a bold green line labelled "capacity".
    Capacity,
    /// Where a phase of a run begins: a thin dashed line labelled with its name.
    Boundary,
}

impl MarkerKind {
    /// The label at the top and the colour of a bold line; `None` for a thin boundary.
    fn bold(self) -> Option<(&'static str, RGBColor)> {
        match self {
            MarkerKind::Knee => Some(("knee", C_KNEE)),
            MarkerKind::Capacity => Some(("capacity", C_GREEN)),
            MarkerKind::Boundary => None,
        }
    }
}

/// A vertical line across a panel.
pub struct Marker {
    pub x: f64,
    /// Shown at the top of the line (a knee's label is "knee"; its legend entry uses this).
    pub label: String,
    pub kind: MarkerKind,
}

/// A shaded span of the x axis, e.g. the warm-up that is played but not judged.
pub struct Shade {
    pub from: f64,
    pub to: f64,
    /// Its legend entry.
    pub label: String,
}

/// What every panel of a chart shares: the x axis, its markers and shaded spans.
pub struct Axes {
    pub x_desc: String,
    pub x: Range<f64>,
    /// How tick labels on the x axis read; [`number`] when `None`.
    pub x_ticks: Option<fn(f64) -> String>,
    /// About how many ticks the x axis gets.
    pub x_labels: usize,
    pub markers: Vec<Marker>,
    pub shades: Vec<Shade>,
}

impl Axes {
    /// An x axis around `values` (with a little room on both sides).
    pub fn around(x_desc: String, values: impl Iterator<Item = f64>) -> Axes {
        let (lo, hi) = bounds(values).unwrap_or((0.0, 1.0));
        let (lo, hi) = widen(lo, hi);
        let pad = (hi - lo) * 0.04;
        Axes::exactly(x_desc, lo - pad, hi + pad)
    }

    /// An x axis from `lo` to `hi` (made drawable).
    pub fn exactly(x_desc: String, lo: f64, hi: f64) -> Axes {
        Axes {
            x_desc,
            x: drawable(lo, hi),
            x_ticks: None,
            x_labels: 8,
            markers: Vec::new(),
            shades: Vec::new(),
        }
    }
}

/// Lowest and highest finite value, if any.
pub fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

pub fn highest(series: &[Series]) -> f64 {
    bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.value))).map_or(0.0, |(_, hi)| hi)
}

/// `lo..hi`, widened around its middle when it is (almost) a single value.
pub fn widen(lo: f64, hi: f64) -> (f64, f64) {
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
pub fn drawable(lo: f64, hi: f64) -> Range<f64> {
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
pub fn y_range(panel: &Panel) -> Range<f64> {
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
    if !panel.y_from_zero {
        let (lo, hi) = widen(lo, hi);
        let pad = (hi - lo) * 0.08;
        return drawable(lo - pad, hi + pad);
    }
    let lo = lo.min(0.0);
    let hi = if hi > lo { hi } else { lo + 1.0 };
    drawable(lo, hi + (hi - lo) * 0.08)
}

/// Digits after the point for tick labels of an axis `width` wide (about eight ticks).
pub fn tick_decimals(width: f64) -> usize {
    let step = width / 8.0;
    if !step.is_finite() || step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    }
}

pub fn label_style(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// Draws one plot (left) and its legend (right column) into `area`.
pub fn draw_panel(area: &Area<'_>, axes: &Axes, panel: &Panel) -> DrawResult {
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
    let x_format = axes.x_ticks;
    let x_ticks = move |v: &f64| match x_format {
        Some(format) => format(*v),
        None => number(*v, x_decimals),
    };
    let y_ticks = move |v: &f64| number(*v, y_decimals);
    chart
        .configure_mesh()
        .x_desc(axes.x_desc.as_str())
        .y_desc(panel.y_desc)
        .x_labels(axes.x_labels)
        .y_labels(8)
        .x_label_formatter(&x_ticks)
        .y_label_formatter(&y_ticks)
        .label_style(label_style(13))
        .axis_desc_style(label_style(14))
        .bold_line_style(C_GRID_BOLD)
        .light_line_style(C_GRID_LIGHT)
        .draw()?;

    for shade in &axes.shades {
        let (from, to) = (shade.from.max(x.start), shade.to.min(x.end));
        if from < to {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(from, y.start), (to, y.end)],
                C_SHADE.filled(),
            )))?;
        }
    }
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
    let middle_x = x.start / 2.0 + x.end / 2.0;
    // A boundary's label is left out when the next boundary is too close for it.
    let mut boundaries: Vec<&Marker> = axes
        .markers
        .iter()
        .filter(|m| m.kind == MarkerKind::Boundary && m.x >= x.start && m.x <= x.end)
        .collect();
    boundaries.sort_by(|a, b| a.x.total_cmp(&b.x));
    let pixels_per_x =
        f64::from(plot.dim_in_pixel().0.saturating_sub(100).max(1)) / (x.end - x.start);
    for (i, marker) in boundaries.iter().enumerate() {
        chart.draw_series(std::iter::once(DashedPathElement::new(
            [(marker.x, y.start), (marker.x, y.end)],
            4,
            4,
            C_GUIDE.stroke_width(1),
        )))?;
        let room = boundaries.get(i + 1).map_or(x.end, |next| next.x) - marker.x;
        let needed = marker.label.chars().count() as f64 * 6.5 + 8.0;
        if room * pixels_per_x >= needed {
            chart.draw_series(std::iter::once(
                EmptyElement::at((marker.x, y.end))
                    + Text::new(
                        marker.label.clone(),
                        (4, 4),
                        label_style(11)
                            .color(&C_KNEE)
                            .pos(Pos::new(HPos::Left, VPos::Top)),
                    ),
            ))?;
        }
    }
    for marker in &axes.markers {
        let Some((name, color)) = marker.kind.bold() else {
            continue;
        };
        chart.draw_series(std::iter::once(PathElement::new(
            [(marker.x, y.start), (marker.x, y.end)],
            color.mix(0.8).stroke_width(2),
        )))?;
        // The label goes on the side of the line with more room.
        let (dx, h_pos) = if marker.x > middle_x {
            (-5, HPos::Right)
        } else {
            (5, HPos::Left)
        };
        chart.draw_series(std::iter::once(
            EmptyElement::at((marker.x, y.end))
                + Text::new(
                    name,
                    (dx, 4),
                    label_style(12)
                        .color(&color)
                        .pos(Pos::new(h_pos, VPos::Top)),
                ),
        ))?;
    }

    if panel.series.iter().all(|s| s.points.is_empty()) {
        let middle = (middle_x, y.start / 2.0 + y.end / 2.0);
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
    for series in &panel.series {
        // One vertex per x: repeated measurements (confirmations) are drawn as their own
        // markers below, and the line goes through their median.
        chart.draw_series(LineSeries::new(
            line_through_medians(&series.points)
                .into_iter()
                .map(|(x, value)| (x, value.min(top))),
            series.color.stroke_width(2),
        ))?;
    }
    let mut any_pinned = false;
    let mut any_judged = false;
    for series in &panel.series {
        let lone = series.points.len() == 1;
        for point in &series.points {
            let at = (point.x, point.value.min(top));
            let fill = if point.dot == Dot::Missed {
                C_MISSED
            } else {
                series.color
            };
            any_judged |= matches!(point.dot, Dot::Met | Dot::Missed);
            if point.value > top {
                any_pinned = true;
                chart.draw_series(std::iter::once(TriangleMarker::new(at, 7, fill.filled())))?;
            } else {
                match point.dot {
                    Dot::Met | Dot::Point => {
                        chart.draw_series(std::iter::once(Circle::new(at, 4, fill.filled())))?;
                    }
                    Dot::Missed => {
                        chart.draw_series([
                            Circle::new(at, 5, WHITE.filled()),
                            Circle::new(at, 5, C_MISSED.stroke_width(2)),
                        ])?;
                    }
                    // A line of one point would not show: it gets a small dot.
                    Dot::Plain if lone => {
                        chart.draw_series(std::iter::once(Circle::new(at, 3, fill.filled())))?;
                    }
                    Dot::Plain => {}
                }
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
    for shade in &axes.shades {
        entries.push((shade.label.clone(), Mark::Shade));
    }
    if !boundaries.is_empty() {
        entries.push(("phase boundary".into(), Mark::Dashed(C_GUIDE)));
    }
    for marker in &axes.markers {
        if let Some((_, color)) = marker.kind.bold() {
            entries.push((marker.label.clone(), Mark::Bold(color)));
        }
    }
    if any_judged {
        entries.push(("met objective".into(), Mark::Met));
        entries.push(("missed objective".into(), Mark::Missed));
    }
    if any_pinned {
        entries.push(("above the axis".into(), Mark::Pinned));
    }
    draw_legend(&legend, &entries)
}

/// The vertices of a series' line: one per x (points are sorted by x), at the median of
/// the values measured at that x.
pub fn line_through_medians(points: &[Point]) -> Vec<(f64, f64)> {
    let mut line = Vec::new();
    let mut rest = points;
    while let Some(first) = rest.first() {
        let same = rest.iter().take_while(|p| p.x == first.x).count();
        let mut values: Vec<f64> = rest[..same].iter().map(|p| p.value).collect();
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        let median = if values.len().is_multiple_of(2) {
            (values[middle - 1] + values[middle]) / 2.0
        } else {
            values[middle]
        };
        line.push((first.x, median));
        rest = &rest[same..];
    }
    line
}

/// How a legend entry is drawn.
pub enum Mark {
    /// A series: its line with a dot.
    Line(RGBColor),
    /// A guide: a dashed line.
    Dashed(RGBColor),
    /// A bold vertical line (the knee, the capacity).
    Bold(RGBColor),
    /// A step that met the objective: a filled dot.
    Met,
    /// A step that missed it: a red ring.
    Missed,
    /// A point above the axis, pinned to its top edge.
    Pinned,
    /// A shaded span.
    Shade,
    /// Text only, continuing the entry above.
    Nothing,
}

/// Draws the legend entries as a column, top-aligned with the plot below its caption.
pub fn draw_legend(area: &Area<'_>, entries: &[(String, Mark)]) -> DrawResult {
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
            Mark::Bold(color) => {
                area.draw(&PathElement::new(
                    [(middle, y - 9), (middle, y + 9)],
                    color.mix(0.8).stroke_width(2),
                ))?;
            }
            Mark::Met => area.draw(&Circle::new((middle, y), 4, C_KNEE.filled()))?,
            Mark::Missed => {
                area.draw(&Circle::new((middle, y), 5, C_MISSED.stroke_width(2)))?;
            }
            Mark::Pinned => {
                area.draw(&TriangleMarker::new((middle, y), 7, C_KNEE.filled()))?;
            }
            Mark::Shade => {
                area.draw(&Rectangle::new(
                    [(SAMPLE.0, y - 8), (SAMPLE.1, y + 8)],
                    C_SHADE.filled(),
                ))?;
            }
            Mark::Nothing => {}
        }
        area.draw(&Text::new(label.as_str(), (TEXT_X, y), text.clone()))?;
    }
    Ok(())
}
