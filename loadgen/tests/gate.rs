//! `loadgen gate` end to end: usage errors, a server that will not start, and a short real
//! comparison of a server with itself (the embedded `loadgen serve`).

mod page_check;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

const TINY: &str = "[users]\ncount = 10\nconnect_over = \"50ms\"\n[[phase]]\nduration = \"1s\"\nrate = 20\nsenders = 5\n";

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("loadgen-gate-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gate(args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .arg("gate")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("loadgen runs");
    eprintln!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn usage_errors_exit_2() {
    let no_addr = gate(&["--base", "x", "--candidate", "y {addr}"]);
    assert_eq!(no_addr.status.code(), Some(2));
    let tolerance = gate(&[
        "--base",
        "x {addr}",
        "--candidate",
        "y {addr}",
        "--tolerance",
        "2",
    ]);
    assert_eq!(tolerance.status.code(), Some(2));
    let scenario = gate(&[
        "--base",
        "x {addr}",
        "--candidate",
        "y {addr}",
        "--scenario",
        "no/such.toml",
    ]);
    assert_eq!(scenario.status.code(), Some(2));
}

#[test]
fn a_server_that_does_not_start_exits_3() {
    let dir = temp_dir("nostart");
    let scenario = dir.join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let output = gate(&[
        "--base",
        "false {addr}",
        "--candidate",
        "false {addr}",
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("exited before accepting"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_server_compared_with_itself_passes_and_writes_both_files() {
    let dir = temp_dir("self");
    let scenario = dir.join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let server = format!("{LOADGEN} serve --listen {{addr}}");
    let out = dir.join("out");
    let output = gate(&[
        "--base",
        &server,
        "--candidate",
        &server,
        "--scenario",
        scenario.to_str().unwrap(),
        "--pairs",
        "2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.starts_with("# Performance gate: PASS"), "{md}");
    for metric in [
        "deliveries_per_sec",
        "p50_ms",
        "p99_ms",
        "server_cpu_s_per_1000_deliveries",
        "read_syscalls_per_delivery",
        "write_syscalls_per_delivery",
        "bytes_written_per_delivery",
        "voluntary_switches_per_delivery",
        "involuntary_switches_per_delivery",
    ] {
        assert!(md.contains(metric), "{metric} in compare.md");
    }
    // `loadgen serve` does not count its allocations: not measured, never 0.
    assert!(
        md.contains("not measured: allocations_per_delivery"),
        "{md}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 4);
    // The cost counters were read from the server's /proc: every run has them.
    for run in json["runs"].as_array().unwrap() {
        let costs = &run["costs"];
        assert!(costs["write_syscalls"].as_f64().unwrap() > 0.0, "{costs}");
        assert!(costs["bytes_written"].as_f64().unwrap() > 0.0, "{costs}");
        assert!(costs["allocations"].is_null(), "{costs}");
    }
    assert_eq!(json["passed"], true);
    // The machine was calibrated at the start and the end of the gate.
    assert!(md.contains("- machine speed: loopback send"), "{md}");
    assert_eq!(json["calibration"]["mode"], "quick");
    assert!(
        json["calibration"]["end"]["cpu_workload_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // compare.html: a chart per metric, the verdict in words, nothing fetched.
    let html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    page_check::assert_self_contained(&html);
    let doc = page_check::parse(&html);
    assert_eq!(
        page_check::chart_ids(&doc),
        [
            "gate-deliveries_per_sec",
            "gate-p50_ms",
            "gate-p99_ms",
            "gate-server_cpu_s_per_1000_deliveries",
            "gate-read_syscalls_per_delivery",
            "gate-write_syscalls_per_delivery",
            "gate-bytes_written_per_delivery",
            "gate-voluntary_switches_per_delivery",
            "gate-involuntary_switches_per_delivery"
        ]
    );
    let (class, text) = page_check::headline(&doc);
    assert_eq!(class, "headline pass");
    assert!(text.starts_with("PASS"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_candidate_that_breaks_correctness_fails_the_gate_with_exit_1_also_with_workers() {
    let dir = temp_dir("broken");
    let scenario = dir.join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let base = format!("{LOADGEN} serve --listen {{addr}}");
    let broken = format!("{LOADGEN} serve --listen {{addr}} --fault drop-every-5");
    let out = dir.join("out");
    let output = gate(&[
        "--base",
        &base,
        "--candidate",
        &broken,
        "--scenario",
        scenario.to_str().unwrap(),
        "--pairs",
        "2",
        "--workers",
        "2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    // Each run was played by two worker processes, whose segments were merged.
    assert!(out
        .join("segments")
        .join("1-candidate")
        .join("1")
        .join("segment.json")
        .exists());
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(
        md.starts_with("# Performance gate: FAIL (correctness)"),
        "{md}"
    );
    assert!(
        md.contains("min_delivery_ratio"),
        "the failed threshold is named: {md}"
    );
    let html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    let doc = page_check::parse(&html);
    let (class, text) = page_check::headline(&doc);
    assert_eq!(class, "headline fail");
    assert!(text.starts_with("FAIL (correctness)"), "{text}");
    assert!(html.contains("min_delivery_ratio"));
    let _ = std::fs::remove_dir_all(dir);
}
