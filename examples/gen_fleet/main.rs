//! Writes the synthetic benchmark fleet: `gen_fleet --out DIR [--clusters N]`.
//!
//! Kept out of the shipped binary: only the benchmarks (`benches/plan.sh`, `benches/hub_status.rs`)
//! need it.

mod generate;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut out: Option<PathBuf> = None;
    let mut clusters = 10_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--out", Some(v)) => out = Some(PathBuf::from(v)),
            ("--clusters", Some(v)) => match v.parse() {
                Ok(n) => clusters = n,
                Err(_) => return usage(&format!("--clusters wants a number, got {v:?}")),
            },
            _ => return usage(&format!("unexpected argument {a:?}")),
        }
    }
    let Some(out) = out else {
        return usage("--out DIR is required");
    };
    match generate::generate_fleet(&out, clusters) {
        Ok(s) => {
            println!(
                "{} clusters, {} files, {} bytes in {}",
                s.clusters,
                s.files,
                s.bytes,
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", out.display());
            ExitCode::from(2)
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("error: {why}\nusage: gen_fleet --out DIR [--clusters N]");
    ExitCode::from(2)
}
