//! The Kubernetes manifest (`deploy/kubernetes/loadgen-job.yaml`) holds loadgen command
//! lines that no other test runs: this checks them against loadgen itself.
//!
//! Every document is read with a YAML parser. For each pod a Job starts (one per
//! completion index of an Indexed Job), the container's `command` + `args` are expanded as
//! Kubernetes does (`$(NAME)` from the container's env, `$$` a literal `$`), with
//! `JOB_COMPLETION_INDEX` the pod's index and `START_AT` the time `sed` puts there at
//! submit time; the argv must then be accepted by loadgen's own parser ([`Cli`]), and a
//! `--start-at` must be a time loadgen reads. Beyond the parser: the run Job plays
//! segments `0/N … N-1/N` with N its `completions`, all at once; the merge Job reads
//! exactly the folders they write, on the same volume; the scenario they name (a file of
//! the ConfigMap) parses and names a target. The last test breaks the manifest in three
//! ways and shows each is refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use loadgen::test_support::Segment;
use loadgen::test_support::{check_ports, parse_start_at, unix_now_ns, Players, PortRange};
use loadgen::test_support::{Cli, Command};
use loadgen::Scenario;
use serde::Deserialize;
use serde_yaml_ng::Value;

/// What the README's `sed` puts in START_AT at submit time.
const START_AT: &str = "2026-11-26T10:00:00Z";

/// Connections one pod's resources are sized for (its open-file limit is the node's).
const POD_CONNECTIONS: u64 = 19_000;

fn manifest_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/loadgen-job.yaml")
}

/// Every non-empty YAML document of the manifest.
fn load_manifest() -> Vec<Value> {
    let path = manifest_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// The object of `kind` named `name`.
fn object<'m>(manifest: &'m [Value], kind: &str, name: &str) -> &'m Value {
    manifest
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("the manifest has no {kind} named {name}"))
}

/// The Jobs, by name.
fn jobs(manifest: &[Value]) -> BTreeMap<&str, &Value> {
    manifest
        .iter()
        .filter(|o| o["kind"].as_str() == Some("Job"))
        .map(|job| (job["metadata"]["name"].as_str().expect("a named Job"), job))
        .collect()
}

/// The Job that runs segments (`loadgen run --segment`) and the one that merges them.
fn run_and_merge_jobs(manifest: &[Value]) -> (&Value, &Value) {
    let jobs = jobs(manifest);
    assert_eq!(
        jobs.len(),
        2,
        "a run Job and a merge Job: {:?}",
        jobs.keys()
    );
    let subcommand = |job: &Value| job_container(job)["args"][0].as_str().map(str::to_owned);
    let find = |name: &str| {
        *jobs
            .values()
            .find(|job| subcommand(job).as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no Job runs `loadgen {name}`"))
    };
    (find("run"), find("merge"))
}

/// A Job's one container.
fn job_container(job: &Value) -> &Value {
    let containers = job["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("a pod template with containers");
    assert_eq!(containers.len(), 1, "one container per loadgen pod");
    &containers[0]
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The pods a Job starts: their completion indexes (one pod of no index when not Indexed).
fn indexes(job: &Value) -> Vec<Option<u64>> {
    if job["spec"]["completionMode"].as_str() == Some("Indexed") {
        let completions = job["spec"]["completions"]
            .as_u64()
            .expect("an Indexed Job sets completions");
        (0..completions).map(Some).collect()
    } else {
        vec![None]
    }
}

/// The container's environment in the pod of completion `index`, as Kubernetes builds it:
/// JOB_COMPLETION_INDEX for an Indexed Job, then each `env` entry, START_AT as set at
/// submit time.
fn environment(container: &Value, index: Option<u64>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let Some(index) = index {
        env.insert("JOB_COMPLETION_INDEX".to_owned(), index.to_string());
    }
    for entry in container["env"].as_sequence().into_iter().flatten() {
        let name = entry["name"].as_str().expect("an env entry has a name");
        let field = entry["valueFrom"]["fieldRef"]["fieldPath"].as_str();
        let value = match (name, entry["value"].as_str(), field) {
            ("START_AT", Some(_), None) => START_AT.to_owned(),
            (_, Some(value), None) => value.to_owned(),
            (_, None, Some("metadata.annotations['batch.kubernetes.io/job-completion-index']")) => {
                index
                    .expect("the completion index exists only in an Indexed Job")
                    .to_string()
            }
            _ => panic!("env {name}: this test does not know its value: {entry:?}"),
        };
        env.insert(name.to_owned(), value);
    }
    env
}

/// Kubernetes' expansion of a container's command and args: `$(NAME)` of a variable in
/// `env` becomes its value, `$$` a single `$`; anything else, an unknown `$(NAME)`
/// included, stays as written.
fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|r| r.split_once(')')) {
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// One pod of a Job: its completion index and the argv its container runs.
struct Pod {
    index: Option<u64>,
    argv: Vec<String>,
}

/// The pods a Job starts, each with its expanded argv.
fn pods(job: &Value) -> Vec<Pod> {
    let container = job_container(job);
    let command = strings(&container["command"]);
    assert_eq!(
        command,
        ["loadgen"],
        "the container names its command rather than relying on the image's entrypoint"
    );
    indexes(job)
        .into_iter()
        .map(|index| {
            let env = environment(container, index);
            let argv = command
                .iter()
                .chain(&strings(&container["args"]))
                .map(|arg| expand(arg, &env))
                .collect();
            Pod { index, argv }
        })
        .collect()
}

/// Whether loadgen accepts `argv`: its CLI parser, and then, as `loadgen run` does before
/// anything else, its reading of `--start-at`.
fn accepted(argv: &[String]) -> Result<Command, String> {
    let cli = Cli::try_parse_from(argv).map_err(|e| format!("{argv:?}: {e}"))?;
    if let Command::Run(run) = &cli.command {
        if let Some(at) = &run.start_at {
            parse_start_at(at, unix_now_ns()).map_err(|e| format!("{argv:?}: --start-at {e}"))?;
        }
    }
    Ok(cli.command)
}

/// Where `path` lands in a pod of `job`: the volume mounted over it and the path inside.
fn volume_at<'j>(job: &'j Value, path: &Path) -> (&'j Value, PathBuf) {
    let container = job_container(job);
    let (volume_name, inside) = container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find_map(|mount| {
            let at = Path::new(mount["mountPath"].as_str()?);
            let inside = path.strip_prefix(at).ok()?;
            Some((mount["name"].as_str()?, inside.to_path_buf()))
        })
        .unwrap_or_else(|| panic!("{}: on no volume of the pod", path.display()));
    let volume = job["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| v["name"].as_str() == Some(volume_name))
        .unwrap_or_else(|| panic!("volume {volume_name} is mounted but not declared"));
    (volume, inside)
}

/// `path` in a pod of `job` as (persistent volume claim, path inside it).
fn on_claim(job: &Value, path: &Path) -> (String, PathBuf) {
    let (volume, inside) = volume_at(job, path);
    let claim = volume["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: not on a persistent volume claim", path.display()));
    (claim.to_owned(), inside)
}

/// The text of the file at `path` in a pod of `job`, from the ConfigMap mounted there.
fn configmap_file<'m>(manifest: &'m [Value], job: &Value, path: &Path) -> &'m str {
    let (volume, inside) = volume_at(job, path);
    let map = volume["configMap"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: not on a ConfigMap", path.display()));
    let key = inside.to_str().expect("a UTF-8 key");
    object(manifest, "ConfigMap", map)["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {map} has no {key}"))
}

/// The run Job's segments, checked: every pod's argv accepted, pod I playing segment I/N
/// with N its Job's `completions`, all pods at once, one start time. Returns each pod's
/// `loadgen run` arguments, in index order.
fn check_run_job(job: &Value) -> Result<Vec<loadgen::test_support::RunArgs>, String> {
    let completions = job["spec"]["completions"].as_u64().unwrap_or(0);
    if job["spec"]["completionMode"].as_str() != Some("Indexed") || completions == 0 {
        return Err("the run Job must be Indexed, with completions = N".into());
    }
    if job["spec"]["parallelism"].as_u64() != Some(completions) {
        return Err(format!(
            "parallelism must equal completions ({completions}): every segment runs at once"
        ));
    }
    let mut runs = Vec::new();
    for pod in pods(job) {
        let Command::Run(run) = accepted(&pod.argv)? else {
            return Err(format!("{:?}: not `loadgen run`", pod.argv));
        };
        let index = pod.index.expect("an Indexed Job's pod") as u32;
        let expected = Segment {
            index,
            count: completions as u32,
        };
        if run.segment != Some(expected) {
            return Err(format!(
                "pod {index} plays segment {:?}, not {expected}: N must be the Job's completions",
                run.segment.map(|s| s.to_string())
            ));
        }
        if run.start_at.as_deref() != Some(START_AT) {
            return Err(format!("pod {index}: --start-at must be $(START_AT)"));
        }
        runs.push(run);
    }
    Ok(runs)
}

#[test]
fn every_segment_pod_runs_an_argv_loadgen_accepts() {
    let manifest = load_manifest();
    let (run_job, _) = run_and_merge_jobs(&manifest);
    let runs = check_run_job(run_job).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runs.len(), 4, "the manifest's example is 4 segments");
    let mut outs: Vec<_> = runs.iter().map(|r| r.out.clone()).collect();
    outs.sort();
    outs.dedup();
    assert_eq!(outs.len(), runs.len(), "each segment writes its own folder");
}

#[test]
fn merge_job_reads_exactly_the_folders_the_segments_write() {
    let manifest = load_manifest();
    let (run_job, merge_job) = run_and_merge_jobs(&manifest);
    let runs = check_run_job(run_job).unwrap_or_else(|e| panic!("{e}"));
    let mut written: Vec<_> = runs
        .iter()
        .map(|run| {
            on_claim(
                run_job,
                run.out.as_deref().expect("each segment sets --out"),
            )
        })
        .collect();
    written.sort();

    let merge_pods = pods(merge_job);
    assert_eq!(merge_pods.len(), 1, "one merge");
    let Ok(Command::Merge(merge)) = accepted(&merge_pods[0].argv) else {
        panic!("{:?}: not an accepted `loadgen merge`", merge_pods[0].argv);
    };
    let mut read: Vec<_> = merge
        .dirs
        .iter()
        .map(|dir| on_claim(merge_job, dir))
        .collect();
    read.sort();
    assert_eq!(
        read, written,
        "merge reads what the segments wrote, no more, no less"
    );
    let out = on_claim(
        merge_job,
        merge.out.as_deref().expect("the merge sets --out"),
    );
    assert!(
        !written.contains(&out),
        "the merged report has a folder of its own"
    );

    let claim = object(&manifest, "PersistentVolumeClaim", &out.0);
    assert_eq!(
        strings(&claim["spec"]["accessModes"]),
        ["ReadWriteMany"],
        "pods on several nodes write the reports at once"
    );
}

#[test]
fn scenario_of_the_configmap_parses_and_fits_each_pod() {
    let manifest = load_manifest();
    let (run_job, _) = run_and_merge_jobs(&manifest);
    let runs = check_run_job(run_job).unwrap_or_else(|e| panic!("{e}"));
    let path = &runs[0].scenario;
    assert!(runs.iter().all(|run| &run.scenario == path));
    let text = configmap_file(&manifest, run_job, path);
    let scenario = Scenario::parse(path, text).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        runs.iter().all(|run| !run.targets.is_empty()) || !scenario.target.is_embedded(),
        "a segment needs a target: `target` in the scenario or --target"
    );
    for run in &runs {
        let segment = run.segment.expect("checked");
        let peak = loadgen::test_support::segment_peak_connections(&scenario, segment);
        assert!(
            peak <= POD_CONNECTIONS,
            "segment {segment} holds up to {peak} connections, more than a pod is sized for"
        );
    }
    // Each pod has its own address: a segment counts its own users' ephemeral ports (one
    // Service is one destination address).
    let service: SocketAddr = "127.0.0.1:6789".parse().expect("an address");
    for run in &runs {
        let segment = run.segment.expect("checked");
        check_ports(
            Players {
                count: scenario.users.count,
                segment,
            },
            loadgen::test_support::segment_peak_connections(&scenario, segment),
            &[service],
            &[],
            PortRange::LINUX_DEFAULT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn start_at_left_unset_is_refused_by_loadgen() {
    let manifest = load_manifest();
    let (run_job, _) = run_and_merge_jobs(&manifest);
    let placeholder = job_container(run_job)["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"].as_str() == Some("START_AT"))
        .and_then(|e| e["value"].as_str())
        .expect("START_AT is declared with a placeholder value");
    assert!(
        parse_start_at(placeholder, unix_now_ns()).is_err(),
        "a START_AT nobody set must stop the run, not start it at some time"
    );
}

#[test]
fn a_broken_manifest_fails_the_check() {
    let manifest = load_manifest();
    let (run_job, _) = run_and_merge_jobs(&manifest);
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut job = run_job.clone();
        change(&mut job);
        check_run_job(&job).map(|_| ())
    };
    fn args(job: &mut Value) -> &mut Vec<Value> {
        job["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_sequence_mut()
            .expect("args")
    }

    // Unchanged, it passes; so each failure below is the change's.
    broken(&|_| {}).unwrap_or_else(|e| panic!("{e}"));

    let unknown_flag = broken(&|job| args(job).push(Value::from("--no-such-flag")));
    assert!(unknown_flag.is_err_and(|e| e.contains("--no-such-flag")));

    let more_pods_than_segments = broken(&|job| job["spec"]["completions"] = Value::from(5));
    assert!(
        more_pods_than_segments.is_err(),
        "pod 4 of 5 cannot play segment 4/4"
    );

    let undeclared_variable = broken(&|job| {
        for arg in args(job).iter_mut() {
            if arg.as_str() == Some("$(START_AT)") {
                *arg = Value::from("$(START_TIME)");
            }
        }
    });
    assert!(
        undeclared_variable.is_err_and(|e| e.contains("$(START_TIME)")),
        "an undeclared $(NAME) reaches loadgen as written, and is no time"
    );
}
