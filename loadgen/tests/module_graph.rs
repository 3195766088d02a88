//! Keeps loadgen's dependencies pointing one way: no module may import, directly or
//! through others, a module that imports it back.
//!
//! The check reads the real source tree. Each file is a module; a module depends on
//! another when its code names it or an item in it through a path (`crate::a::b`,
//! `super::x`, `self::x`, or a child module by name). `mod` declarations and `pub use`
//! re-exports are not dependencies (a parent declares its children), and comments and
//! the unit tests that close a file (`mod tests { … }`) are skipped. A cycle fails the test and is printed, e.g. `run -> run::user -> run`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every `.rs` file under `src` (but `main.rs`) as a module path, with its text.
fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative: PathBuf = path.strip_prefix(src).expect("under src").to_path_buf();
            let mut segments: Module = relative
                .with_extension("")
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            match segments.last().map(String::as_str) {
                Some("main") if segments.len() == 1 => continue,
                Some("lib") if segments.len() == 1 => segments.clear(),
                Some("mod") => {
                    segments.pop();
                }
                _ => {}
            }
            let text = std::fs::read_to_string(&path).expect("readable source");
            found.insert(segments, text);
        }
    }
    found
}

fn identifier(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// The paths a line names, each as its segments (`super` and `self` kept), with braces
/// of `use` groups expanded one level deep.
fn paths_in(line: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < line.len() {
        let starts_word = i == 0 || {
            let before = bytes[i - 1] as char;
            !(before.is_alphanumeric() || before == '_' || before == ':')
        };
        let (word, rest) = identifier(&line[i..]);
        if word.is_empty() || !starts_word {
            i += line[i..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        if let Some(after) = rest.strip_prefix("::") {
            let prefix = vec![word.to_string()];
            collect(prefix, after, &mut paths);
        }
        i += word.len();
    }
    paths
}

/// Follows `a::b::{c, d::e}` from `text` (just after a `::`), pushing complete paths.
fn collect(prefix: Vec<String>, text: &str, paths: &mut Vec<Vec<String>>) {
    if let Some(group) = text.strip_prefix('{') {
        let end = group.find('}').unwrap_or(group.len());
        for part in group[..end].split(',') {
            let part = part.trim();
            let (word, rest) = identifier(part);
            if word.is_empty() {
                continue;
            }
            let mut path = prefix.clone();
            path.push(word.to_string());
            match rest.strip_prefix("::") {
                Some(after) => collect(path, after, paths),
                None => paths.push(path),
            }
        }
        return;
    }
    let (word, rest) = identifier(text);
    let mut path = prefix;
    if word.is_empty() {
        paths.push(path);
        return;
    }
    path.push(word.to_string());
    match rest.strip_prefix("::") {
        Some(after) => collect(path, after, paths),
        None => paths.push(path),
    }
}

/// The module a path from `from` lands in: the longest known module its segments name.
fn resolve(from: &Module, path: &[String], known: &BTreeSet<Module>) -> Option<Module> {
    let (mut base, rest): (Module, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (from.clone(), &path[1..]),
        Some("super") => {
            let mut base = from.clone();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            (base, rest)
        }
        Some(first) => {
            // A child module named without `self::` (2018 paths).
            let mut child = from.clone();
            child.push(first.to_string());
            if !known.contains(&child) {
                return None;
            }
            (child, &path[1..])
        }
        None => return None,
    };
    for segment in rest {
        let mut deeper = base.clone();
        deeper.push(segment.clone());
        if known.contains(&deeper) {
            base = deeper;
        } else {
            break;
        }
    }
    Some(base)
}

/// Who depends on whom.
fn dependencies(sources: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let known: BTreeSet<Module> = sources.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, text) in sources {
        let mut edges = BTreeSet::new();
        for line in text.lines() {
            let code = line.trim_start();
            if code.ends_with("mod tests {") {
                break; // unit tests close each file; `super` means something else there
            }
            let declaration = [
                "mod ",
                "pub mod ",
                "pub(crate) mod ",
                "pub use ",
                "pub(crate) use ",
            ]
            .iter()
            .any(|start| code.starts_with(start));
            if code.starts_with("//") || declaration {
                continue;
            }
            let code = code.split(" //").next().unwrap_or(code);
            for path in paths_in(code) {
                if let Some(target) = resolve(module, &path, &known) {
                    if &target != module {
                        edges.insert(target);
                    }
                }
            }
        }
        graph.insert(module.clone(), edges);
    }
    graph
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

/// Every cycle found by a depth-first search, each as `a -> b -> a`.
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        module: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        marks: &mut BTreeMap<Module, Mark>,
        stack: &mut Vec<Module>,
        found: &mut Vec<String>,
    ) {
        marks.insert(module.clone(), Mark::Open);
        stack.push(module.clone());
        for next in graph.get(module).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let at = stack.iter().position(|m| m == next).unwrap_or(0);
                    let mut names: Vec<String> = stack[at..].iter().map(name).collect();
                    names.push(name(next));
                    found.push(names.join(" -> "));
                }
                Some(Mark::Done) => {}
                None => visit(next, graph, marks, stack, found),
            }
        }
        stack.pop();
        marks.insert(module.clone(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut found = Vec::new();
    for module in graph.keys() {
        if !marks.contains_key(module) {
            visit(module, graph, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found
}

#[test]
fn loadgen_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = modules(&src);
    assert!(
        sources.len() > 40,
        "read the source tree: {} modules",
        sources.len()
    );
    let graph = dependencies(&sources);
    // The check sees real dependencies (a blind scanner would pass anything).
    let run = graph.get(&vec!["run".to_string()]).expect("run module");
    assert!(run.contains(&vec!["run".into(), "state".into()]), "{run:?}");
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn general_modules_do_not_import_a_subcommand() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = dependencies(&modules(&src));
    let found = upward(&graph, SUBCOMMANDS);
    assert!(
        found.is_empty(),
        "general modules importing a subcommand:\n{}",
        found.join("\n")
    );
}

/// The subcommands with modules of their own: only they (and `main.rs`) may use them.
const SUBCOMMANDS: &[&str] = &["capacity", "gate", "conform", "client"];

/// Edges from outside a subcommand's tree into it, as `from -> to`.
fn upward(graph: &BTreeMap<Module, BTreeSet<Module>>, subcommands: &[&str]) -> Vec<String> {
    let top = |m: &Module| m.first().cloned().unwrap_or_default();
    let mut found = Vec::new();
    for (from, edges) in graph {
        for to in edges {
            let into = top(to);
            if subcommands.contains(&into.as_str()) && top(from) != into {
                found.push(format!("{} -> {}", name(from), name(to)));
            }
        }
    }
    found
}

#[test]
fn a_planted_cycle_is_found() {
    let sources: BTreeMap<Module, String> = [
        (vec![], "pub mod run;\npub mod report;\n".to_string()),
        (
            vec!["run".into()],
            "pub mod user;\nuse crate::report::{self, Summary};\nuse user::open;\n".into(),
        ),
        (
            vec!["run".into(), "user".into()],
            "use super::Ctx; // the circle\n".into(),
        ),
        (
            vec!["report".into()],
            "fn f() { let _ = crate::report::x(); }\n".into(),
        ),
    ]
    .into_iter()
    .collect();
    let graph = dependencies(&sources);
    let found = cycles(&graph);
    assert_eq!(found, vec!["run -> run::user -> run".to_string()]);
    assert!(
        graph[&vec!["report".to_string()]].is_empty(),
        "a self-reference is no edge"
    );
    assert!(
        upward(&graph, &["run"]).is_empty(),
        "a declaration is no edge"
    );
    assert_eq!(
        upward(&graph, &["report"]),
        vec!["run -> report".to_string()]
    );
}
