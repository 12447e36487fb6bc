//! The byte-surgical editor: splice located scalars, then prove nothing else changed.
//!
//! Every byte outside the replaced ranges is copied as is, by construction. For YAML files
//! the result is re-parsed and its event stream compared with the original: it must be
//! identical except for the targeted scalars, which must now hold exactly the new value.
//! Otherwise the whole file is refused.

use std::ops::Range;

use yaml_rust2::parser::Event;

use crate::core::yaml;

/// One replacement inside a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    /// Bytes to replace (the scalar's content, or part of it such as a `?ref=` value).
    pub range: Range<usize>,
    /// The text expected at `range` now; a mismatch means the file changed under us.
    pub old: String,
    pub new: String,
    /// For YAML: where the scalar holding `range` starts, and its whole value after the edit.
    pub scalar: Option<(usize, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error(
        "expected {expected:?} at byte {offset} but found {found:?}; the file changed since it was read"
    )]
    Stale {
        offset: usize,
        expected: String,
        found: String,
    },
    #[error("two edits overlap at byte {offset}")]
    Overlap { offset: usize },
    #[error("the edited file no longer parses as YAML ({0}); refusing to write it")]
    Reparse(String),
    #[error(
        "re-parsing the edited file shows a change outside the targeted values at byte {offset}; refusing to write it"
    )]
    Collateral { offset: usize },
}

/// Apply splices to `text`. Identical splices (an anchored value reached through several
/// aliases) are applied once. `is_yaml` turns on the re-parse proof.
pub fn apply(text: &str, splices: &[Splice], is_yaml: bool) -> Result<String, EditError> {
    let mut sorted: Vec<&Splice> = splices.iter().collect();
    sorted.sort_by_key(|s| (s.range.start, s.range.end));
    sorted.dedup_by(|a, b| a == b);
    let mut out = String::with_capacity(text.len() + 16);
    let mut at = 0;
    for s in &sorted {
        if s.range.start < at {
            return Err(EditError::Overlap {
                offset: s.range.start,
            });
        }
        let found = text.get(s.range.clone()).unwrap_or_default();
        if found != s.old {
            return Err(EditError::Stale {
                offset: s.range.start,
                expected: s.old.clone(),
                found: found.to_string(),
            });
        }
        out.push_str(&text[at..s.range.start]);
        out.push_str(&s.new);
        at = s.range.end;
    }
    out.push_str(&text[at..]);
    if is_yaml {
        verify(text, &out, &sorted)?;
    }
    Ok(out)
}

/// The edited text must hold the same events as the original, except the targeted scalars.
fn verify(old: &str, new: &str, splices: &[&Splice]) -> Result<(), EditError> {
    let before = yaml::events(old).map_err(|e| EditError::Reparse(e.message))?;
    let after = yaml::events(new).map_err(|e| EditError::Reparse(e.message))?;
    let expected = |start: usize| {
        splices.iter().find_map(|s| match &s.scalar {
            Some((at, value)) if *at == start => Some(value.as_str()),
            _ => None,
        })
    };
    if before.len() != after.len() {
        let offset = before
            .iter()
            .zip(&after)
            .find(|(a, b)| a.0 != b.0)
            .map_or(old.len(), |(a, _)| a.1);
        return Err(EditError::Collateral { offset });
    }
    for ((a, at), (b, _)) in before.iter().zip(&after) {
        let same = match (a, b, expected(*at)) {
            // An empty scalar is marked at the next token, so it can share a target's start;
            // targets are never empty.
            (Event::Scalar(v1, s1, a1, t1), Event::Scalar(v2, s2, a2, t2), Some(want))
                if !v1.is_empty() =>
            {
                s1 == s2 && a1 == a2 && t1 == t2 && v2 == want
            }
            _ => a == b,
        };
        if !same {
            return Err(EditError::Collateral { offset: *at });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splice(text: &str, needle: &str, new: &str) -> Splice {
        let start = text.find(needle).unwrap();
        Splice {
            range: start..start + needle.len(),
            old: needle.into(),
            new: new.into(),
            scalar: Some((start, new.into())),
        }
    }

    #[test]
    fn replaces_only_the_target() {
        let t = "# head\r\nspec:\r\n  version: v1.32.4   # pinned\r\n\r\n  other: x\r\n";
        let out = apply(t, &[splice(t, "v1.32.4", "v1.33.5")], true).unwrap();
        assert_eq!(out, t.replace("v1.32.4", "v1.33.5"));
    }

    #[test]
    fn refuses_an_edit_that_changes_structure() {
        let t = "a: v1\nb: c\n";
        let s = splice(t, "v1", "v2\nz: 1");
        assert!(matches!(
            apply(t, &[s], true),
            Err(EditError::Collateral { .. })
        ));
    }

    #[test]
    fn refuses_stale_and_overlapping_edits() {
        let t = "a: v1\n";
        let mut s = splice(t, "v1", "v2");
        s.old = "v0".into();
        assert!(matches!(apply(t, &[s], true), Err(EditError::Stale { .. })));
        let s1 = splice(t, "v1", "v2");
        let mut s2 = s1.clone();
        s2.range.end -= 1;
        s2.old = "v".into();
        assert!(matches!(
            apply(t, &[s1, s2], true),
            Err(EditError::Overlap { .. })
        ));
    }

    #[test]
    fn duplicate_splices_apply_once() {
        let t = "a: &v v1\nb: *v\n";
        let s = splice(t, "v1", "v2");
        assert_eq!(
            apply(t, &[s.clone(), s], true).unwrap(),
            "a: &v v2\nb: *v\n"
        );
    }
}
