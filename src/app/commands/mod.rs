//! One file per command that works on a checkout of the fleet repository (`plan`, `apply`,
//! `clusters`, `init`, `explain`) and the `demo` command; the shared look at a repository
//! (`survey`) and how their errors are shown. The rollout commands that work on the remote
//! are in `app::ops`.

pub mod apply;
pub mod clusters;
pub mod demo;
pub mod explain;
pub mod init;
pub mod plan;
pub mod propose;
pub mod retry;
pub mod skip;
pub mod survey;
pub mod versions;

use std::process::ExitCode;

use crate::core::diag::{Diags, Finding};

/// Print an app-layer error as `error: context: cause` and exit 2.
pub(crate) fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(2)
}

/// Input errors located at file:line:column, as one error whose lines read as `plan` prints
/// them (`error: file:line:col: …` each).
pub(crate) fn diags_error(d: &Diags) -> anyhow::Error {
    let lines: Vec<String> = d.0.iter().map(|x| x.to_string()).collect();
    anyhow::anyhow!(lines.join("\nerror: "))
}

/// One finding as a line: `file:line:col: cluster c: message`, escaped for the terminal.
pub(crate) fn finding_line(f: &Finding) -> String {
    let mut s = String::new();
    if let (Some(file), Some(line)) = (&f.file, f.line) {
        s.push_str(&format!(
            "{}:{line}:{}: ",
            file.display(),
            f.column.unwrap_or(1)
        ));
    }
    if let Some(c) = &f.cluster {
        s.push_str(&format!("cluster {c}: "));
    }
    s.push_str(&f.message);
    // Cluster names, paths and values come from the repository or a cluster.
    crate::core::diag::escape(&s).into_owned()
}
