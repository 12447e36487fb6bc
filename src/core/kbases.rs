//! Local kustomize bases: the files outside a cluster's own folders that its kustomizations
//! pull in (`resources`, `bases`, `components`, followed recursively), so a pre-flight check
//! sees every manifest Flux will apply for the cluster, not only those in its folders.
//! Remote bases (URLs, `?ref=`) are not followed; a path that leaves the repository is
//! reported, never read.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use crate::core::diag::{Finding, Severity};
use crate::core::tree::{EntryKind, FileTree};
use crate::core::yaml;

/// The names kustomize reads a kustomization from, in its order of preference.
pub const KUSTOMIZATION_FILES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The fields whose entries name other files or directories to build.
const REFERENCES: &[&str] = &["resources", "bases", "components"];

pub fn is_kustomization(rel: &Path) -> bool {
    rel.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| KUSTOMIZATION_FILES.contains(&n))
}

/// What following a set of kustomizations found.
#[derive(Debug, Default)]
pub struct Followed {
    /// Files reached (kustomizations excluded), in path order.
    pub files: BTreeSet<PathBuf>,
    /// References that could not be followed safely (outside the repository).
    pub findings: Vec<Finding>,
}

/// Follow the local references of the kustomizations `from` (paths relative to the repository
/// root), memoised in `seen` across calls so bases shared by many clusters are read once.
pub fn follow(tree: &dyn FileTree, from: &[PathBuf], seen: &mut Walk) -> Followed {
    let mut out = Followed::default();
    for k in from {
        seen.visit(tree, k, &mut out);
    }
    out
}

/// Memo of kustomizations already read: each one's reached files and findings.
#[derive(Default)]
pub struct Walk {
    done: HashMap<PathBuf, (Vec<PathBuf>, Vec<Finding>)>,
}

impl Walk {
    /// Record kustomizations from references already parsed (see [`references`]), so
    /// following them reads nothing. They are resolved in parallel.
    pub fn known<'a>(&mut self, tree: &dyn FileTree, ks: &[(&'a Path, &'a [Reference])]) {
        use rayon::prelude::*;
        let fresh: Vec<_> = ks
            .par_iter()
            .filter(|(k, _)| !self.done.contains_key(*k))
            .map(|&(k, refs)| (k.to_path_buf(), resolve_all(tree, k, refs)))
            .collect();
        self.done.extend(fresh);
    }

    fn visit(&mut self, tree: &dyn FileTree, k: &Path, out: &mut Followed) {
        let mut stack = vec![k.to_path_buf()];
        let mut here: HashSet<PathBuf> = HashSet::new();
        while let Some(k) = stack.pop() {
            if !here.insert(k.clone()) {
                continue; // a cycle, or reached twice
            }
            if !self.done.contains_key(&k) {
                let read = read_one(tree, &k);
                self.done.insert(k.clone(), read);
            }
            let (refs, findings) = &self.done[&k];
            out.findings.extend(findings.iter().cloned());
            for r in refs {
                if is_kustomization(r) {
                    stack.push(r.clone());
                } else {
                    out.files.insert(r.clone());
                }
            }
        }
    }
}

/// One entry of a kustomization's `resources`, `bases` or `components`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub field: &'static str,
    pub entry: String,
}

/// The local reference entries of a parsed kustomization, in document order (remote ones
/// are never followed). Discovery keeps them for the fleet's own kustomizations, so
/// following those parses nothing again.
pub fn references(docs: &[yaml::Doc]) -> Vec<Reference> {
    let mut out = Vec::new();
    for doc in docs {
        for field in REFERENCES {
            let Some(list) = doc.root_path(&[field]) else {
                continue;
            };
            out.extend(
                doc.items(list)
                    .iter()
                    .filter_map(|&n| doc.str(n))
                    .filter(|entry| !is_remote(entry))
                    .map(|entry| Reference {
                        field,
                        entry: entry.to_string(),
                    }),
            );
        }
    }
    out
}

/// The local references of one kustomization file, resolved to files (a directory becomes
/// its kustomization file).
fn read_one(tree: &dyn FileTree, k: &Path) -> (Vec<PathBuf>, Vec<Finding>) {
    let Some(text) = tree.read(k).ok().and_then(|b| String::from_utf8(b).ok()) else {
        return (Vec::new(), Vec::new());
    };
    let Ok(docs) = yaml::parse(&text) else {
        return (Vec::new(), Vec::new()); // discovery reports syntax errors
    };
    resolve_all(tree, k, &references(&docs))
}

/// `refs` of the kustomization `k` as files, and a finding for each that leaves the
/// repository.
fn resolve_all(tree: &dyn FileTree, k: &Path, refs: &[Reference]) -> (Vec<PathBuf>, Vec<Finding>) {
    let dir = k.parent().unwrap_or(Path::new(""));
    let mut files = Vec::new();
    let mut findings = Vec::new();
    for Reference { field, entry } in refs {
        match resolve(dir, entry) {
            Some(p) => files.extend(target(tree, &p)),
            None => findings.push(Finding::new(
                Severity::Warning,
                None,
                format!(
                    "{}: {field} entry {entry:?} leaves the repository; not read, so its \
                     manifests are not checked",
                    k.display()
                ),
            )),
        }
    }
    (files, findings)
}

fn is_remote(entry: &str) -> bool {
    entry.contains("://")
        || entry.contains("?ref=")
        || entry.starts_with("git@")
        || entry.starts_with("github.com/")
}

/// `dir/entry` with `.` and `..` applied; None when it leaves the repository.
fn resolve(dir: &Path, entry: &str) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in dir.components().chain(Path::new(entry).components()) {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// A reference as files: a file as itself, a directory as its kustomization file; nothing
/// for what is absent or refused by the path policy.
fn target(tree: &dyn FileTree, p: &Path) -> Option<PathBuf> {
    match tree.kind(p)? {
        EntryKind::File => Some(p.to_path_buf()),
        EntryKind::Dir => KUSTOMIZATION_FILES
            .iter()
            .map(|n| p.join(n))
            .find(|k| matches!(tree.kind(k), Some(EntryKind::File))),
        EntryKind::Refused(..) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_lexically_inside_the_repository() {
        let d = Path::new("clusters/a");
        assert_eq!(
            resolve(d, "../../bases/app"),
            Some(PathBuf::from("bases/app"))
        );
        assert_eq!(
            resolve(d, "./x.yaml"),
            Some(PathBuf::from("clusters/a/x.yaml"))
        );
        assert_eq!(resolve(d, "../../../etc"), None);
        assert_eq!(resolve(d, "/etc/passwd"), None);
        assert!(is_remote("https://github.com/org/repo//base?ref=v1"));
        assert!(is_remote("github.com/org/repo/base?ref=v1"));
        assert!(!is_remote("../base"));
    }
}
