//! Plotting primitives of the capacity charts: panels of series against the offered load,
//! drawn with `plotters` into SVG, with a legend column, guides (limits) and the knee.
//!
//! [`super::charts`] decides what each chart shows; this module decides how a panel looks:
//! colours (red only for a missed objective), ranges that are always drawable (finite, not
//! empty), points above a cap pinned to the top edge, one line vertex per load at the
//! median of its runs.

use std::io;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::format::{number, short};
use super::{CapacityReport, StepRecord};

/// Width of the legend column at the right of every panel.
pub(super) const LEGEND_WIDTH: u32 = 190;
/// A guide further above the highest figure than this factor is not plotted.
pub(super) const GUIDE_REACH: f64 = 5.0;
/// Generic family: the browser picks the font, nothing is embedded or fetched.
pub(super) const FONT: &str = "sans-serif";
/// Series colours. None is red: red marks a step that missed the objective.
pub(super) const C_BLUE: RGBColor = RGBColor(31, 119, 180);
pub(super) const C_TEAL: RGBColor = RGBColor(23, 160, 150);
pub(super) const C_ORANGE: RGBColor = RGBColor(235, 130, 20);
pub(super) const C_PURPLE: RGBColor = RGBColor(128, 80, 170);
pub(super) const C_GREEN: RGBColor = RGBColor(60, 150, 60);
pub(super) const C_SLATE: RGBColor = RGBColor(120, 130, 145);
/// Ring around a step that missed the objective.
pub(super) const C_MISSED: RGBColor = RGBColor(214, 39, 40);
/// The objective's limit line.
pub(super) const C_LIMIT: RGBColor = RGBColor(150, 20, 20);
/// The knee line and neutral reference lines.
pub(super) const C_KNEE: RGBColor = RGBColor(70, 70, 70);
pub(super) const C_GUIDE: RGBColor = RGBColor(140, 140, 140);
pub(super) const C_GRID_BOLD: RGBColor = RGBColor(215, 215, 215);
pub(super) const C_GRID_LIGHT: RGBColor = RGBColor(240, 240, 240);

pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
pub(super) type DrawResult = Result<(), DrawingAreaErrorKind<io::Error>>;

/// One plotted point.
pub(super) struct Point {
    pub(super) level: f64,
    pub(super) value: f64,
    /// Whether its step met the objective (filled dot) or not (red ring).
    pub(super) met: bool,
}

/// One line of a chart.
pub(super) struct Series {
    pub(super) label: String,
    pub(super) color: RGBColor,
    /// Sorted by level; steps without a (finite) figure are left out.
    pub(super) points: Vec<Point>,
}

impl Series {
    pub(super) fn new(
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
pub(super) struct Guide {
    pub(super) label: String,
    pub(super) value: f64,
    pub(super) color: RGBColor,
}

/// One plot with its legend.
pub(super) struct Panel {
    pub(super) caption: String,
    pub(super) y_desc: &'static str,
    pub(super) series: Vec<Series>,
    pub(super) guides: Vec<Guide>,
    /// Highest value the y axis shows; points above it are pinned to the top edge.
    pub(super) y_cap: Option<f64>,
}

/// What every panel of a report shares: the load axis and the knee.
pub(super) struct Axes {
    pub(super) x_desc: String,
    pub(super) x: Range<f64>,
    /// Level of the knee step, if the report has one.
    pub(super) knee: Option<f64>,
}

impl Axes {
    pub(super) fn new(report: &CapacityReport, steps: &[&StepRecord]) -> Axes {
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
pub(super) fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

pub(super) fn highest(series: &[Series]) -> f64 {
    bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.value))).map_or(0.0, |(_, hi)| hi)
}

/// `lo..hi`, widened around its middle when it is (almost) a single value.
pub(super) fn widen(lo: f64, hi: f64) -> (f64, f64) {
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
pub(super) fn drawable(lo: f64, hi: f64) -> Range<f64> {
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
pub(super) fn y_range(panel: &Panel) -> Range<f64> {
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

/// Digits after the point for tick labels of an axis `width` wide (about eight ticks).
pub(super) fn tick_decimals(width: f64) -> usize {
    let step = width / 8.0;
    if !step.is_finite() || step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    }
}

pub(super) fn label_style(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// Draws one plot (left) and its legend (right column) into `area`.
pub(super) fn draw_panel(area: &Area<'_>, axes: &Axes, panel: &Panel) -> DrawResult {
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
pub(super) fn line_through_medians(points: &[Point]) -> Vec<(f64, f64)> {
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
pub(super) enum Mark {
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
pub(super) fn draw_legend(area: &Area<'_>, entries: &[(String, Mark)]) -> DrawResult {
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
