//! Which `FleetUpgradePlan`s a fleet repository holds under its plans folder (`plans/` by
//! default): files that declare the kind are plans; others are ignored. A plan that does not
//! validate is reported with file:line and never stops the others. Two files naming the same
//! plan are both refused, since a plan's state and branches are keyed by its name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::core::diag::{Diag, Diags};
use crate::core::plan::{self, Plan};
use crate::core::tree::{EntryKind, FileTree};
use crate::path;

/// The default folder plans are discovered in.
pub const DEFAULT_DIR: &str = "plans";

/// What discovery found.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Valid plans, by path.
    pub plans: Vec<(PathBuf, Plan)>,
    /// Files that declare a plan but do not validate (or collide by name), with where.
    pub invalid: Vec<Invalid>,
}

/// A file that declares a plan fleetwave cannot run.
#[derive(Debug)]
pub struct Invalid {
    pub path: PathBuf,
    /// The `metadata.name` the file gives, as far as it can be read.
    pub name: Option<String>,
    pub diags: Diags,
}

/// The `metadata.name` of a plan file, read line by line (for files that do not validate).
pub fn declared_name(text: &str) -> Option<String> {
    let mut in_metadata = false;
    for l in text.lines() {
        if !l.starts_with([' ', '\t', '#']) && !l.trim().is_empty() {
            in_metadata = l.trim_end() == "metadata:";
            continue;
        }
        if in_metadata && let Some(v) = l.trim_start().strip_prefix("name:") {
            let v = v.split(" #").next().unwrap_or("").trim();
            let v = v.trim_matches(|c| c == '"' || c == '\'');
            return (!v.is_empty()).then(|| v.to_string());
        }
    }
    None
}

impl Discovery {
    /// The plan named `name`, if a valid one was found.
    pub fn by_name(&self, name: &str) -> Option<&(PathBuf, Plan)> {
        self.plans.iter().find(|(_, p)| p.name == name)
    }
}

/// Whether `text` declares a `FleetUpgradePlan`: a top-level `kind:` line naming it. Read
/// line by line so a plan that does not parse as YAML is still recognised and reported.
pub fn declares_plan(text: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix("kind:").is_some_and(|v| {
            let v = v.split(" #").next().unwrap_or("").trim();
            v.trim_matches(|c| c == '"' || c == '\'') == plan::KIND
        })
    })
}

/// The YAML files under `dir` in `tree`, recursively, sorted; entries the tree refuses
/// (symlinks, devices) are left out: [`refused`] says which. None when `dir` is not a
/// directory.
pub fn yaml_files(tree: &dyn FileTree, dir: &Path) -> Option<Vec<PathBuf>> {
    walk(tree, dir).map(|(files, _)| files)
}

/// The entries under `dir` the tree refuses (a symlink, a device, an unreadable name), each
/// with why: not read as plans, and said so.
pub fn refused(tree: &dyn FileTree, dir: &Path) -> Vec<(PathBuf, String)> {
    walk(tree, dir).map(|(_, r)| r).unwrap_or_default()
}

type Walked = (Vec<PathBuf>, Vec<(PathBuf, String)>);

fn walk(tree: &dyn FileTree, dir: &Path) -> Option<Walked> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    let mut first = true;
    while let Some(d) = todo.pop() {
        let Some(entries) = tree.list(&d) else {
            if first {
                return None;
            }
            continue;
        };
        first = false;
        for (name, kind) in entries {
            let p = d.join(&name);
            match kind {
                EntryKind::Dir => todo.push(p),
                EntryKind::File if name.ends_with(".yaml") || name.ends_with(".yml") => out.push(p),
                EntryKind::Refused(_, why) => refused.push((p, why)),
                EntryKind::File => {}
            }
        }
    }
    out.sort();
    refused.sort();
    Some((out, refused))
}

/// Discover the plans among `files` (path, text).
pub fn discover(files: &[(PathBuf, String)]) -> Discovery {
    let mut found = Discovery::default();
    // name → (path, where its name is) of the first file naming it.
    let mut names: BTreeMap<String, (PathBuf, Diag)> = BTreeMap::new();
    let mut dupes: Vec<usize> = Vec::new();
    for (path, text) in files.iter().filter(|(_, t)| declares_plan(t)) {
        match plan::load(path, text.clone()) {
            Err(diags) => found.invalid.push(Invalid {
                path: path.clone(),
                name: declared_name(text),
                diags,
            }),
            Ok((p, src)) => {
                let at = src.at(&path!["metadata", "name"], "");
                if let Some((first, _)) = names.get(&p.name) {
                    let msg = format!(
                        "plan {:?} is also defined in {}: a plan's state and branches are keyed by its name",
                        p.name,
                        first.display()
                    );
                    let d = Diag { message: msg, ..at }
                        .hint("give each plan its own metadata.name, or delete one file");
                    found.invalid.push(Invalid {
                        path: path.clone(),
                        name: Some(p.name.clone()),
                        diags: d.into(),
                    });
                    if let Some(i) = found.plans.iter().position(|(q, _)| q == first) {
                        dupes.push(i);
                    }
                    continue;
                }
                names.insert(p.name.clone(), (path.clone(), at));
                found.plans.push((path.clone(), p));
            }
        }
    }
    dupes.sort_unstable();
    dupes.dedup();
    for i in dupes.into_iter().rev() {
        let (path, p) = found.plans.remove(i);
        let (_, at) = &names[&p.name];
        let d = Diag {
            message: format!("plan {:?} is defined in more than one file", p.name),
            ..at.clone()
        }
        .hint("give each plan its own metadata.name, or delete one file");
        found.invalid.push(Invalid {
            path,
            name: Some(p.name),
            diags: d.into(),
        });
    }
    found.invalid.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_text(name: &str) -> String {
        format!(
            "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata:\n  name: {name}\nspec:\n  targetVersion: v1.34.2\n  waves:\n    - name: all\n      clusterSelector:\n        matchLabels: {{env: prod}}\n"
        )
    }

    #[test]
    fn only_plans_are_found_and_invalid_ones_are_located() {
        let files = vec![
            (PathBuf::from("plans/a.yaml"), plan_text("a")),
            (
                PathBuf::from("plans/other.yaml"),
                "apiVersion: v1\nkind: ConfigMap\n".to_string(),
            ),
            (
                PathBuf::from("plans/bad.yaml"),
                "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata:\n  name: bad\nspec:\n  targetVersion: nope\n  waves: []\n".to_string(),
            ),
        ];
        let d = discover(&files);
        assert_eq!(d.plans.len(), 1);
        assert_eq!(d.plans[0].1.name, "a");
        assert_eq!(d.invalid.len(), 1);
        let bad = &d.invalid[0];
        assert_eq!(bad.path, Path::new("plans/bad.yaml"));
        assert_eq!(bad.name.as_deref(), Some("bad"));
        assert_eq!(bad.diags.0[0].line, 6, "{}", bad.diags);
    }

    #[test]
    fn two_files_with_one_name_are_both_refused() {
        let files = vec![
            (PathBuf::from("plans/a.yaml"), plan_text("same")),
            (PathBuf::from("plans/b.yaml"), plan_text("same")),
            (PathBuf::from("plans/c.yaml"), plan_text("c")),
        ];
        let d = discover(&files);
        assert_eq!(
            d.plans
                .iter()
                .map(|(_, p)| p.name.as_str())
                .collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(d.invalid.len(), 2);
        assert!(d.invalid.iter().all(|x| x.diags.0[0].line == 4));
    }

    #[test]
    fn refused_entries_are_named_and_nested_plans_found() {
        use crate::core::diag::Severity;
        let tree = crate::core::tree::MemTree::new(
            [
                (PathBuf::from("plans/a.yaml"), b"x".to_vec()),
                (PathBuf::from("plans/team/b.yml"), b"x".to_vec()),
                (PathBuf::from("plans/notes.txt"), b"x".to_vec()),
                (PathBuf::from("other/c.yaml"), b"x".to_vec()),
            ]
            .into_iter()
            .collect(),
        )
        .with_refused(
            [(
                PathBuf::from("plans/link.yaml"),
                EntryKind::Refused(Severity::Warning, "symlink (not followed)".into()),
            )]
            .into_iter()
            .collect(),
        );
        assert_eq!(
            yaml_files(&tree, Path::new("plans")).unwrap(),
            [
                PathBuf::from("plans/a.yaml"),
                PathBuf::from("plans/team/b.yml")
            ]
        );
        assert_eq!(
            refused(&tree, Path::new("plans")),
            [(
                PathBuf::from("plans/link.yaml"),
                "symlink (not followed)".to_string()
            )]
        );
        assert!(yaml_files(&tree, Path::new("nowhere")).is_none());
    }

    #[test]
    fn kind_is_read_from_a_top_level_line_only() {
        assert!(declares_plan("kind: FleetUpgradePlan\n"));
        assert!(declares_plan("kind: \"FleetUpgradePlan\" # yes\n"));
        assert!(!declares_plan("spec:\n  kind: FleetUpgradePlan\n"));
        assert!(!declares_plan("kind: FleetUpgradePlanX\n"));
    }
}
