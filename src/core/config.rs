//! `fleetwave.yaml`: where clusters live, where their labels come from, extra locators.
//! Optional; by default a cluster's files live under `clusters/{cluster}`,
//! `applications/overlays/{cluster}` or `infrastructure/clusters/{cluster}`.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use crate::core::diag::{Diag, Diags};
use crate::core::source::YamlSource;
use crate::path;

pub const FILE: &str = "fleetwave.yaml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    clusters: Option<ClustersFile>,
    #[serde(default)]
    locators: LocatorsFile,
    #[serde(default)]
    forge: Option<Forge>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClustersFile {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LocatorsFile {
    #[serde(default)]
    substitute: SubstituteFile,
    #[serde(default)]
    regex: Vec<RegexFile>,
    #[serde(default = "yes")]
    builtin_regex: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SubstituteFile {
    #[serde(default)]
    kubernetes_version: Vec<String>,
    #[serde(default)]
    gitops_base: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexFile {
    name: String,
    files: String,
    pattern: String,
    target: TargetKind,
}

/// What a located value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum TargetKind {
    KubernetesVersion,
    GitopsBase,
}

/// The forge that hosts the fleet repo (used by the rollout engine).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Forge {
    Github {
        #[serde(default)]
        owner: Option<String>,
        #[serde(default)]
        repo: Option<String>,
        #[serde(default, rename = "baseUrl")]
        base_url: Option<String>,
    },
    Local {},
}

#[derive(Debug, Clone)]
pub struct RegexLocator {
    pub name: String,
    pub files: globset::GlobMatcher,
    pub pattern: Regex,
    pub target: TargetKind,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub paths: Vec<String>,
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
    pub substitute_kube: Vec<String>,
    pub substitute_base: Vec<String>,
    pub regex: Vec<RegexLocator>,
    pub forge: Option<Forge>,
}

pub const DEFAULT_PATHS: &[&str] = &[
    "clusters/{cluster}",
    "applications/overlays/{cluster}",
    "infrastructure/clusters/{cluster}",
];

/// Built-in regex locators for Terraform.
const BUILTIN_REGEX: &[(&str, &str, &str, TargetKind)] = &[
    (
        "terraform-kubernetes-version",
        "**/*.tf",
        r#"kubernetes_version\s*=\s*"(?P<value>[^"]+)""#,
        TargetKind::KubernetesVersion,
    ),
    (
        "terraform-module-source",
        "**/*.tf",
        r#"source\s*=\s*"(?P<url>[^"?]+)\?(?:[^"]*&)?ref=(?P<value>[^"&]+)""#,
        TargetKind::GitopsBase,
    ),
];

/// Compiled once: building regex automata costs more than a whole small plan.
static BUILTIN: std::sync::LazyLock<Vec<RegexLocator>> = std::sync::LazyLock::new(|| {
    BUILTIN_REGEX
        .iter()
        .map(|(name, files, pattern, target)| RegexLocator {
            name: name.to_string(),
            files: globset::Glob::new(files)
                .expect("builtin glob")
                .compile_matcher(),
            pattern: Regex::new(pattern).expect("builtin regex"),
            target: *target,
        })
        .collect()
});

impl Default for Config {
    fn default() -> Self {
        Config::build(ConfigFile::default(), None)
            .unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

impl Config {
    /// Read `fleetwave.yaml` from the repo root when present.
    pub fn load(tree: &dyn crate::core::tree::FileTree) -> Result<Config, Diags> {
        let text = match tree.read(Path::new(FILE)).map(String::from_utf8) {
            Ok(Ok(t)) => t,
            Ok(Err(_)) => {
                return Err(Diag::whole_file(Path::new(FILE), "file is not UTF-8").into());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(Diag::whole_file(Path::new(FILE), format!("cannot read: {e}")).into());
            }
        };
        Self::parse(Path::new(FILE), text)
    }

    pub fn parse(shown: &Path, text: String) -> Result<Config, Diags> {
        let src = YamlSource::parse(shown, text)?;
        if src.doc.root.is_none() {
            return Ok(Config::default());
        }
        let file: ConfigFile = src.typed("fleet config")?;
        Config::build(file, Some(&src))
    }

    fn build(f: ConfigFile, src: Option<&YamlSource>) -> Result<Config, Diags> {
        let mut errs = Vec::new();
        let clusters = f.clusters.unwrap_or_default();
        let paths = if clusters.paths.is_empty() {
            DEFAULT_PATHS.iter().map(|s| s.to_string()).collect()
        } else {
            clusters.paths
        };
        for (i, p) in paths.iter().enumerate() {
            if p.matches("{cluster}").count() != 1
                || p.starts_with('/')
                || p.split('/').any(|s| s == "..")
            {
                if let Some(src) = src {
                    errs.push(src.at(&path!["clusters", "paths", i], format!("cluster path {p:?} must be relative and hold `{{cluster}}` exactly once"))
                        .hint("e.g. `infrastructure/clusters/{cluster}` or `hub/{cluster}.yaml`"));
                }
            }
        }
        let mut regex = Vec::new();
        if f.locators.builtin_regex {
            regex.extend(BUILTIN.iter().cloned());
        }
        for (i, r) in f.locators.regex.into_iter().enumerate() {
            let at = |k: &str| path!["locators", "regex", i, k];
            let glob = globset::Glob::new(&r.files);
            let re = Regex::new(&r.pattern);
            match (glob, re) {
                (Ok(g), Ok(re)) if re.capture_names().any(|n| n == Some("value")) => {
                    regex.push(RegexLocator {
                        name: r.name,
                        files: g.compile_matcher(),
                        pattern: re,
                        target: r.target,
                    })
                }
                (Err(e), _) => errs.extend(src.map(|s| {
                    s.at(&at("files"), format!("bad glob: {e}"))
                        .hint("use globs like `infrastructure/**/*.tf`")
                })),
                (_, Err(e)) => errs.extend(src.map(|s| {
                    s.at(&at("pattern"), format!("bad regex: {e}"))
                        .hint("see the regex crate's syntax")
                })),
                _ => errs.extend(src.map(|s| {
                    s.at(&at("pattern"), "the pattern has no `(?P<value>...)` group")
                        .hint("name the replaced part `(?P<value>...)`")
                })),
            }
        }
        if !errs.is_empty() {
            return Err(Diags(errs));
        }
        Ok(Config {
            paths,
            labels: clusters.labels,
            substitute_kube: f.locators.substitute.kubernetes_version,
            substitute_base: f.locators.substitute.gitops_base,
            regex,
            forge: f.forge,
        })
    }
}
