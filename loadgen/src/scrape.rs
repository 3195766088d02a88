//! Reads one counter from a server's `/metrics` (Prometheus text), over a plain HTTP/1.1
//! GET, so the report can set the server's own delivery count beside loadgen's.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The sum of every sample of `name` in `GET /metrics`, or `None` if the server has no such
/// endpoint or counter.
pub async fn counter(addr: SocketAddr, name: &str) -> Option<u64> {
    let body = tokio::time::timeout(Duration::from_secs(3), get_metrics(addr))
        .await
        .ok()??;
    parse_counter(&body, name)
}

async fn get_metrics(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
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

/// Sums `name{...} value` and `name value` lines.
pub fn parse_counter(body: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        *found.get_or_insert(0) += value as u64;
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
}
