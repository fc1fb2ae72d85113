//! Keeps the floors of `docs/architecture.md`: every top-level module may
//! import only from modules on lower floors (siblings on one floor do not
//! import each other). Read from the source, so an upward `use` fails
//! `cargo test --lib` with its file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module and its floor, ground up.
const FLOORS: &[(&str, u8)] = &[
    // 0: the wire vocabulary, signatures, pure helpers, the metrics
    // registry, TLS files (none imports another module).
    ("protocol", 0),
    ("auth", 0),
    ("support", 0),
    ("metrics", 0),
    ("tls", 0),
    // 1: configuration (it checks names against the protocol's).
    ("config", 1),
    // 2: pure in-node state, and the events it reports; the apps table.
    ("hub", 2),
    ("app_store", 2),
    // 3: the seam to the rest of the cluster; publishing.
    ("adapter", 3),
    // 4: one client's session; webhook delivery.
    ("session", 4),
    ("webhooks", 4),
    // 5: what every HTTP endpoint shares.
    ("http", 5),
    // 6: transports.
    ("ws", 6),
    ("fallback", 6),
    ("polling", 6),
    // 7: the HTTP API and the console.
    ("api", 7),
    ("console", 7),
    // 8: the listener, the live set of apps, and the command-line helpers.
    ("listener", 8),
    ("catalog", 8),
    ("laravel", 8),
    ("trigger", 8),
    // 9: what changes the apps: reload and the admin API.
    ("reload", 9),
    ("admin", 9),
    // 10: wiring, and the commands built on the others.
    ("server", 10),
    ("doctor", 10),
    ("health", 10),
];

fn floor_of(module: &str) -> Option<u8> {
    FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments (line breaks kept, so lines still count).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            let end = after.find('\n').unwrap_or(after.len());
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("/*") {
            let end = after.find("*/").map_or(after.len(), |e| e + 2);
            out.extend(after[..end].chars().filter(|c| *c == '\n'));
            rest = &after[end..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Every top-level module named after `crate::` (plain paths and `{…}`
/// groups, over several lines too), with the line it is on.
fn imports(source: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = source[at..].find("crate::") {
        let start = at + i + "crate::".len();
        let line = source[..start].matches('\n').count() + 1;
        let rest = &source[start..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push((name, line));
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push((name, line));
        }
        at = start;
    }
    found
}

/// Every import that breaks the floors, as `file:line: from -> to`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap_or(&file);
        let first = relative
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .unwrap_or_default();
        if matches!(first.as_str(), "lib" | "main" | "layering") {
            continue;
        }
        let Some(floor) = floor_of(&first) else {
            found.push(format!(
                "{}: module {first:?} has no floor in src/layering.rs",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (target, line) in imports(&without_comments(&text)) {
            if target == first {
                continue;
            }
            match floor_of(&target) {
                Some(to) if to < floor => {}
                Some(to) => found.push(format!(
                    "src/{}:{line}: {first} (floor {floor}) imports {target} (floor {to})",
                    relative.display()
                )),
                // `crate::` followed by something that is not a module.
                None => {}
            }
        }
    }
    found
}

#[test]
fn every_module_imports_only_from_lower_floors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "imports against the floors (see docs/architecture.md):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_floor() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&src).into_iter().flatten().flatten() {
        let file = entry.file_name();
        let name = file.to_string_lossy().trim_end_matches(".rs").to_owned();
        if !matches!(name.as_str(), "lib" | "main" | "layering") {
            let floor = floor_of(&name);
            modules.insert(name, floor);
        }
    }
    let missing: Vec<_> = modules.iter().filter(|(_, f)| f.is_none()).collect();
    assert!(missing.is_empty(), "modules without a floor: {missing:?}");
}

#[test]
fn imports_are_read_from_paths_groups_and_not_comments() {
    let source = "use crate::hub::X;\n// use crate::api::Y;\nuse crate::{\n    config,\n    protocol::Z,\n};\n/* crate::server */ let _ = crate::adapter::f();";
    let found = imports(&without_comments(source));
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["hub", "config", "protocol", "adapter"]);
    assert_eq!(found[3].1, 7, "lines are counted through comments");
}
