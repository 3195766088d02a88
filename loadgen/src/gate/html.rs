//! `compare.html`: the gate's verdict as a page beside `compare.md` — per metric, every
//! pair's base and candidate values, the per-pair ratios with their median, the 95%
//! interval and the tolerance, and the verdict in words.
//!
//! Built with the same chart and page module as the run and capacity reports
//! ([`crate::page`]), so the three look like one product.

use plotters::style::RGBColor;

use super::result::{GateResult, GateRun, Side};
use super::stats::{Better, Comparison, GateVerdict};
use crate::page::format::number;
use crate::page::html::{Cell, Document, Tone};
use crate::page::plot::{
    draw_panel, Axes, Dot, Guide, Panel, Point, Series, C_BLUE, C_GUIDE, C_LIMIT, C_ORANGE,
    C_PURPLE,
};
use crate::page::{render, ChartError};

/// Size of a metric's chart: values per pair above, ratios per pair below.
const SIZE: (u32, u32) = (960, 760);

/// `id` of a metric's chart: `gate-<metric>`.
pub fn chart_id(metric: &str) -> String {
    format!("gate-{metric}")
}

/// The whole page.
pub fn page(result: &GateResult) -> Result<String, ChartError> {
    let mut doc = Document::new(&format!("Performance gate: {}", result.scenario), None);
    let (headline, tone) = headline(result);
    doc.headline(&headline, tone);
    doc.list("details", result.comparisons.iter().map(verdict_words));

    doc.heading("Metrics");
    doc.paragraph(
        "note",
        &format!(
            "Ratio is candidate / base, per pair. A metric regresses when the median ratio \
             is worse than the {}% tolerance, its whole 95% bootstrap interval is worse than \
             1, and a one-sided sign test over the pairs agrees (p ≤ 0.10).",
            number(result.tolerance * 100.0, 0)
        ),
    );
    let columns = [
        "metric",
        "better",
        "base median",
        "candidate median",
        "ratio",
        "95% interval",
        "pairs worse than tolerance",
        "sign test p",
        "verdict",
    ];
    let rows: Vec<Vec<Cell>> = result
        .comparisons
        .iter()
        .map(|c| {
            vec![
                Cell::words(c.metric.clone()),
                Cell::words(better_text(c.better)),
                Cell::figure(number(c.base_median, 4)),
                Cell::figure(number(c.candidate_median, 4)),
                Cell::figure(number(c.ratio, 3)),
                Cell::figure(format!(
                    "{} – {}",
                    number(c.ratio_low, 3),
                    number(c.ratio_high, 3)
                )),
                Cell::figure(format!("{}/{}", c.worse_pairs, c.pairs)),
                Cell::figure(number(c.sign_p, 3)),
                match c.verdict {
                    GateVerdict::Pass => Cell::passed("pass"),
                    GateVerdict::Improvement => Cell::passed("improvement"),
                    GateVerdict::Regression => Cell::failed("REGRESSION"),
                    GateVerdict::Reported => Cell::words("reported, not judged".to_string()),
                },
            ]
        })
        .collect();
    doc.table("metrics", &columns, &rows, "No metric compared.");

    doc.heading("Pairs");
    for comparison in &result.comparisons {
        let svg = metric_chart(comparison, &result.runs)?;
        doc.figure(
            &svg,
            &format!(
                "{}: each pair's base and candidate value (above) and the pair's ratio \
                 candidate / base (below), with their median, the 95% interval of the median \
                 (dashed, purple) and the tolerance (red). {}",
                comparison.metric,
                verdict_words(comparison)
            ),
        );
    }

    doc.heading("Runs");
    let columns = [
        "pair",
        "side",
        "deliveries/s",
        "p50 ms",
        "p99 ms",
        "server CPU s / 1000 deliveries",
        "correctness",
    ];
    let rows: Vec<Vec<Cell>> = result
        .runs
        .iter()
        .map(|r| {
            vec![
                Cell::figure(r.pair.to_string()),
                Cell::words(side_text(r.side)),
                Cell::figure(number(r.deliveries_per_sec, 0)),
                Cell::figure(number(r.p50_ms, 3)),
                Cell::figure(number(r.p99_ms, 3)),
                Cell::figure(number(r.cpu_per_1000, 4)),
                if r.correct {
                    Cell::passed("ok")
                } else {
                    Cell::failed(r.problems.join("; "))
                },
            ]
        })
        .collect();
    doc.table("runs", &columns, &rows, "No run.");

    doc.heading("Setup");
    doc.setup([
        ("Base", result.base.clone()),
        ("Candidate", result.candidate.clone()),
        ("Scenario", result.scenario.clone()),
        (
            "Pairs",
            format!(
                "{}, run alternately (base first in odd pairs, candidate first in even ones)",
                result.pairs
            ),
        ),
        (
            "Tolerance",
            format!("{}%", number(result.tolerance * 100.0, 1)),
        ),
        ("Machine speed", calibration_text(result)),
    ]);
    Ok(doc.finish(&format!(
        "Written by loadgen {} (loadgen gate).",
        env!("CARGO_PKG_VERSION")
    )))
}

/// The gate's verdict in one line.
fn headline(result: &GateResult) -> (String, Tone) {
    let regressed: Vec<&str> = result
        .comparisons
        .iter()
        .filter(|c| c.verdict == GateVerdict::Regression)
        .map(|c| c.metric.as_str())
        .collect();
    let incorrect = result.runs.iter().filter(|r| !r.correct).count();
    let tolerance = number(result.tolerance * 100.0, 0);
    match (regressed.is_empty(), incorrect) {
        (true, 0) => (
            format!(
                "PASS: no metric of the candidate is worse than the base beyond the \
                 {tolerance}% tolerance, and all {} runs were correct",
                result.runs.len()
            ),
            Tone::Pass,
        ),
        (false, 0) => (
            format!("FAIL (regression): {}", regressed.join(", ")),
            Tone::Fail,
        ),
        (_, n) => {
            let mut text = format!(
                "FAIL (correctness): {n} of {} runs broke a threshold of the scenario",
                result.runs.len()
            );
            if !regressed.is_empty() {
                text += &format!("; regression in {}", regressed.join(", "));
            }
            (text, Tone::Fail)
        }
    }
}

/// One metric's verdict in words, with the figures behind it.
pub fn verdict_words(c: &Comparison) -> String {
    if c.pairs == 0 {
        return format!(
            "{}: no pair gave two usable values, so nothing is judged.",
            c.metric
        );
    }
    // How much worse the candidate is, in percent (negative: better).
    let worse = match c.better {
        Better::Lower => c.ratio - 1.0,
        Better::Higher => 1.0 / c.ratio - 1.0,
    } * 100.0;
    let direction = if worse >= 0.0 { "worse" } else { "better" };
    let figures = format!(
        "median ratio {} (95% interval {} – {}), {} of {} pairs worse than the {}% tolerance, \
         sign test p = {}",
        number(c.ratio, 3),
        number(c.ratio_low, 3),
        number(c.ratio_high, 3),
        c.worse_pairs,
        c.pairs,
        number(c.tolerance * 100.0, 0),
        number(c.sign_p, 3)
    );
    let verdict = match c.verdict {
        GateVerdict::Pass => "within the tolerance: pass",
        GateVerdict::Regression => "a regression",
        GateVerdict::Improvement => "an improvement",
        GateVerdict::Reported => {
            "not judged: identical builds differ too much in it (give it a tolerance in the scenario's [gate_tolerance] to judge it)"
        }
    };
    format!(
        "{}: the candidate is {}% {direction} ({figures}); {verdict}.",
        c.metric,
        number(worse.abs(), 1)
    )
}

fn better_text(better: Better) -> &'static str {
    match better {
        Better::Higher => "higher",
        Better::Lower => "lower",
    }
}

fn side_text(side: Side) -> &'static str {
    match side {
        Side::Base => "base",
        Side::Candidate => "candidate",
    }
}

/// The value of `metric` in a run.
fn value_of(metric: &str, run: &GateRun) -> Option<f64> {
    super::metric::metric(metric).and_then(|m| (m.value)(run))
}

/// Values per pair (above) and ratios per pair (below) of one metric.
fn metric_chart(c: &Comparison, runs: &[GateRun]) -> Result<String, ChartError> {
    let side = |side: Side, color: RGBColor| {
        Series::new(
            side_text(side),
            color,
            runs.iter().filter(|r| r.side == side).filter_map(|r| {
                value_of(&c.metric, r).map(|value| Point {
                    x: f64::from(r.pair),
                    value,
                    dot: Dot::Point,
                })
            }),
        )
    };
    let values = Panel {
        caption: format!("{} per pair", c.metric),
        y_desc: "value",
        series: vec![side(Side::Base, C_BLUE), side(Side::Candidate, C_ORANGE)],
        guides: Vec::new(),
        y_cap: None,
        y_from_zero: true,
    };
    let ratios = runs
        .iter()
        .filter(|r| r.side == Side::Base)
        .filter_map(|base| {
            let candidate = runs
                .iter()
                .find(|r| r.side == Side::Candidate && r.pair == base.pair)?;
            let (b, k) = (value_of(&c.metric, base)?, value_of(&c.metric, candidate)?);
            (b > 0.0 && k > 0.0).then(|| Point {
                x: f64::from(base.pair),
                value: k / b,
                dot: Dot::Point,
            })
        });
    let limit = match c.better {
        Better::Lower => 1.0 + c.tolerance,
        Better::Higher => 1.0 / (1.0 + c.tolerance),
    };
    let ratio = Panel {
        caption: format!("{}: candidate / base per pair", c.metric),
        y_desc: "ratio",
        series: vec![Series::new("pair's ratio", C_ORANGE, ratios)],
        guides: vec![
            Guide {
                label: "no change (1)".into(),
                value: 1.0,
                color: C_GUIDE,
            },
            Guide {
                label: format!("median {}", number(c.ratio, 3)),
                value: c.ratio,
                color: C_BLUE,
            },
            Guide {
                label: format!("95% low {}", number(c.ratio_low, 3)),
                value: c.ratio_low,
                color: C_PURPLE,
            },
            Guide {
                label: format!("95% high {}", number(c.ratio_high, 3)),
                value: c.ratio_high,
                color: C_PURPLE,
            },
            Guide {
                label: format!("tolerance {}", number(limit, 3)),
                value: limit,
                color: C_LIMIT,
            },
        ]
        .into_iter()
        .filter(|g| g.value.is_finite())
        .collect(),
        y_cap: None,
        y_from_zero: false,
    };
    let pairs = runs.iter().map(|r| f64::from(r.pair));
    let mut axes = Axes::around("pair".into(), pairs);
    axes.x_ticks = Some(|x| {
        if x.fract() == 0.0 && x >= 1.0 {
            number(x, 0)
        } else {
            String::new()
        }
    });
    render("gate metric", &chart_id(&c.metric), SIZE, |root| {
        let (top, bottom) = root.split_vertically(SIZE.1 / 2);
        draw_panel(&top, &axes, &values)?;
        draw_panel(&bottom, &axes, &ratio)
    })
}

/// The calibration line, or why there is none.
pub fn calibration_text(result: &GateResult) -> String {
    result.calibration.as_ref().map_or_else(
        || "not calibrated (--calibration off)".to_string(),
        |c| c.line(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::stats::compare;
    use crate::page::html::tests::{assert_fetches_nothing, elements, parse, text_of};

    fn run(pair: u32, side: Side, p99_ms: f64, correct: bool) -> GateRun {
        GateRun {
            pair,
            side,
            deliveries_per_sec: 40_000.0,
            p50_ms: 1.0,
            p99_ms,
            cpu_per_1000: 0.01,
            costs: Default::default(),
            correct,
            problems: if correct {
                Vec::new()
            } else {
                vec!["max_zombies 3 (limit 0)".into()]
            },
        }
    }

    fn result(candidate_p99: f64, correct: bool) -> GateResult {
        let mut runs = Vec::new();
        for pair in 1..=5 {
            runs.push(run(pair, Side::Base, 10.0 + f64::from(pair) * 0.1, true));
            runs.push(run(pair, Side::Candidate, candidate_p99, correct));
        }
        let values = |side: Side, f: fn(&GateRun) -> f64| -> Vec<f64> {
            runs.iter().filter(|r| r.side == side).map(f).collect()
        };
        let comparisons = vec![
            compare(
                "deliveries_per_sec",
                Better::Higher,
                &values(Side::Base, |r| r.deliveries_per_sec),
                &values(Side::Candidate, |r| r.deliveries_per_sec),
                0.1,
            ),
            compare(
                "p99_ms",
                Better::Lower,
                &values(Side::Base, |r| r.p99_ms),
                &values(Side::Candidate, |r| r.p99_ms),
                0.1,
            ),
        ];
        let regression = comparisons
            .iter()
            .any(|c| c.verdict == GateVerdict::Regression);
        GateResult {
            base: "base --listen {addr}".into(),
            candidate: "candidate --listen {addr}".into(),
            scenario: "scenarios/gate.toml".into(),
            pairs: 5,
            tolerance: 0.1,
            counter_tolerance: 0.02,
            not_measured: Vec::new(),
            comparisons,
            runs,
            regression,
            correctness_failed: !correct,
            passed: !regression && correct,
            calibration: None,
        }
    }

    fn headline_of(page: &str) -> (String, String) {
        let doc = parse(page);
        let p = elements(&doc, "p")
            .find(|p| {
                p.attribute("class")
                    .is_some_and(|c| c.starts_with("headline"))
            })
            .unwrap();
        (p.attribute("class").unwrap().to_string(), text_of(p))
    }

    #[test]
    fn a_passing_gate_has_a_chart_per_metric_and_fetches_nothing() {
        let page = page(&result(10.3, true)).unwrap();
        assert_fetches_nothing(&page);
        let doc = parse(&page);
        let ids: Vec<&str> = elements(&doc, "svg")
            .filter_map(|s| s.attribute("id"))
            .collect();
        assert_eq!(ids, ["gate-deliveries_per_sec", "gate-p99_ms"]);
        let (class, text) = headline_of(&page);
        assert_eq!(class, "headline pass");
        assert!(text.starts_with("PASS"), "{text}");
        let runs = elements(&doc, "table")
            .find(|t| t.attribute("id") == Some("runs"))
            .unwrap();
        let rows = runs
            .descendants()
            .filter(|n| n.tag_name().name() == "tr")
            .count();
        assert_eq!(rows, 1 + 10);
    }

    #[test]
    fn a_regression_is_named_with_its_figures_in_words() {
        let result = result(13.0, true);
        let page = page(&result).unwrap();
        let (class, text) = headline_of(&page);
        assert_eq!(class, "headline fail");
        assert_eq!(text, "FAIL (regression): p99_ms");
        let p99 = &result.comparisons[1];
        let words = verdict_words(p99);
        assert!(words.starts_with("p99_ms: the candidate is "), "{words}");
        assert!(
            words.contains("% worse") && words.ends_with("a regression."),
            "{words}"
        );
        assert!(text_of(parse(&page).root_element()).contains(&words));
        let svg = metric_chart(p99, &result.runs).unwrap();
        assert!(svg.contains("tolerance 1.1"), "{svg}");
    }

    #[test]
    fn a_correctness_failure_fails_the_page_and_names_the_runs() {
        let page = page(&result(10.3, false)).unwrap();
        let (class, text) = headline_of(&page);
        assert_eq!(class, "headline fail");
        assert!(
            text.starts_with("FAIL (correctness): 5 of 10 runs"),
            "{text}"
        );
        assert!(page.contains("max_zombies 3 (limit 0)"));
    }
}
