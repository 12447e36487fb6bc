//! Diagnostics: an input problem located at file:line:column, with what to do about it.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::core::yaml::{self, LineIndex};

/// `s` with control characters (ANSI escape sequences among them) written as `\u{1b}`, so
/// text from a repository or a cluster cannot drive the terminal or a rendered page. Line
/// breaks and tabs are kept.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// How long an echoed value may be in a message before it is cut.
pub const ECHO_LIMIT: usize = 200;

/// `value` quoted for a message, cut after [`ECHO_LIMIT`] characters with its size:
/// `"aaaa…" … (20971520 bytes)`.
pub fn echo(value: &str) -> String {
    if value.chars().count() <= ECHO_LIMIT {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(ECHO_LIMIT).collect();
    format!("{head:?}… ({} bytes)", value.len())
}

/// A whole message kept to a readable size: a long one keeps its start and its end.
fn clip_message(m: String) -> String {
    const MAX: usize = 4 * ECHO_LIMIT;
    if m.chars().count() <= MAX {
        return m;
    }
    let head: String = m.chars().take(MAX / 2).collect();
    let tail: Vec<char> = m.chars().rev().take(MAX / 4).collect();
    let tail: String = tail.into_iter().rev().collect();
    format!(
        "{head}… ({} bytes cut) …{tail}",
        m.len() - head.len() - tail.len()
    )
}

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
    /// About the whole file (it cannot be read, or is not text): no line or column is
    /// shown, and both are 0 in JSON.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Diag::new(file, (0, 0), message)
    }

    pub fn new(file: &Path, (line, column): (usize, usize), message: impl Into<String>) -> Self {
        Diag {
            file: file.to_path_buf(),
            line,
            column,
            message: clip_message(message.into()),
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
        let shown = self.file.display().to_string();
        let file = escape(&shown);
        if self.line == 0 {
            write!(f, "{file}: {}", escape(&self.message))?;
        } else {
            write!(
                f,
                "{file}:{}:{}: {}",
                self.line,
                self.column,
                escape(&self.message)
            )?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  help: {}", escape(h))?;
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
            message: clip_message(message.into()),
        }
    }

    pub fn at(mut self, file: &Path, (line, column): (usize, usize)) -> Self {
        self.file = Some(file.to_path_buf());
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}
