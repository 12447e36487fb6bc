//! The JSON Schema of `FleetUpgradePlan` (schema/fleetupgradeplan.schema.json): generated from
//! the plan types, committed, and checked against every plan under fixtures/.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SCHEMA: &str = "schema/fleetupgradeplan.schema.json";
const REGENERATE: &str =
    "cargo run --locked --example plan_schema > schema/fleetupgradeplan.schema.json";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What `examples/plan_schema.rs` prints.
fn generated() -> String {
    serde_json::to_string_pretty(&fleetwave::core::plan::json_schema()).unwrap() + "\n"
}

#[test]
fn the_committed_schema_is_the_one_the_types_generate() {
    let committed = std::fs::read_to_string(root().join(SCHEMA))
        .unwrap_or_else(|e| panic!("{SCHEMA}: {e}; create it with `{REGENERATE}`"));
    assert!(
        committed == generated(),
        "{SCHEMA} differs from the plan types: regenerate it with\n  {REGENERATE}\nand commit it"
    );
    let v: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(v["title"], "FleetUpgradePlan");
    assert_eq!(
        v["properties"]["apiVersion"]["const"],
        fleetwave::core::plan::API_VERSION
    );
    assert_eq!(
        v["properties"]["kind"]["const"],
        fleetwave::core::plan::KIND
    );
    assert_eq!(v["additionalProperties"], false);
}

fn plan_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            plan_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            let text = std::fs::read(&p).unwrap();
            let text = String::from_utf8_lossy(&text);
            // Plans, and the bad-input corpus's plan.yaml files (some of them are not even
            // mappings, or empty).
            if text.contains("FleetUpgradePlan") || p.file_name().is_some_and(|n| n == "plan.yaml")
            {
                out.push(p);
            }
        }
    }
}

/// The bad plans the schema itself rejects: unknown fields (the types deny them), a wrong
/// `apiVersion` or `kind`, an unknown gate type, a list or nothing where the plan belongs.
/// Every other bad plan is schema-valid and refused by `fleetwave plan`'s own validation
/// (versions, durations, selectors, skew, …) or by its YAML reader.
const SCHEMA_REJECTS: &[&str] = &[
    "05-unknown-top-level-field",
    "06-unknown-spec-field-typo",
    "07-unknown-wave-field",
    "08-unknown-validation-field",
    "10-wrong-kind",
    "11-wrong-api-version",
    "33-unknown-gate-type",
    "35-plan-is-a-list",
    "36-empty-plan",
];

/// Not YAML a schema can judge (serde_yaml refuses them, as fleetwave's reader does). A
/// duplicate key (39) reads as one key here, so only fleetwave's reader refuses it.
const NOT_YAML: &[&str] = &["01-plan-syntax-unclosed-flow", "34-alias-bomb"];

#[test]
fn every_plan_under_fixtures_is_checked_and_the_bad_ones_the_schema_can_see_fail() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(SCHEMA)).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let mut files = Vec::new();
    plan_files(&root().join("fixtures"), &mut files);
    files.sort();
    let mut outcome: BTreeMap<String, &str> = BTreeMap::new();
    let mut good = 0;
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        let case = f
            .parent()
            .and_then(|p| p.file_name())
            .unwrap()
            .to_string_lossy()
            .to_string();
        let bad = rel.starts_with("fixtures/bad/");
        let text = std::fs::read_to_string(f).unwrap();
        let doc: serde_json::Value = match serde_yaml::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                assert!(
                    bad && NOT_YAML.contains(&case.as_str()),
                    "{rel}: not readable YAML ({e})"
                );
                outcome.insert(case, "not YAML");
                continue;
            }
        };
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if !bad {
            assert!(
                errors.is_empty(),
                "{rel} must be valid:\n{}",
                errors.join("\n")
            );
            good += 1;
        } else if SCHEMA_REJECTS.contains(&case.as_str()) {
            assert!(!errors.is_empty(), "{rel}: the schema must reject it");
            outcome.insert(case, "rejected by the schema");
        } else {
            assert!(
                errors.is_empty(),
                "{rel} is schema-valid (bad only to `fleetwave plan`), but:\n{}\n(add it to SCHEMA_REJECTS if the schema should reject it)",
                errors.join("\n")
            );
            outcome.insert(case, "schema-valid, refused by `fleetwave plan`");
        }
    }
    assert!(good >= 4, "the example plans under fixtures/plans");
    for name in SCHEMA_REJECTS {
        assert!(outcome.contains_key(*name), "fixtures/bad/{name} not found");
    }
    for name in NOT_YAML {
        assert_eq!(
            outcome.get(*name).copied(),
            Some("not YAML"),
            "fixtures/bad/{name}"
        );
    }
    for (case, what) in &outcome {
        eprintln!("fixtures/bad/{case}: {what}");
    }
}

#[test]
fn readme_tells_editors_where_the_schema_is() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("# yaml-language-server: $schema=")
        })
        .expect("a yaml-language-server modeline in README.md");
    assert!(line.trim_end().ends_with(SCHEMA), "{line}");
}
