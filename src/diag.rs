//! Diagnostics: an input problem located at file:line:column, with what to do about it.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::yaml::{self, LineIndex};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diag {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diag {
    pub fn new(file: &Path, (line, column): (usize, usize), message: impl Into<String>) -> Self {
        Diag {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A YAML syntax error in `text`, read from `file`.
    pub fn syntax(file: &Path, text: &str, e: &yaml::SyntaxError) -> Self {
        let pos = LineIndex::new(text).position(text, e.offset);
        Diag::new(file, pos, format!("YAML syntax error: {}", e.message))
            .hint("fix the YAML syntax at this position (tabs cannot indent YAML; check brackets and quotes)")
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

/// Several diagnostics reported together.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Diags(pub Vec<Diag>);

impl fmt::Display for Diags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {d}")?;
        }
        Ok(())
    }
}

impl From<Diag> for Diags {
    fn from(d: Diag) -> Self {
        Diags(vec![d])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A refusal: the plan cannot be applied as written.
    Error,
    Warning,
    Info,
}

/// Something the user should know about the fleet or the plan, not tied to a parse error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub cluster: Option<String>,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl Finding {
    pub fn new(severity: Severity, cluster: Option<&str>, message: impl Into<String>) -> Self {
        Finding {
            severity,
            cluster: cluster.map(str::to_string),
            file: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, file: &Path, (line, column): (usize, usize)) -> Self {
        self.file = Some(file.to_path_buf());
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}
