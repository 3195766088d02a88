//! The statistics of a paired A/B comparison.
//!
//! Runs come in pairs (base, candidate) taken back to back on the same machine, so slow
//! drifts of a shared machine hit both sides of a pair alike. Each pair gives one ratio
//! `candidate / base`; the verdict is on the median ratio and a 95% bootstrap interval of
//! that median (resampling pairs, fixed seed, so the same numbers give the same verdict).
//! A metric *regresses* when both hold: the median ratio is worse than the tolerance (the
//! change matters), and the whole interval is on the worse side of 1 (the candidate is
//! worse with confidence, not by the luck of a few pairs). *Improves* is the mirror image.
//! Requiring the whole interval to clear the tolerance instead missed a real 20% slowdown
//! in one of two runs with 5 pairs on our noisy machines. A bootstrap of very few pairs
//! is degenerate, so a one-sided sign test must agree too: the number of pairs in which
//! the candidate is worse at all must be significant at 10% (5 of 5, 6 of 7, 7 of 9, …;
//! with fewer than 4 pairs no regression can be shown).

use serde::Serialize;

/// Which direction of a metric is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// Timing or cost counter ([`super::metric`]): each kind has its own tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    Timing,
    Counter,
}

/// The verdict on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateVerdict {
    Pass,
    Regression,
    Improvement,
    /// Shown and charted but not judged: identical builds differ too much in it (context
    /// switches), unless the scenario's `[gate_tolerance]` names it.
    Reported,
}

/// One metric compared across all pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub metric: String,
    pub better: Better,
    pub base_median: f64,
    pub candidate_median: f64,
    /// Median of the per-pair ratios candidate / base.
    pub ratio: f64,
    /// 95% bootstrap interval of that median.
    pub ratio_low: f64,
    pub ratio_high: f64,
    /// Pairs in which the candidate was worse than the tolerance allows.
    pub worse_pairs: usize,
    /// One-sided sign-test p-value of "the candidate is worse" (pairs worse at all).
    pub sign_p: f64,
    pub pairs: usize,
    pub tolerance: f64,
    pub verdict: GateVerdict,
    /// How far the base's own runs stray from their median, at most (max |x / median − 1|):
    /// the same-vs-same spread the tolerance must stand above.
    pub base_spread: f64,
    /// Timing or cost counter (set by the gate; timing by default).
    pub kind: MetricKind,
    /// What moved, in words, when a counter regressed.
    pub attribution: Option<String>,
}

/// Bootstrap resamples.
const RESAMPLES: usize = 4000;

/// Significance the sign test must reach.
const SIGN_ALPHA: f64 = 0.10;

/// P(at least `k` of `n` fair coin flips come up heads): the one-sided sign test.
fn sign_test(n: usize, k: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let mut choose = 1.0f64; // C(n, i), built up from C(n, 0)
    let mut tail = 0.0;
    for i in 0..=n {
        if i >= k {
            tail += choose;
        }
        choose = choose * (n - i) as f64 / (i + 1) as f64;
    }
    tail / 2f64.powi(n as i32)
}

/// Compares paired samples. `base[i]` and `candidate[i]` are pair `i`. Pairs with a
/// non-positive or non-finite value are left out (a ratio needs two real numbers).
pub fn compare(
    metric: &str,
    better: Better,
    base: &[f64],
    candidate: &[f64],
    tolerance: f64,
) -> Comparison {
    let usable: Vec<(f64, f64)> = base
        .iter()
        .zip(candidate)
        .map(|(&b, &c)| (b, c))
        .filter(|&(b, c)| b > 0.0 && c > 0.0 && b.is_finite() && c.is_finite())
        .collect();
    let ratios: Vec<f64> = usable.iter().map(|&(b, c)| c / b).collect();
    let ratio = median(&ratios);
    let (ratio_low, ratio_high) = bootstrap_interval(&ratios);
    // How much worse a ratio is, as a factor above 1.
    let worse = |r: f64| match better {
        Better::Lower => r,
        Better::Higher => 1.0 / r,
    };
    let limit = 1.0 + tolerance;
    let worse_pairs = ratios.iter().filter(|&&r| worse(r) > limit).count();
    let sign = |k: usize| sign_test(ratios.len(), k);
    let sign_p = sign(ratios.iter().filter(|&&r| worse(r) > 1.0).count());
    let sign_better = sign(ratios.iter().filter(|&&r| worse(r) < 1.0).count());
    let (best_case, worst_case) = match better {
        Better::Lower => (ratio_low, ratio_high),
        Better::Higher => (ratio_high, ratio_low),
    };
    let verdict = if ratios.is_empty() {
        GateVerdict::Pass
    } else if worse(ratio) > limit && worse(best_case) > 1.0 && sign_p <= SIGN_ALPHA {
        GateVerdict::Regression
    } else if worse(ratio) < 1.0 / limit && worse(worst_case) < 1.0 && sign_better <= SIGN_ALPHA {
        GateVerdict::Improvement
    } else {
        GateVerdict::Pass
    };
    let base_median = median(&usable.iter().map(|p| p.0).collect::<Vec<_>>());
    let base_spread = usable
        .iter()
        .map(|p| (p.0 / base_median - 1.0).abs())
        .fold(0.0, f64::max);
    Comparison {
        metric: metric.to_string(),
        better,
        base_median,
        candidate_median: median(&usable.iter().map(|p| p.1).collect::<Vec<_>>()),
        ratio,
        ratio_low,
        ratio_high,
        worse_pairs,
        sign_p,
        pairs: ratios.len(),
        tolerance,
        verdict,
        base_spread,
        kind: MetricKind::Timing,
        attribution: None,
    }
}

/// The median (mean of the middle two for an even count; NaN for none).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The 2.5% and 97.5% quantiles of the median over bootstrap resamples.
fn bootstrap_interval(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut state: u64 = 0x5EED_0F6A_7E00;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut medians = Vec::with_capacity(RESAMPLES);
    let mut sample = vec![0.0; values.len()];
    for _ in 0..RESAMPLES {
        for slot in sample.iter_mut() {
            *slot = values[(next() % values.len() as u64) as usize];
        }
        medians.push(median(&sample));
    }
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((medians.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_sides_pass() {
        let base = [100.0, 102.0, 98.0, 101.0, 99.0];
        let c = compare("cpu", Better::Lower, &base, &base, 0.10);
        assert_eq!(c.verdict, GateVerdict::Pass);
        assert_eq!(c.ratio, 1.0);
        assert_eq!(c.worse_pairs, 0);
    }

    #[test]
    fn a_consistent_twenty_percent_slowdown_is_a_regression() {
        let base = [10.0, 10.5, 9.8, 10.2, 10.1];
        let cand: Vec<f64> = base
            .iter()
            .zip([1.18, 1.22, 1.2, 1.25, 1.19])
            .map(|(b, r)| b * r)
            .collect();
        let c = compare("cpu_per_1000", Better::Lower, &base, &cand, 0.10);
        assert_eq!(c.verdict, GateVerdict::Regression);
        assert!(c.ratio_low > 1.1, "{c:?}");
        assert_eq!(c.worse_pairs, 5);
        // The same drop in a higher-is-better metric.
        let thr = compare("deliveries_per_sec", Better::Higher, &cand, &base, 0.10);
        assert_eq!(thr.verdict, GateVerdict::Regression);
    }

    #[test]
    fn noise_or_a_single_bad_pair_is_not_a_regression() {
        let base = [10.0, 10.0, 10.0, 10.0, 10.0];
        let noisy = [9.0, 11.5, 10.2, 12.0, 9.5];
        assert_eq!(
            compare("p99", Better::Lower, &base, &noisy, 0.10).verdict,
            GateVerdict::Pass
        );
        let one_bad = [10.1, 30.0, 9.9, 10.0, 10.2];
        assert_eq!(
            compare("p99", Better::Lower, &base, &one_bad, 0.10).verdict,
            GateVerdict::Pass
        );
    }

    #[test]
    fn two_pairs_can_never_show_a_regression() {
        let c = compare("p50", Better::Lower, &[1.7, 1.7], &[1.75, 2.5], 0.10);
        assert!(c.ratio > 1.1, "{c:?}");
        assert_eq!(c.verdict, GateVerdict::Pass);
        assert_eq!(sign_test(2, 2), 0.25);
        assert_eq!(sign_test(5, 5), 0.03125);
        assert_eq!(sign_test(7, 6), 0.0625);
        assert_eq!(sign_test(4, 0), 1.0);
    }

    #[test]
    fn a_big_median_without_confidence_is_not_a_regression() {
        let base = [10.0; 5];
        let mixed = [8.0, 11.5, 12.0, 12.5, 9.0];
        let c = compare("p50", Better::Lower, &base, &mixed, 0.10);
        assert!(c.ratio > 1.1 && c.ratio_low < 1.0, "{c:?}");
        assert_eq!(c.verdict, GateVerdict::Pass);
    }

    #[test]
    fn a_consistent_gain_is_an_improvement() {
        let base = [10.0, 10.0, 10.0, 10.0, 10.0];
        let faster = [7.0, 7.2, 6.9, 7.1, 7.3];
        assert_eq!(
            compare("cpu", Better::Lower, &base, &faster, 0.10).verdict,
            GateVerdict::Improvement
        );
    }

    #[test]
    fn unusable_pairs_are_left_out() {
        let c = compare("p50", Better::Lower, &[0.0, f64::NAN], &[1.0, 1.0], 0.1);
        assert_eq!(c.pairs, 0);
        assert_eq!(c.verdict, GateVerdict::Pass);
        assert_eq!(median(&[3.0, 1.0, 2.0, 4.0]), 2.5);
    }
}
