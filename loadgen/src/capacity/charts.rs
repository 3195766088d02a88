//! The three SVG charts of a capacity report: latency, throughput and resources, each
//! against the offered load.
//!
//! A reader should see at a glance where the objective stopped holding. So every chart
//! plots the steps sorted by level (bisection steps ran interleaved with the others), draws
//! a step that met the objective as a filled dot and one that missed it as a red ring, and
//! marks the knee with a vertical line. The legend sits in its own column to the right of
//! each plot, so it never covers data. How a panel is drawn is [`crate::page::plot`]'s.

use crate::page::format::short;
use crate::page::plot::{
    bounds, draw_panel, highest, Axes, Dot, Guide, Marker, MarkerKind, Panel, Point, Series,
    C_BLUE, C_GREEN, C_GUIDE, C_LIMIT, C_ORANGE, C_PURPLE, C_SLATE, C_TEAL,
};
use crate::page::{render, ChartError};

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
const BYTES_PER_MIB: f64 = 1024.0 * 1024.0;

/// One series of the steps' figures: a filled dot for a step that met the objective, a
/// red ring for one that missed it; steps without a (finite) figure are left out.
fn step_series(
    label: &str,
    color: plotters::style::RGBColor,
    steps: &[&StepRecord],
    value: impl Fn(&StepRecord) -> Option<f64>,
) -> Series {
    Series::new(
        label,
        color,
        steps.iter().filter_map(|step| {
            value(step).map(|value| Point {
                x: step.level,
                value,
                dot: if step.met { Dot::Met } else { Dot::Missed },
            })
        }),
    )
}

/// The load axis of every chart, with the knee marked.
fn load_axes(report: &CapacityReport, steps: &[&StepRecord]) -> Axes {
    let knee = report
        .knee_step
        .and_then(|number| report.steps.iter().find(|s| s.number == number))
        .map(|step| step.level)
        .filter(|level| level.is_finite());
    let capacity = report
        .capacity
        .as_ref()
        .map(|c| c.level)
        .filter(|level| level.is_finite());
    let levels = steps.iter().map(|s| s.level).chain(knee).chain(capacity);
    let mut axes = Axes::around(format!("offered load ({})", report.level_unit), levels);
    axes.markers.extend(capacity.map(|capacity| Marker {
        x: capacity,
        label: format!("capacity at {}", short(capacity)),
        kind: MarkerKind::Capacity,
    }));
    axes.markers.extend(knee.map(|knee| Marker {
        x: knee,
        label: format!("knee at {}", short(knee)),
        kind: MarkerKind::Knee,
    }));
    axes
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
        step_series("p50", C_BLUE, &steps, |s| Some(s.p50_ms)),
        step_series("p90", C_TEAL, &steps, |s| Some(s.p90_ms)),
        step_series("p99", C_ORANGE, &steps, |s| Some(s.p99_ms)),
        step_series("p99.9", C_PURPLE, &steps, |s| Some(s.p999_ms)),
    ];
    let mut guides: Vec<Guide> = limit
        .map(|limit| Guide {
            label: format!("p99 limit {} ms", short(limit)),
            value: limit,
            color: C_LIMIT,
        })
        .into_iter()
        .collect();
    if let Some(limit) = limit.filter(|_| report.margin < 1.0) {
        guides.push(Guide {
            label: format!(
                "margin {} ms ({:.0}%)",
                short(limit * report.margin),
                report.margin * 100.0
            ),
            value: limit * report.margin,
            color: C_GREEN,
        });
    }
    let panel = Panel {
        caption: "Delivery latency by offered load".into(),
        y_desc: "latency (ms)",
        y_cap: latency_cap(&steps, limit),
        y_from_zero: true,
        series,
        guides,
    };
    let axes = load_axes(report, &steps);
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
        y_from_zero: true,
        series: vec![
            step_series("offered", C_SLATE, &steps, |s| {
                Some(s.offered_deliveries_per_sec)
            }),
            step_series("achieved", C_BLUE, &steps, |s| {
                Some(s.achieved_deliveries_per_sec)
            }),
        ],
        guides: Vec::new(),
    };
    let axes = load_axes(report, &steps);
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
        step_series("server", C_BLUE, &steps, |s| s.server.cpu_percent),
        step_series("loadgen", C_ORANGE, &steps, |s| s.loadgen.cpu_percent),
        step_series("machine", C_GREEN, &steps, |s| s.machine_cpu_percent),
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
        y_from_zero: true,
        series: cpu_series,
        guides: cpu_guides,
    };
    let mib = |bytes: Option<u64>| bytes.map(|b| b as f64 / BYTES_PER_MIB);
    let memory = Panel {
        caption: "Peak memory (RSS) by offered load".into(),
        y_desc: "RSS (MiB)",
        y_cap: None,
        y_from_zero: true,
        series: vec![
            step_series("server", C_BLUE, &steps, |s| mib(s.server.rss_bytes)),
            step_series("loadgen", C_ORANGE, &steps, |s| mib(s.loadgen.rss_bytes)),
        ],
        guides: Vec::new(),
    };
    let axes = load_axes(report, &steps);
    render("resources", RESOURCES_ID, RESOURCES_SIZE, |root| {
        let (top, bottom) = root.split_vertically(RESOURCES_SIZE.1 / 2);
        draw_panel(&top, &axes, &cpu)?;
        draw_panel(&bottom, &axes, &memory)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::fixtures::{empty_report, sample_report};
    use crate::page::plot::{drawable, line_through_medians, Point};

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
            "capacity at 1,200",
            "margin 35 ms (70%)",
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
        let point = |x: f64, value: f64| Point {
            x,
            value,
            dot: Dot::Met,
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
