//! The latency percentile spectrum: latency against percentile, on the log-scaled "1 in N"
//! axis HdrHistogram plots are read by (90% is 1 in 10, 99% 1 in 100, 99.9% 1 in 1,000).
//!
//! The x axis is `log10(1 / (1 − q))` drawn on a linear scale, with ticks labelled as the
//! percentiles they stand for; it ends at the decade of the sample count, since a
//! histogram of N samples says nothing finer than 1 in N. The largest value is plotted at
//! that end, so the line always reaches the maximum.

use hdrhistogram::Histogram;
use plotters::style::RGBColor;

use super::plot::{draw_panel, Axes, Guide, Panel, Series, C_LIMIT};
use super::{render, ChartError};

/// Size of the spectrum chart, in pixels.
const SIZE: (u32, u32) = (960, 480);
/// Points per halving of the distance to 100% (HdrHistogram's `ticks_per_half_distance`).
const TICKS_PER_HALF: u32 = 5;

/// One distribution to draw.
pub struct Distribution<'a> {
    pub label: String,
    pub color: RGBColor,
    /// Latency in µs.
    pub latency: &'a Histogram<u64>,
}

/// The chart of `distributions` (latency in ms against percentile), with the p99 limit as
/// a dashed line when there is one; the root `<svg>` gets `id`.
pub fn spectrum_chart(
    id: &str,
    caption: &str,
    distributions: &[Distribution<'_>],
    p99_limit_ms: Option<f64>,
) -> Result<String, ChartError> {
    let most = distributions
        .iter()
        .map(|d| d.latency.len())
        .max()
        .unwrap_or(0);
    // At least two decades (to 99%), so a small run still reads as a spectrum.
    let decades = (most.max(1) as f64).log10().ceil().max(2.0);
    let series = distributions
        .iter()
        .map(|d| Series::line(&d.label, d.color, points(d.latency, decades)))
        .collect();
    let guides = p99_limit_ms
        .filter(|limit| limit.is_finite() && *limit > 0.0)
        .map(|limit| Guide {
            label: format!("p99 limit {} ms", super::format::short(limit)),
            value: limit,
            color: C_LIMIT,
        })
        .into_iter()
        .collect();
    let panel = Panel {
        caption: caption.to_string(),
        y_desc: "latency (ms)",
        series,
        guides,
        y_cap: None,
        y_from_zero: true,
    };
    let mut axes = Axes::exactly(
        "percentile (log scale: 90% is 1 in 10, 99% 1 in 100, …)".into(),
        0.0,
        decades,
    );
    axes.x_ticks = Some(percentile_label);
    axes.x_labels = decades as usize + 1;
    render("spectrum", id, SIZE, |root| draw_panel(root, &axes, &panel))
}

/// `(x, latency ms)` along the spectrum of `latency`, up to `decades` on the x axis.
fn points(latency: &Histogram<u64>, decades: f64) -> Vec<(f64, f64)> {
    if latency.is_empty() {
        return Vec::new();
    }
    let end = (latency.len() as f64).log10().min(decades);
    let mut points: Vec<(f64, f64)> = latency
        .iter_quantiles(TICKS_PER_HALF)
        .filter_map(|step| {
            let q = step.quantile_iterated_to();
            (q < 1.0).then(|| (-(1.0 - q).log10(), step.value_iterated_to() as f64 / 1000.0))
        })
        .filter(|(x, _)| x.is_finite() && *x <= end)
        .collect();
    points.push((end, latency.max() as f64 / 1000.0));
    points
}

/// The percentile an x of the axis stands for: 0 → "0%", 1 → "90%", 3 → "99.9%".
fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.ceil() - 2.0).clamp(0.0, 6.0) as usize;
    format!("{percent:.decimals$}%")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::plot::C_BLUE;
    use crate::record::new_histogram;

    #[test]
    fn ticks_read_as_percentiles() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
    }

    #[test]
    fn the_line_rises_to_the_maximum_at_the_sample_count() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let points = points(&h, 4.0);
        assert!(points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        // The maximum as HdrHistogram keeps it: within its 3 significant digits.
        let (x, max) = points.last().copied().unwrap();
        assert_eq!(x, 4.0);
        assert!((max - 10.0).abs() < 0.01, "{max}");
        // Near x = 2 (99%), the latency is near 99% of the largest.
        let near_p99 = points
            .iter()
            .min_by(|a, b| (a.0 - 2.0).abs().total_cmp(&(b.0 - 2.0).abs()))
            .copied()
            .unwrap();
        let expected = 10.0 * (1.0 - 10f64.powf(-near_p99.0));
        assert!((near_p99.1 - expected).abs() < 0.05, "{near_p99:?}");
        assert!(super::points(&new_histogram(), 2.0).is_empty());
    }

    #[test]
    fn the_chart_has_its_id_limit_and_labels() {
        let mut h = new_histogram();
        for us in [100, 200, 300, 5_000] {
            h.record(us).unwrap();
        }
        let latency = Distribution {
            label: "this run".into(),
            color: C_BLUE,
            latency: &h,
        };
        let svg = spectrum_chart(
            "spectrum-chart",
            "Latency by percentile",
            &[latency],
            Some(4.0),
        )
        .unwrap();
        assert!(svg.starts_with("<svg id=\"spectrum-chart\" "), "{svg}");
        for text in ["p99 limit 4 ms", "99%", "this run", "Latency by percentile"] {
            assert!(svg.contains(text), "lacks {text:?}");
        }
        let empty = spectrum_chart("s", "empty", &[], None).unwrap();
        assert!(empty.contains("no figures"));
    }
}
