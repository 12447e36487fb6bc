//! `fleetwave versions`: the Kubernetes release catalog that plans take their hops from, and
//! `versions update`, which writes a fresh one from the endoflife.date API (or a catalog file
//! served over HTTP) for `spec.versionCatalog`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};

use super::fail;
use crate::adapters::http_get;
use crate::app::args::Output;
use crate::core::catalog::{Catalog, Release};

/// Where `versions update` reads by default: the endoflife.date product API for Kubernetes.
pub const DEFAULT_SOURCE: &str = "https://endoflife.date/api/kubernetes.json";
const MAX_ANSWER: usize = 4 << 20;

/// `fleetwave versions [--catalog FILE] [--output json]`.
pub fn list(
    out: &mut dyn Write,
    catalog: Option<&Path>,
    output: Output,
    now: DateTime<Utc>,
) -> ExitCode {
    match load(catalog).and_then(|c| show(out, &c, output, now)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn load(path: Option<&Path>) -> anyhow::Result<Catalog> {
    let Some(p) = path else {
        return Ok(Catalog::embedded().clone());
    };
    let text =
        std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
    Ok(Catalog::parse(p, &text)?)
}

/// `supported`, `end of life`, or `end of life unknown`, on the day `now`.
fn status(r: &Release, now: DateTime<Utc>) -> &'static str {
    let eol = r
        .end_of_life
        .as_deref()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    match eol {
        Some(d) if now.date_naive() > d => "end of life",
        Some(_) => "supported",
        None => "end of life unknown",
    }
}

fn show(
    out: &mut dyn Write,
    c: &Catalog,
    output: Output,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if output == Output::Json {
        let releases: Vec<serde_json::Value> = c
            .releases()
            .map(|r| {
                serde_json::json!({
                    "minor": format!("1.{}", r.minor),
                    "latest": format!("1.{}.{}", r.minor, r.latest),
                    "released": r.released,
                    "endOfLife": r.end_of_life,
                    "status": status(r, now),
                })
            })
            .collect();
        let doc = serde_json::json!({"origin": c.origin, "asOf": c.as_of, "releases": releases});
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "Kubernetes releases ({}, as of {}):",
        c.origin, c.as_of
    )?;
    for r in c.releases() {
        writeln!(
            out,
            "  1.{:<3} latest 1.{}.{:<4} released {:<10}  end of life {:<10}  {}",
            r.minor,
            r.minor,
            r.latest,
            r.released.as_deref().unwrap_or("?"),
            r.end_of_life.as_deref().unwrap_or("?"),
            status(r, now)
        )?;
    }
    Ok(())
}

/// `fleetwave versions update --out FILE [--from URL]`: fetch, check, write all or nothing.
pub fn update(out: &mut dyn Write, from: &str, dest: &Path, now: DateTime<Utc>) -> ExitCode {
    match fetch_and_write(from, dest, now) {
        Ok(c) => {
            let newest = c
                .releases()
                .last()
                .map(|r| format!("1.{}.{}", r.minor, r.latest));
            let _ = writeln!(
                out,
                "wrote {} ({} minors, newest {}) from {from}; name it in a plan with `versionCatalog: {}`",
                dest.display(),
                c.releases().count(),
                newest.unwrap_or_default(),
                dest.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fetch_and_write(from: &str, dest: &Path, now: DateTime<Utc>) -> anyhow::Result<Catalog> {
    if let Ok(m) = std::fs::symlink_metadata(dest)
        && !m.file_type().is_file()
    {
        bail!(
            "{}: exists and is not a regular file; refusing to replace it",
            dest.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = rt.block_on(http_get::get_text(
        from,
        Duration::from_secs(30),
        MAX_ANSWER,
    ))?;
    let as_of = now.format("%Y-%m-%d").to_string();
    // The endoflife.date API answers JSON; anything else must be a catalog file.
    let catalog = if body.trim_start().starts_with('[') {
        Catalog::from_endoflife(from, &body, &as_of)?
    } else {
        Catalog::parse(Path::new(from), &body)?
    };
    let text = catalog.to_yaml(from);
    Catalog::parse(dest, &text).context("the catalog to write does not read back")?;
    let tmp = dest.with_extension("yaml.tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, dest).with_context(|| format!("{}: cannot write", dest.display()))?;
    Ok(catalog)
}
