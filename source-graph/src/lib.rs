//! The import graph of a crate's source tree, for the architecture tests of chat-server
//! and loadgen (`tests/module_graph.rs` in each): which module names which, import cycles
//! between files and between folders, and who imports what. A dev-dependency only.
//!
//! It reads the real source tree. Each file is a module; a module depends on another when
//! its code names it or an item in it through a path (`crate::a::b`, `super::x`,
//! `self::x`, or a child module by name). `mod` declarations and `pub use` re-exports are
//! not dependencies (a parent declares its children, the crate root re-exports its API),
//! and comments and the unit tests that close a file (`mod tests { … }`) are skipped. A
//! path to an item the crate root re-exports (`crate::Config`) lands on the root: so a
//! module that reaches back up to the root's API shows as an edge to it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Who depends on whom.
pub type Graph = BTreeMap<Module, BTreeSet<Module>>;

/// A module as its path below the crate root (`[]` is the root, `["run", "user"]` is
/// `run::user`).
pub type Module = Vec<String>;

/// Every `.rs` file under `src` (but `main.rs`) as a module path, with its text.
pub fn modules(src: &Path) -> BTreeMap<Module, String> {
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

/// Who depends on whom: for each module, the modules its code names.
pub fn dependencies(sources: &BTreeMap<Module, String>) -> Graph {
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

pub fn name(module: &Module) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

/// Every cycle found by a depth-first search, each as `a -> b -> a`.
pub fn cycles(graph: &Graph) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        module: &Module,
        graph: &Graph,
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

/// The graph with every module replaced by its top-level unit: a folder below the root
/// (`run` for `run::user`), a file of the root folder, or the root itself. A cycle here is
/// a circle between folders (or a folder and a file).
pub fn units(graph: &Graph) -> Graph {
    let unit = |m: &Module| {
        m.first()
            .map(|first| vec![first.clone()])
            .unwrap_or_default()
    };
    let mut collapsed: Graph = BTreeMap::new();
    for (from, edges) in graph {
        let from_unit = unit(from);
        let entry = collapsed.entry(from_unit.clone()).or_default();
        for to in edges {
            let to_unit = unit(to);
            if to_unit != from_unit {
                entry.insert(to_unit);
            }
        }
    }
    collapsed
}

/// Every edge into `target` (or a module below it) from a module outside every tree of
/// `allowed`, as `from -> to`.
pub fn imports_of(graph: &Graph, target: &[&str], allowed: &[&[&str]]) -> Vec<String> {
    let below = |m: &Module, prefix: &[&str]| {
        m.len() >= prefix.len() && m.iter().zip(prefix).all(|(a, b)| a == b)
    };
    let mut found = Vec::new();
    for (from, edges) in graph {
        if allowed.iter().any(|prefix| below(from, prefix)) {
            continue;
        }
        for to in edges {
            if below(to, target) && !below(from, target) {
                found.push(format!("{} -> {}", name(from), name(to)));
            }
        }
    }
    found
}

/// Every line (`module:line: text`) whose code holds one of `needles`, in modules outside
/// every tree of `allowed` (comments and closing unit tests skipped).
pub fn lines_with(
    sources: &BTreeMap<Module, String>,
    needles: &[&str],
    allowed: &[&[&str]],
) -> Vec<String> {
    let below = |m: &Module, prefix: &[&str]| {
        m.len() >= prefix.len() && m.iter().zip(prefix).all(|(a, b)| a == b)
    };
    let mut found = Vec::new();
    for (module, text) in sources {
        if allowed.iter().any(|prefix| below(module, prefix)) {
            continue;
        }
        for (number, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.ends_with("mod tests {") {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            if needles.iter().any(|needle| code.contains(needle)) {
                found.push(format!(
                    "{}:{}: {}",
                    name(module),
                    number + 1,
                    code.trim_end()
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planted() -> BTreeMap<Module, String> {
        [
            (vec![], "pub mod run;\npub mod report;\npub use run::Api;\n".to_string()),
            (
                vec!["run".into()],
                "pub mod user;\npub mod plan;\nuse crate::report::{self, Summary};\nuse user::open;\n".into(),
            ),
            (
                vec!["run".into(), "user".into()],
                "use super::Ctx; // the circle\n".into(),
            ),
            (vec!["run".into(), "plan".into()], "fn p() {}\n".into()),
            (
                vec!["report".into()],
                "fn f() { let _ = crate::report::x(); eprintln!(\"x\"); }\nfn g() { crate::run::plan::p(); }\n".into(),
            ),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn planted_cycles_are_found_between_files_and_between_folders() {
        let graph = dependencies(&planted());
        assert_eq!(cycles(&graph), vec!["run -> run::user -> run".to_string()]);
        assert!(
            !graph[&vec!["report".to_string()]].contains(&vec!["report".to_string()]),
            "a self-reference is no edge"
        );
        // report -> run::plan and run -> report: no file circle, but a folder circle.
        assert_eq!(
            cycles(&units(&graph)),
            vec!["report -> run -> report".to_string()]
        );
    }

    #[test]
    fn imports_and_lines_outside_what_is_allowed_are_named() {
        let sources = planted();
        let graph = dependencies(&sources);
        assert_eq!(
            imports_of(&graph, &["report"], &[]),
            vec!["run -> report".to_string()]
        );
        assert!(imports_of(&graph, &["report"], &[&["run"]]).is_empty());
        assert!(imports_of(&graph, &["run"], &[]).contains(&"report -> run::plan".to_string()));
        let printing = lines_with(&sources, &["eprintln!"], &[]);
        assert_eq!(printing.len(), 1, "{printing:?}");
        assert!(printing[0].starts_with("report:1:"), "{printing:?}");
        assert!(lines_with(&sources, &["eprintln!"], &[&["report"]]).is_empty());
    }
}
