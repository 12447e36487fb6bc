//! Kustomize patches written inline, as YAML inside a YAML string (`patch: |-`): a
//! strategic-merge object or a JSON6902 operation list. The string's text is parsed as YAML
//! of its own and each managed value in it is mapped back to the bytes of the file.
//!
//! The mapping is exact only for a literal block scalar (`|`, `|-`, `|+`) without an
//! explicit indentation indicator, whose lines all carry the same indentation: every value
//! byte is then a file byte at a fixed offset per line. The value rebuilt from the lines
//! must equal the parser's value, or the block is reported instead of edited.

use std::ops::Range;

use crate::core::kinds::{What, has_cp_label, version_fields};
use crate::core::yaml::{self, Doc, NodeId, Style};

/// A literal block scalar's value and where each of its lines sits in the file.
pub struct Block {
    pub value: String,
    /// (offset in the value, offset in the file) of each line's start.
    lines: Vec<(usize, usize)>,
}

impl Block {
    /// Map the literal block scalar whose node starts at `start` (the parser marks a block
    /// scalar at its first content line; the `|` header is on a line before it).
    pub fn map(text: &str, start: usize, value: &str) -> Option<Block> {
        let mut eol = text[..start].rfind('\n')?;
        let header = loop {
            let ls = text[..eol].rfind('\n').map_or(0, |i| i + 1);
            let line = text[ls..eol].trim_end_matches('\r');
            if !line.trim().is_empty() {
                break line;
            }
            eol = ls.checked_sub(1)?;
        };
        let header = header.split(" #").next().unwrap_or(header).trim_end();
        let chomp = match &header[header.rfind('|')?..] {
            "|" => ' ',
            "|-" => '-',
            "|+" => '+',
            _ => return None,
        };
        let body_start = eol + 1;
        let rows: Vec<(usize, &str)> = text
            .get(body_start..)?
            .split_inclusive('\n')
            .scan(body_start, |at, l| {
                let row = (*at, l.trim_end_matches('\n').trim_end_matches('\r'));
                *at += l.len();
                Some(row)
            })
            .collect();
        let lead = |l: &str| l.len() - l.trim_start_matches(' ').len();
        let indent = rows
            .iter()
            .find(|(_, l)| !l.trim().is_empty())
            .map(|(_, l)| lead(l))?;
        let mut built = String::new();
        let mut lines = Vec::new();
        for (at, line) in rows {
            if !line.trim().is_empty() && lead(line) < indent {
                break;
            }
            let cut = indent.min(line.len());
            lines.push((built.len(), at + cut));
            built.push_str(&line[cut..]);
            built.push('\n');
        }
        let trimmed = built.trim_end_matches('\n').len();
        match chomp {
            '-' => built.truncate(trimmed),
            ' ' if trimmed > 0 => built.truncate(trimmed + 1),
            _ => {}
        }
        (built == value).then_some(Block {
            value: built,
            lines,
        })
    }

    /// The file bytes of a range of the value that lies within one line.
    pub fn to_file(&self, r: &Range<usize>) -> Range<usize> {
        let i = self.lines.partition_point(|(v, _)| *v <= r.start) - 1;
        let (v, f) = self.lines[i];
        f + (r.start - v)..f + (r.end - v)
    }
}

/// A value found inside an inline patch, in the value's offsets.
pub struct Found {
    pub range: Range<usize>,
    pub value: String,
    pub field: String,
    pub what: What,
}

/// A value seen inside an inline patch and left alone, with the reason.
pub struct Noted {
    pub offset: usize,
    pub field: String,
    pub value: String,
    pub reason: String,
}

#[derive(Default)]
pub struct Scan {
    pub found: Vec<Found>,
    pub noted: Vec<Noted>,
}

/// The target of a patch entry: (group, kind, name).
pub fn target_of(doc: &Doc, entry: NodeId) -> (String, String, String) {
    let t = doc.get(entry, "target");
    let get = |k: &str| {
        t.and_then(|t| doc.get(t, k))
            .and_then(|n| doc.str(n))
            .unwrap_or("")
            .to_string()
    };
    (get("group"), get("kind"), get("name"))
}

/// Scan the text of one inline patch. `base_repo` is set when the plan bumps a gitops-base.
pub fn scan(inner: &str, target: &(String, String, String), base_repo: bool) -> Scan {
    let mut out = Scan::default();
    let Ok(docs) = yaml::parse(inner) else {
        return out;
    };
    for doc in &docs {
        let Some(root) = doc.root else { continue };
        if doc.items(root).is_empty() {
            strategic_merge(doc, root, base_repo, &mut out);
        } else {
            json6902(doc, root, target, base_repo, &mut out);
        }
    }
    out
}

/// An exactly spanned scalar at `node`, if any.
fn spanned(doc: &Doc, node: NodeId) -> Option<(Range<usize>, String)> {
    let s = doc.scalar(node)?;
    if !matches!(s.style, Style::Plain | Style::Double | Style::Single) {
        return None;
    }
    Some((s.content.clone()?, s.value.clone()))
}

fn strategic_merge(doc: &Doc, root: NodeId, base_repo: bool, out: &mut Scan) {
    let api = doc.root_str(&["apiVersion"]).unwrap_or("");
    let kind = doc.root_str(&["kind"]).unwrap_or("");
    let group = api.split('/').next().unwrap_or("");
    for (path, what) in version_fields(group, kind, has_cp_label(doc)) {
        let Some((range, value)) = doc.path(root, path).and_then(|n| spanned(doc, n)) else {
            continue;
        };
        out.found.push(Found {
            range,
            value,
            field: format!("{kind} {}", path.join(".")),
            what,
        });
    }
    if base_repo && matches!(kind, "GitRepository" | "OCIRepository") {
        for key in ["tag", "name"] {
            if let Some(n) = doc.path(root, &["spec", "ref", key]) {
                out.noted.push(note_ref(
                    doc,
                    n,
                    kind,
                    &format!("spec.ref.{key}"),
                    "strategic-merge",
                ));
            }
        }
    }
}

fn note_ref(doc: &Doc, n: NodeId, kind: &str, field: &str, style: &str) -> Noted {
    Noted {
        offset: doc.node(n).start,
        field: format!("{kind} {field}"),
        value: doc.str(n).unwrap_or("").to_string(),
        reason: format!(
            "an inline {style} patch sets the {field} of a {kind}, but does not say which repository that source points at, so fleetwave does not know whether it is the gitops-base; left as is — update it by hand with each gitops-base bump, or patch the source's spec.url in the same patch"
        ),
    }
}

fn json6902(
    doc: &Doc,
    root: NodeId,
    (group, kind, name): &(String, String, String),
    base_repo: bool,
    out: &mut Scan,
) {
    let fields = version_fields(group, kind, false);
    for &op in doc.items(root) {
        let get = |k: &str| doc.get(op, k).and_then(|n| doc.str(n)).unwrap_or("");
        if !matches!(get("op"), "add" | "replace") {
            continue;
        }
        let (path, Some(v)) = (get("path"), doc.get(op, "value")) else {
            continue;
        };
        let hit = fields
            .iter()
            .find(|(p, _)| format!("/{}", p.join("/")) == path);
        if let Some((_, what)) = hit {
            if let Some((range, value)) = spanned(doc, v) {
                out.found.push(Found {
                    range,
                    value,
                    field: format!("{kind} {path}"),
                    what: what.clone(),
                });
            }
        } else if base_repo
            && matches!(kind.as_str(), "GitRepository" | "OCIRepository")
            && matches!(path, "/spec/ref/tag" | "/spec/ref/name")
        {
            let shown = if name.is_empty() {
                kind.clone()
            } else {
                format!("{kind}/{name}")
            };
            out.noted.push(note_ref(doc, v, &shown, path, "JSON6902"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::locate::Role;

    fn block(text: &str) -> (Block, usize) {
        let docs = yaml::parse(text).unwrap();
        let d = &docs[0];
        let n = d.root_path(&["p"]).unwrap();
        let start = d.node(n).start;
        (Block::map(text, start, d.str(n).unwrap()).unwrap(), start)
    }

    #[test]
    fn literal_blocks_map_line_by_line() {
        let t = "p: |-\n  - op: replace\n    path: /spec/version\n\n    value: v1.30.1\nq: 1\n";
        let (b, _) = block(t);
        let at = b.value.find("v1.30.1").unwrap();
        let r = b.to_file(&(at..at + 7));
        assert_eq!(&t[r], "v1.30.1");
        let t = "p: |\r\n    kind: X\r\n    v: 1\r\n";
        let (b, _) = block(t);
        assert_eq!(b.value, "kind: X\nv: 1\n");
        let at = b.value.find('1').unwrap();
        assert_eq!(&t[b.to_file(&(at..at + 1))], "1");
    }

    #[test]
    fn folded_and_indicated_blocks_are_not_mapped() {
        for t in ["p: >\n  a\n", "p: |2\n   a\n"] {
            let docs = yaml::parse(t).unwrap();
            let d = &docs[0];
            let n = d.root_path(&["p"]).unwrap();
            assert!(
                Block::map(t, d.node(n).start, d.str(n).unwrap()).is_none(),
                "{t}"
            );
        }
    }

    #[test]
    fn json6902_version_paths_are_found_and_image_tags_are_not() {
        let target = (
            "".to_string(),
            "KubeadmControlPlane".to_string(),
            String::new(),
        );
        let inner = "- op: replace\n  path: /spec/version\n  value: v1.30.1\n- op: replace\n  path: /spec/template/spec/containers/0/image\n  value: nginx:1.21.0\n";
        let s = scan(inner, &target, false);
        assert_eq!(s.found.len(), 1);
        assert_eq!(&inner[s.found[0].range.clone()], "v1.30.1");
        assert_eq!(s.found[0].what, What::Kubernetes(Role::ControlPlane));
    }
}
