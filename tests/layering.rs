//! The module graph points one way (DESIGN.md, "Layering"; the README's "Layout"): each
//! top-level module of `src/` uses only modules of the layers above its own, or of its
//! own layer without a cycle. And the library never exits the process or prints: only
//! the binary (`src/main.rs`) does.
//!
//! The edges are read from the source: every `crate::<module>` path, and every name of a
//! `use crate::{..}` list, resolved through the re-exports of `src/lib.rs`. Test modules
//! (`#[cfg(test)] mod tests`) are left out: a test may use what it tests from anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, the most basic first. A module may use the modules of earlier layers, and
/// those of its own layer as long as no cycle forms. `bridge` connects components, so it
/// sits beside the last one it reaches (the WebSocketService, with that feature).
const LAYERS: &[&[&str]] = &[
    &["util"],
    &[
        "priority", "pattern", "config", "error", "item", "typed", "event", "message",
    ],
    &["core"],
    &["metrics", "event_bus", "message_queue"],
    &["access", "reply"],
    &["websocket"],
    &["http", "bridge", "client", "cluster"],
    &["demo", "serve", "bench"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer of tests/layering.rs"))
}

/// The `.rs` files of `src/`, but those of test-only modules (`#[cfg(test)] mod m;`, which
/// may use and print what they like).
fn library_files(src: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut test_only: Vec<PathBuf> = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        // Children of `a.rs` live in `a/`; those of `mod.rs`, `lib.rs`, `main.rs` beside it.
        let stem = file.file_stem().expect("a name").to_string_lossy();
        let dir = match &*stem {
            "mod" | "lib" | "main" => file.parent().expect("a parent").to_path_buf(),
            _ => file.with_extension(""),
        };
        let mut rest = text.as_str();
        while let Some(at) = rest.find("#[cfg(test)]") {
            rest = &rest[at + "#[cfg(test)]".len()..];
            let item = rest.trim_start();
            let item = item
                .strip_prefix("pub(crate) ")
                .or_else(|| item.strip_prefix("pub "))
                .unwrap_or(item);
            if let Some(decl) = item.strip_prefix("mod ") {
                if let Some((name, _)) = decl.split_once(';').filter(|(n, _)| !n.contains('{')) {
                    test_only.push(dir.join(format!("{}.rs", name.trim())));
                    test_only.push(dir.join(name.trim()));
                }
            }
        }
    }
    files.retain(|f| !test_only.iter().any(|t| f == t || f.starts_with(t)));
    files
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments, string literals' contents and `#[cfg(test)]` modules.
fn code_of(source: &str) -> String {
    let mut code = String::with_capacity(source.len());
    let chars: Vec<char> = source.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let previous = i.checked_sub(1).map(|p| chars[p]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        // `br"..."` is a raw string too: its `b` is not the end of an identifier.
        let raw_start = previous.is_none_or(|p| !is_ident(p))
            || (previous == Some('b')
                && i.checked_sub(2)
                    .map(|p| chars[p])
                    .is_none_or(|p| !is_ident(p)));
        if c == 'r' && raw_start && matches!(next, Some('#' | '"')) {
            // A raw string: r"..", r#".."#, ...
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(i + 1 + hashes) == Some(&'"') {
                let close: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let body: String = chars[i + 2 + hashes..].iter().collect();
                let len = body.find(&close).map_or(body.len(), |e| e + close.len());
                i += 2 + hashes + body[..len].chars().count();
                code.push_str("\"\"");
                continue;
            }
        }
        if c == '\'' {
            // A char literal ('"', '\'', '\n'), or else a lifetime.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                continue;
            }
            if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                continue;
            }
        }
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            code.push_str("\"\"");
            continue;
        }
        code.push(c);
        i += 1;
    }
    // Cut each `#[cfg(test)]` item: from the attribute to the end of its braces.
    let mut out = String::with_capacity(code.len());
    let mut rest = code.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find(['{', ';']) else {
            rest = "";
            break;
        };
        if after.as_bytes()[open] == b';' {
            rest = &after[open + 1..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, b) in after.bytes().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first segment of every `crate::` path, and the names of `crate::{..}` lists.
fn crate_names(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back().unwrap_or(' ');
        if is_ident(before) || before == '$' {
            continue; // part of a longer name, or a macro's `$crate::`
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            // Top-level names of the list (nested groups name their parent first).
            let mut depth = 0;
            let mut token = String::new();
            let mut at_start = true;
            for c in list.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => at_start = true,
                    c if depth == 0 && at_start && is_ident(c) => token.push(c),
                    _ if depth == 0 && at_start && !token.is_empty() => {
                        names.insert(std::mem::take(&mut token));
                        at_start = false;
                    }
                    _ => {}
                }
            }
            if !token.is_empty() {
                names.insert(token);
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// `name → module` for every `pub use module::{..}` / `pub use module::Name` of lib.rs.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for statement in lib.split(';') {
        let mut statement = statement.trim();
        // `#[cfg(feature = "..")] pub use ..`: the attribute does not change the path.
        while let Some(rest) = statement.strip_prefix("#[") {
            statement = rest.split_once(']').map_or("", |(_, after)| after).trim();
        }
        let Some(path) = statement.strip_prefix("pub use ") else {
            continue;
        };
        let path: String = path.chars().filter(|c| !c.is_whitespace()).collect();
        let module = path.split("::").next().unwrap_or_default().to_owned();
        let names = match path.find('{') {
            Some(open) => path[open + 1..path.len() - 1].to_owned(),
            None => path.rsplit("::").next().unwrap_or_default().to_owned(),
        };
        for name in names.split(',') {
            let name = name.rsplit("::").next().unwrap_or_default();
            if !name.is_empty() {
                map.insert(name.to_owned(), module.clone());
            }
        }
    }
    map
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = library_files(&src);
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let reexported = reexports(&code_of(&lib));
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(file).expect("readable"));
        let uses = edges.entry(module.clone()).or_default();
        for name in crate_names(&code) {
            let target = reexported.get(&name).cloned().unwrap_or(name);
            // Every name must lead to a module of the table: an unknown one (a module left
            // out of LAYERS, a re-export this reader does not see) fails the test instead
            // of hiding an edge.
            layer_of(&target);
            if target != module {
                uses.insert(target);
            }
        }
    }
    for module in edges.keys() {
        layer_of(module); // every module of src/ is in the table
    }
    edges
}

#[test]
fn modules_use_only_the_layers_above_and_form_no_cycle() {
    let edges = graph();
    let mut wrong = Vec::new();
    for (module, uses) in &edges {
        for target in uses {
            if layer_of(target) > layer_of(module) {
                wrong.push(format!("{module} → {target}"));
            }
        }
    }
    assert!(wrong.is_empty(), "edges against the layers: {wrong:?}");
    // No cycle within a layer: depth-first search for a back edge.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(1) => {
                let from = path.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for module in edges.keys() {
        let cycle = visit(module, &edges, &mut state, &mut Vec::new());
        assert_eq!(cycle, None, "a cycle in the module graph");
    }
    // The graph is the one this test was written against, not an empty reading of it.
    assert!(edges["core"].contains("item"), "{edges:?}");
    assert!(edges["event_bus"].contains("core"), "{edges:?}");
}

#[test]
fn the_reader_finds_edges_and_skips_comments_and_tests() {
    let code = code_of(
        "use crate::{item::Item, Priority};\n// crate::websocket in a comment\n\
         let s = \"crate::http\"; let r = r#\"crate::bench\"#; let q = '\"';\n\
         let b = br\"crate::demo\"; /* crate::serve /* nested */ */ $crate::item::Item;\n\
         fn f<'a>() { crate::core::x(); }\n\
         #[cfg(test)]\nmod tests { use crate::serve; }\n",
    );
    let names = crate_names(&code);
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["Priority", "core", "item"]
    );
}

#[test]
fn the_library_neither_exits_nor_prints() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = library_files(&src);
    assert!(
        files.iter().any(|f| f.ends_with("core/wake.rs"))
            && !files.iter().any(|f| f.ends_with("core/wake/model.rs")),
        "test-only modules, and only they, are left out: {files:?}"
    );
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("main.rs")) {
        let code = code_of(&std::fs::read_to_string(file).expect("readable"));
        for needle in [
            "process::exit",
            "process::abort",
            "libc::exit",
            "println!",
            "eprintln!",
            "print!",
            "eprint!",
            "dbg!",
            "stdout()",
            "stderr()",
        ] {
            if code.contains(needle) {
                found.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "{found:?}");
}
