//! The floors of ARCHITECTURE.md hold: `src/core` names no I/O crate and nothing above it;
//! `src/adapters` names nothing of `src/app`.

use std::path::{Path, PathBuf};

/// Names of the app floor (also through their short names re-exported at the crate root):
/// neither core nor adapters may contain them.
const APP: &[&str] = &[
    "crate::app",
    "crate::cli::",
    "crate::ops::",
    "crate::serve::",
    "crate::demo::",
    "crate::actions::",
    "crate::reconcile::",
];

/// What else a core file must not contain: the crates that do I/O, and the adapters floor.
const IO_AND_ADAPTERS: &[&str] = &[
    "tokio",
    "reqwest",
    "octocrab",
    "kube::",
    "git2",
    "axum",
    "crate::adapters",
    "crate::git::",
    "crate::forge::",
    "crate::disk::",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `file:line: name` where a file under `floor` names one of `names`.
fn offences(floor: &str, names: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(floor);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(!files.is_empty(), "no files under {}", root.display());
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        for (i, line) in text.lines().enumerate() {
            for name in names {
                if line.contains(name) {
                    out.push(format!("{}:{}: {name}", f.display(), i + 1));
                }
            }
        }
    }
    out
}

#[test]
fn core_does_no_io_and_imports_nothing_above_it() {
    let mut found = offences("core", IO_AND_ADAPTERS);
    found.extend(offences("core", APP));
    assert!(found.is_empty(), "core names:\n{}", found.join("\n"));
}

#[test]
fn adapters_import_nothing_of_the_app() {
    let found = offences("adapters", APP);
    assert!(found.is_empty(), "adapters name:\n{}", found.join("\n"));
}
