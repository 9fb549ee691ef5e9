//! The layer rules of `docs/architecture.md`, checked over the source: one crate's modules may
//! all name each other, so the compiler cannot hold them within `soho-portal`; these tests do.

use std::path::{Path, PathBuf};

/// The workspace's root (this crate's manifest directory).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, with its text, in a stable order.
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                let name = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
                found.push((name, text));
            }
        }
    }
    found.sort();
    found
}

/// The code of a file without its unit tests (they may build values any way they like).
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |at| &text[..at])
}

/// The public functions (`pub` and `pub(crate)`) of `text` whose parameters name a bare `Uuid`.
fn bare_uuid_functions(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let code = without_tests(text);
    for (at, _) in code.match_indices("fn ") {
        let before = code[..at].trim_end();
        let before = before.strip_suffix("async").map_or(before, str::trim_end);
        if !(before.ends_with("pub") || before.ends_with("pub(crate)")) {
            continue;
        }
        let Some(open) = code[at..].find('(').map(|o| at + o) else { continue };
        let mut depth = 0;
        let mut close = open;
        for (offset, c) in code[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + offset;
                        break;
                    }
                }
                _ => {}
            }
        }
        let parameters = &code[open..=close];
        let names_uuid = parameters
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|word| word == "Uuid");
        if names_uuid {
            found.push(code[at..open].trim_start_matches("fn ").to_string());
        }
    }
    found
}

#[test]
fn nothing_outside_the_http_layer_imports_from_it() {
    // The composition root builds the router; the command line prints the OpenAPI document.
    let allowed = ["src/app.rs", "src/cli.rs"];
    let offenders: Vec<String> = sources(&root().join("src"))
        .into_iter()
        .filter(|(name, _)| !name.starts_with("src/http/") && !allowed.contains(&name.as_str()))
        .filter(|(name, _)| name != "src/layers.rs")
        .filter(|(_, text)| text.contains("crate::http") || text.contains("ApiError"))
        .map(|(name, _)| name)
        .collect();
    assert!(offenders.is_empty(), "these modules reach into src/http/: {offenders:?}");
}

#[test]
fn ids_cross_public_functions_as_newtypes() {
    // `copy.rs` encodes COPY columns: there a uuid is the column's type, not an id.
    let dirs = ["src", "aggregates/src", "projections/src"];
    let offenders: Vec<String> = dirs
        .iter()
        .flat_map(|dir| sources(&root().join(dir)))
        .filter(|(name, _)| !name.starts_with("src/http/") && !name.ends_with("/copy.rs"))
        .filter(|(name, _)| name != "src/layers.rs")
        .flat_map(|(name, text)| {
            bare_uuid_functions(&text).into_iter().map(move |f| format!("{name}: {f}"))
        })
        .collect();
    assert!(offenders.is_empty(), "public functions taking a bare Uuid: {offenders:?}");
}

#[test]
fn the_dev_tools_depend_on_nothing_of_the_portal() {
    for tool in ["tools/crm-simulator", "tools/embedded-postgres"] {
        let manifest = std::fs::read_to_string(root().join(tool).join("Cargo.toml"))
            .expect("the tool's manifest");
        assert!(!manifest.contains("soho-portal"), "{tool} depends on the portal");
    }
}

#[test]
fn the_checks_find_what_they_look_for() {
    // The scanner itself: a check that cannot fail would prove nothing.
    let text = "pub async fn a(id: uuid::Uuid) {}\npub(crate) fn b(\n  x: Option<Uuid>,\n) {}\n\
                fn private(id: Uuid) {}\npub fn c(id: LeadId) {}\npub fn d(uuids: Vec<u8>) {}";
    assert_eq!(bare_uuid_functions(text), vec!["a".to_string(), "b".to_string()]);
    let tested = "pub fn e(id: LeadId) {}\n#[cfg(test)]\nmod tests { pub fn f(id: Uuid) {} }";
    assert!(bare_uuid_functions(tested).is_empty());
}
