//! The charts of a run's page, over the run's time: latency per interval, sends and
//! deliveries per second, users and connections, errors and eviction outcomes, and the
//! latency percentile spectrum.
//!
//! Time runs from the measured start (0 s, after every user connected), interval by
//! interval, each plotted at its end as in `timeseries.csv`. Every chart marks where each
//! phase begins and shades the warm-up, so a reader sees what the load was doing when a
//! figure moved. How a panel is drawn is [`crate::page::plot`]'s.

use crate::memory::ResourceSample;
use crate::page::plot::{
    draw_panel, Axes, Guide, Marker, MarkerKind, Panel, Series, Shade, C_BLUE, C_GREEN, C_GUIDE,
    C_LIMIT, C_MISSED, C_ORANGE, C_PURPLE, C_SLATE, C_TEAL,
};
use crate::page::spectrum::{spectrum_chart, Distribution};
use crate::page::{render, ChartError};
use crate::record::Counters;

use super::picture::{IntervalFigures, RunPicture};

/// `id` of the latency-over-time chart's `<svg>` element.
pub const LATENCY_ID: &str = "latency-over-time";
/// `id` of the sends and deliveries chart.
pub const THROUGHPUT_ID: &str = "throughput-over-time";
/// `id` of the users and connections chart.
pub const USERS_ID: &str = "users-over-time";
/// `id` of the errors and evictions chart.
pub const ERRORS_ID: &str = "errors-over-time";
/// `id` of the latency percentile spectrum.
pub const SPECTRUM_ID: &str = "latency-spectrum";
/// The memory chart's element id (a run with memory samples only).
pub const MEMORY_ID: &str = "memory-over-time";

/// A chart of one panel.
const SIZE: (u32, u32) = (960, 440);
/// A chart of two panels, one above the other.
const DOUBLE: (u32, u32) = (960, 800);
/// Intervals shorter than this give no rate: a few ms of wind-down would read as a spike.
const SHORTEST_RATE_S: f64 = 0.2;

/// Every chart of the page, each with its id, in page order.
pub fn all(picture: &RunPicture) -> Result<Vec<(&'static str, String)>, ChartError> {
    Ok(vec![
        (LATENCY_ID, latency(picture)?),
        (THROUGHPUT_ID, throughput(picture)?),
        (USERS_ID, users(picture)?),
        (ERRORS_ID, errors(picture)?),
        (SPECTRUM_ID, spectrum(picture)?),
    ])
    .map(|mut charts| {
        if !picture.memory.is_empty() {
            charts.extend(memory(picture).map(|svg| (MEMORY_ID, svg)));
        }
        charts
    })
}

/// Resident memory of loadgen and of the server through the run, MB (10^6 bytes): what a
/// soak watches for growth.
pub fn memory(picture: &RunPicture) -> Result<String, ChartError> {
    let line = |label: &str, color, rss: fn(&ResourceSample) -> Option<u64>| {
        let points: Vec<(f64, f64)> = picture
            .memory
            .iter()
            .filter_map(|s| rss(s).map(|b| (s.elapsed_s, b as f64 / 1e6)))
            .collect();
        Series::line(label, color, envelope(points))
    };
    let panel = Panel {
        caption: "Resident memory".into(),
        y_desc: "MB",
        series: vec![
            line("loadgen", C_BLUE, |s| s.loadgen_rss_bytes),
            line("server", C_GREEN, |s| s.server_rss_bytes),
        ],
        guides: Vec::new(),
        y_cap: None,
        y_from_zero: true,
    };
    let mut axes = time_axes(picture);
    let last = picture
        .memory
        .iter()
        .map(|s| s.elapsed_s)
        .fold(0.0, f64::max);
    axes.x.end = axes.x.end.max(last);
    render("memory over time", MEMORY_ID, SIZE, |root| {
        draw_panel(root, &axes, &panel)
    })
}

/// The time axis: phases marked where they begin, the warm-up shaded, and where the
/// wind-down begins when the intervals run past the phases.
fn time_axes(picture: &RunPicture) -> Axes {
    let planned = picture.planned_s();
    let last = picture
        .rows
        .iter()
        .map(IntervalFigures::end_s)
        .fold(0.0, f64::max);
    let mut axes = Axes::exactly(
        "seconds since the measured start".into(),
        0.0,
        planned.max(last).max(1.0),
    );
    for phase in &picture.phases {
        axes.markers.push(Marker {
            x: phase.from_s,
            label: phase.name.clone(),
            kind: MarkerKind::Boundary,
        });
    }
    if last > planned + 0.05 && planned > 0.0 {
        axes.markers.push(Marker {
            x: planned,
            label: "wind-down".into(),
            kind: MarkerKind::Boundary,
        });
    }
    if picture.warmup_s > 0.0 {
        axes.shades.push(Shade {
            from: 0.0,
            to: picture.warmup_s,
            label: "warm-up (not judged)".into(),
        });
    }
    axes
}

/// Most points one line of an over-time chart gets: a day of one-second intervals would
/// otherwise make every line 86,400 points and the page tens of megabytes.
pub const MAX_POINTS: usize = 2000;

/// Whether the over-time charts of `picture` show its intervals thinned ([`envelope`]).
pub fn thinned(picture: &RunPicture) -> bool {
    picture.rows.len() > MAX_POINTS
}

/// A series of one figure per interval, thinned to [`MAX_POINTS`] by [`envelope`].
fn per_interval(
    label: &str,
    color: plotters::style::RGBColor,
    rows: &[IntervalFigures],
    value: impl Fn(&IntervalFigures) -> Option<f64>,
) -> Series {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|row| value(row).map(|v| (row.end_s(), v)))
        .collect();
    Series::line(label, color, envelope(points))
}

/// `points` (in time order) thinned to at most [`MAX_POINTS`]: consecutive points are
/// grouped, and each group keeps its lowest and its highest point, in their order — the
/// line becomes the min/max envelope of the groups, so a spike of one interval never
/// disappears.
fn envelope(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let group = points.len().div_ceil(MAX_POINTS / 2);
    let mut kept = Vec::with_capacity(MAX_POINTS);
    for chunk in points.chunks(group) {
        let by_value = |a: &&(f64, f64), b: &&(f64, f64)| a.1.total_cmp(&b.1);
        let low = chunk.iter().enumerate().min_by(|a, b| by_value(&a.1, &b.1));
        let high = chunk.iter().enumerate().max_by(|a, b| by_value(&a.1, &b.1));
        let (Some((lo, &low)), Some((hi, &high))) = (low, high) else {
            continue;
        };
        match lo.cmp(&hi) {
            std::cmp::Ordering::Less => kept.extend([low, high]),
            std::cmp::Ordering::Greater => kept.extend([high, low]),
            std::cmp::Ordering::Equal => kept.push(low),
        }
    }
    kept
}

/// A count per second of an interval; `None` for a sliver of an interval.
fn rate(row: &IntervalFigures, count: impl Fn(&Counters) -> u64) -> Option<f64> {
    (row.length_s >= SHORTEST_RATE_S).then(|| count(&row.counters) as f64 / row.length_s)
}

/// Latency p50, p90, p99 and max per interval, with the p99 limit. A max far above the
/// p99s is pinned to the top edge, so one stall does not flatten the rest.
pub fn latency(picture: &RunPicture) -> Result<String, ChartError> {
    let rows = &picture.rows;
    let at = |i: usize| move |row: &IntervalFigures| row.latency_ms.map(|l| l[i]);
    let series = vec![
        per_interval("p50", C_BLUE, rows, at(0)),
        per_interval("p90", C_TEAL, rows, at(1)),
        per_interval("p99", C_ORANGE, rows, at(2)),
        per_interval("max", C_PURPLE, rows, at(3)),
    ];
    let highest_p99 = rows
        .iter()
        .filter_map(|r| r.latency_ms.map(|l| l[2]))
        .fold(0.0, f64::max);
    let limit = picture.p99_limit_ms;
    let cap = (highest_p99 * 3.0).max(limit.unwrap_or(0.0) * 1.5);
    let panel = Panel {
        caption: "Delivery latency per interval".into(),
        y_desc: "latency (ms)",
        series,
        guides: limit
            .map(|limit| Guide {
                label: format!("p99 limit {} ms", crate::page::format::short(limit)),
                value: limit,
                color: C_LIMIT,
            })
            .into_iter()
            .collect(),
        y_cap: (cap > 0.0).then_some(cap),
        y_from_zero: true,
    };
    let axes = time_axes(picture);
    render("latency over time", LATENCY_ID, SIZE, |root| {
        draw_panel(root, &axes, &panel)
    })
}

/// Sends per second (above) and deliveries per second (below): a broadcast to N users is
/// N deliveries, so each gets its own scale.
pub fn throughput(picture: &RunPicture) -> Result<String, ChartError> {
    let rows = &picture.rows;
    let sends = Panel {
        caption: "Messages sent per second".into(),
        y_desc: "sends per second",
        series: vec![per_interval("sent", C_SLATE, rows, |r| rate(r, |c| c.sent))],
        guides: Vec::new(),
        y_cap: None,
        y_from_zero: true,
    };
    let deliveries = Panel {
        caption: "Deliveries received per second".into(),
        y_desc: "deliveries per second",
        series: vec![per_interval("delivered", C_BLUE, rows, |r| {
            rate(r, |c| c.delivered)
        })],
        guides: Vec::new(),
        y_cap: None,
        y_from_zero: true,
    };
    let axes = time_axes(picture);
    render("throughput over time", THROUGHPUT_ID, DOUBLE, |root| {
        let (top, bottom) = root.split_vertically(DOUBLE.1 / 2);
        draw_panel(&top, &axes, &sends)?;
        draw_panel(&bottom, &axes, &deliveries)
    })
}

/// Users online (above); connections opened and closed per interval (below).
pub fn users(picture: &RunPicture) -> Result<String, ChartError> {
    let rows = &picture.rows;
    let online = Panel {
        caption: "Users online".into(),
        y_desc: "users online",
        series: vec![per_interval("online", C_BLUE, rows, |r| {
            Some(r.users_online as f64)
        })],
        guides: Vec::new(),
        y_cap: None,
        y_from_zero: true,
    };
    let count = |f: fn(&Counters) -> u64| move |r: &IntervalFigures| Some(f(&r.counters) as f64);
    let connections = Panel {
        caption: "Connections per interval".into(),
        y_desc: "per interval",
        series: vec![
            per_interval("connects", C_GREEN, rows, count(|c| c.connects)),
            per_interval("relogins", C_TEAL, rows, count(|c| c.relogins)),
            per_interval("churn leaves", C_SLATE, rows, count(|c| c.churn_leaves)),
            per_interval(
                "unexpected disconnects",
                C_MISSED,
                rows,
                count(|c| c.unexpected_disconnects),
            ),
        ],
        guides: Vec::new(),
        y_cap: None,
        y_from_zero: true,
    };
    let axes = time_axes(picture);
    render("users over time", USERS_ID, DOUBLE, |root| {
        let (top, bottom) = root.split_vertically(DOUBLE.1 / 2);
        draw_panel(&top, &axes, &online)?;
        draw_panel(&bottom, &axes, &connections)
    })
}

/// Errors per interval (above) and eviction outcomes per interval (below). Loss is
/// counted when the run ends, in the interval each lost message was sent in, so a live
/// view shows none yet.
pub fn errors(picture: &RunPicture) -> Result<String, ChartError> {
    let rows = &picture.rows;
    let count = |f: fn(&Counters) -> u64| move |r: &IntervalFigures| Some(f(&r.counters) as f64);
    let errors = Panel {
        caption: "Errors per interval".into(),
        y_desc: "per interval",
        series: vec![
            per_interval("lost", C_MISSED, rows, count(|c| c.lost)),
            per_interval(
                "duplicate or out of order",
                C_ORANGE,
                rows,
                count(|c| c.duplicates + c.order_errors),
            ),
            per_interval(
                "foreign or to self",
                C_PURPLE,
                rows,
                count(|c| c.foreign + c.self_deliveries),
            ),
            per_interval("connect errors", C_SLATE, rows, count(|c| c.connect_errors)),
            per_interval(
                "unexpected disconnects",
                C_GUIDE,
                rows,
                count(|c| c.unexpected_disconnects),
            ),
        ],
        guides: Vec::new(),
        y_cap: None,
        y_from_zero: true,
    };
    let evictions = Panel {
        caption: "Relogin evictions per interval".into(),
        y_desc: "per interval",
        series: vec![
            per_interval("ok", C_GREEN, rows, count(|c| c.evictions_ok)),
            per_interval("late", C_ORANGE, rows, count(|c| c.evictions_late)),
            per_interval("missing", C_PURPLE, rows, count(|c| c.evictions_missing)),
            per_interval(
                "zombie or ghost",
                C_MISSED,
                rows,
                count(|c| c.evictions_zombie + c.evictions_ghost),
            ),
            per_interval(
                "no single survivor",
                C_SLATE,
                rows,
                count(|c| c.evictions_no_survivor),
            ),
        ],
        guides: Vec::new(),
        y_cap: None,
        y_from_zero: true,
    };
    let axes = time_axes(picture);
    render("errors over time", ERRORS_ID, DOUBLE, |root| {
        let (top, bottom) = root.split_vertically(DOUBLE.1 / 2);
        draw_panel(&top, &axes, &errors)?;
        draw_panel(&bottom, &axes, &evictions)
    })
}

/// The whole run's latency (after the warm-up) by percentile.
pub fn spectrum(picture: &RunPicture) -> Result<String, ChartError> {
    let distributions = [Distribution {
        label: "this run".into(),
        color: C_BLUE,
        latency: &picture.latency,
    }];
    spectrum_chart(
        SPECTRUM_ID,
        "Delivery latency by percentile",
        &distributions,
        picture.p99_limit_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn a_long_run_is_thinned_to_its_envelope_and_keeps_every_spike() {
        // A day of one-second intervals, flat but for one spike and one dip.
        let mut points: Vec<(f64, f64)> = (0..86_400).map(|i| (f64::from(i), 5.0)).collect();
        points[40_001].1 = 900.0;
        points[70_003].1 = 0.5;
        let kept = envelope(points.clone());
        assert!(kept.len() <= MAX_POINTS, "{} points", kept.len());
        assert!(kept.contains(&(40_001.0, 900.0)), "the spike stays");
        assert!(kept.contains(&(70_003.0, 0.5)), "the dip stays");
        assert!(kept.windows(2).all(|w| w[0].0 < w[1].0), "in time order");
        // A short run is drawn as it is.
        assert_eq!(
            envelope(points[..MAX_POINTS].to_vec()),
            points[..MAX_POINTS]
        );
    }

    #[test]
    fn every_chart_is_svg_with_its_id_and_marks_the_phases() {
        let report = sample();
        let picture = RunPicture::of(&report, &report.verdicts());
        let charts = all(&picture).unwrap();
        let ids: Vec<&str> = charts.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            [LATENCY_ID, THROUGHPUT_ID, USERS_ID, ERRORS_ID, SPECTRUM_ID]
        );
        for (id, svg) in &charts {
            let doc = roxmltree::Document::parse(svg).unwrap();
            assert_eq!(doc.root_element().attribute("id"), Some(*id));
        }
        // The sample's phases are "phase 1" (2 s) and "phase 2" (1 s); its intervals run
        // to 3.75 s, so the wind-down is marked too.
        for (id, svg) in &charts[..4] {
            for text in [
                "phase 1",
                "phase 2",
                "wind-down",
                "seconds since the measured start",
            ] {
                assert!(svg.contains(text), "{id} lacks {text:?}");
            }
        }
        assert!(charts[0].1.contains("p99 limit 100 ms"));
        assert!(charts[3].1.contains("zombie or ghost"));
    }

    #[test]
    fn a_warm_up_is_shaded_and_a_picture_without_intervals_still_draws() {
        let mut report = sample();
        report.setup.scenario["warmup"] = serde_json::json!("1s");
        let picture = RunPicture::of(&report, &report.verdicts());
        assert!(latency(&picture).unwrap().contains("warm-up (not judged)"));
        report.intervals.clear();
        report.latency.reset();
        let picture = RunPicture::of(&report, &[]);
        for (_, svg) in all(&picture).unwrap() {
            assert!(svg.contains("no figures"), "{svg}");
        }
    }
}
