//! Reads samples from a server's `/metrics` (Prometheus text), over a plain HTTP/1.1 GET
//! (over TLS, `https`, when the server's URL is `wss://`):
//! the server's own delivery count beside loadgen's, and — for `loadgen capacity` against
//! a server that is not a local process — its `process_cpu_seconds_total` and
//! `process_resident_memory_bytes`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::target::Target;
use crate::tls::TlsClient;

/// Where a server's `/metrics` is: the server's URL (its scheme decides plain or TLS), its
/// address, and how to verify it over TLS (the default settings when `None`).
#[derive(Debug, Clone)]
pub struct MetricsAt {
    pub target: Target,
    pub addr: SocketAddr,
    pub tls: Option<TlsClient>,
}

/// The sum of every sample of `name` in `GET /metrics`, or `None` if the server has no such
/// endpoint or counter.
pub async fn counter(at: &MetricsAt, name: &str) -> Option<u64> {
    let body = tokio::time::timeout(Duration::from_secs(3), get_metrics(at))
        .await
        .ok()??;
    parse_counter(&body, name)
}

/// One GET of `/metrics`: for each of `names`, the sum of its samples (`None` where the
/// server has no such metric). `None` if `/metrics` cannot be read at all.
pub async fn values(at: &MetricsAt, names: &[&str]) -> Option<Vec<Option<f64>>> {
    let body = tokio::time::timeout(Duration::from_secs(3), get_metrics(at))
        .await
        .ok()??;
    Some(names.iter().map(|name| parse_value(&body, name)).collect())
}

async fn get_metrics(at: &MetricsAt) -> Option<String> {
    let addr = at.addr;
    let mut stream = crate::connection::open(&at.target, addr, None, at.tls.as_ref())
        .await
        .ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream
        .take(16 << 20)
        .read_to_end(&mut response)
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Sums `name{...} value` and `name value` lines, as a whole number.
pub fn parse_counter(body: &str, name: &str) -> Option<u64> {
    parse_value(body, name).map(|v| v as u64)
}

/// Sums `name{...} value` and `name value` lines (an optional timestamp after the value
/// is ignored). `None` if there is no such line or a value is not a finite number.
pub fn parse_value(body: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let rest = if let Some(labelled) = rest.strip_prefix('{') {
            match labelled.rfind('}') {
                Some(end) => &labelled[end + 1..],
                None => continue,
            }
        } else if rest.starts_with(' ') {
            rest
        } else {
            continue;
        };
        let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
        if !value.is_finite() {
            return None;
        }
        *found.get_or_insert(0.0) += value;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_labelled_samples() {
        let body = "# HELP x\nchat_deliveries_out_total{server_id=\"1\"} 5\nchat_deliveries_out_total_other 9\nchat_deliveries_out_total 2\n";
        assert_eq!(parse_counter(body, "chat_deliveries_out_total"), Some(7));
        assert_eq!(parse_counter(body, "nothing"), None);
    }

    #[test]
    fn reads_fractions_labels_with_spaces_and_timestamps() {
        let body = "process_cpu_seconds_total 12.5\nx{a=\"b c\"} 1.5 1700000000\nx{d=\"e\"} 2\n";
        assert_eq!(parse_value(body, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(parse_value(body, "x"), Some(3.5));
        assert_eq!(parse_value("y NaN\n", "y"), None);
        assert_eq!(parse_value("y{broken 1\n", "y"), None);
    }
}
