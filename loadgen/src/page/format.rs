//! How numbers read in the reports (capacity, run, gate): thousands separated by commas, settings
//! without needless decimals, a dash for a missing figure. A leaf: it knows no report type.

/// How a missing figure reads in the human reports.
pub const NONE: &str = "–";

pub const BYTES_PER_MIB: f64 = 1024.0 * 1024.0;
pub const BYTES_PER_GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// `v` with `decimals` digits and thousands separated by commas; [`NONE`] when not finite.
pub fn number(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return NONE.to_string();
    }
    let text = format!("{v:.decimals$}");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text.as_str()),
    };
    let (int, fraction) = match digits.split_once('.') {
        Some((int, fraction)) => (int, Some(fraction)),
        None => (digits, None),
    };
    let mut out = String::new();
    // "-0.00" reads as "0.00".
    if negative && digits.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.push('-');
    }
    out.push_str(&grouped(int));
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// A whole number with thousands separated by commas.
pub fn count(n: u64) -> String {
    grouped(&n.to_string())
}

/// A setting such as a rate or a level: whole numbers without decimals, others with up
/// to two.
pub fn short(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 {
        number(v, 0)
    } else {
        let text = number(v, 2);
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    }
}

fn grouped(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 69950.0 → "69,950".
pub fn thousands(value: f64) -> String {
    count(value.max(0.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_with_separators_and_dashes() {
        assert_eq!(number(69950.0, 0), "69,950");
        assert_eq!(number(1234567.891, 2), "1,234,567.89");
        assert_eq!(number(-1500.0, 0), "-1,500");
        assert_eq!(number(-0.001, 2), "0.00");
        assert_eq!(number(999.0, 1), "999.0");
        assert_eq!(number(f64::NAN, 1), NONE);
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(100), "100");
        assert_eq!(short(50.0), "50");
        assert_eq!(short(12.5), "12.5");
        assert_eq!(short(1400.25), "1,400.25");
    }
}
