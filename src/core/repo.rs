//! The fleet repository as read: its files and the clusters they make up. The fleet module
//! discovers them; the locators read them.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One file of the fleet repo, read once. Its parse is dropped after discovery: only the
/// text (for the editor) and what the locators found in it are kept.
pub struct RepoFile {
    /// Path relative to the repo root, `/`-separated.
    pub rel: PathBuf,
    pub text: String,
    pub yaml: bool,
    /// A kustomization's `resources`/`bases`/`components` entries, kept from its parse so
    /// the pre-flights follow it without parsing it again; None for any other file.
    pub kustomize: Option<Vec<crate::core::kbases::Reference>>,
}

impl RepoFile {
    pub fn is_yaml(&self) -> bool {
        self.yaml
    }
}

#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub name: String,
    /// Indexes into `Fleet::files`, in path order.
    pub files: Vec<usize>,
    pub labels: BTreeMap<String, String>,
    /// What the cluster's objects say about its infrastructure (kinds, API groups, template
    /// names, `kubespray`), for telemetry.
    pub hints: std::collections::BTreeSet<String>,
}
