//! An input file held with its parsed YAML, so any problem can be pointed at by path.

use std::path::{Path, PathBuf};

use crate::core::diag::Diag;
use crate::core::yaml::{self, Doc, LineIndex, Seg};

pub struct YamlSource {
    /// The path shown to the user.
    pub shown: PathBuf,
    pub text: String,
    pub lines: LineIndex,
    pub doc: Doc,
}

impl YamlSource {
    /// Parse a single-document YAML input (a plan or the fleet config).
    pub fn parse(shown: &Path, text: String) -> Result<Self, Diag> {
        let mut docs = yaml::parse(&text).map_err(|e| Diag::syntax(shown, &text, &e))?;
        if docs.len() > 1 {
            let lines = LineIndex::new(&text);
            let start = docs[1].root.map_or(0, |r| docs[1].node(r).start);
            return Err(Diag::new(
                shown,
                lines.position(&text, start),
                "expected one YAML document, found several",
            )
            .hint("keep one document in this file"));
        }
        let doc = docs.pop().unwrap_or_default();
        Ok(YamlSource {
            shown: shown.to_path_buf(),
            lines: LineIndex::new(&text),
            text,
            doc,
        })
    }

    pub fn pos(&self, offset: usize) -> (usize, usize) {
        self.lines.position(&self.text, offset)
    }

    /// A diagnostic at the value found at `path`, or the nearest existing parent.
    pub fn at(&self, path: &[Seg], message: impl Into<String>) -> Diag {
        let off = self
            .doc
            .nearest(path, false)
            .map_or(0, |n| self.doc.node(n).start);
        Diag::new(&self.shown, self.pos(off), message)
    }

    /// A diagnostic at the key of the last path element (or the nearest parent).
    pub fn at_key(&self, path: &[Seg], message: impl Into<String>) -> Diag {
        let off = self
            .doc
            .nearest(path, true)
            .map_or(0, |n| self.doc.node(n).start);
        Diag::new(&self.shown, self.pos(off), message)
    }

    /// Deserialize into typed structs; serde errors keep serde_yaml's line and column.
    pub fn typed<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, Diag> {
        if self.doc.root.is_none() {
            return Err(
                Diag::new(&self.shown, (1, 1), format!("the {what} is empty"))
                    .hint(format!("write a {what} here; see README.md for the format")),
            );
        }
        // A byte order mark is not content (the positioned parse skips it too).
        let body = &self.text[yaml::bom_len(&self.text)..];
        serde_yaml::from_str(body).map_err(|e| {
            let pos = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            let msg = e.to_string();
            // serde_yaml appends " at line L column C"; the location is already in front.
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            Diag::new(&self.shown, pos, format!("invalid {what}: {msg}"))
                .hint(format!("see README.md for the {what} format"))
        })
    }
}
