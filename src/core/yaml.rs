//! Positioned YAML: documents as node arenas whose scalars carry exact byte spans.
//!
//! yaml-rust2 reports only where a token starts, and in characters; this module turns that
//! into byte offsets and finds where each scalar ends, so the editor can splice bytes and
//! leave everything else alone. A scalar whose end cannot be found with certainty (multi-line
//! plain scalars, escapes, block scalars) gets no `content` span and is never edited.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

pub type NodeId = usize;

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(k: &str) -> Self {
        Seg::Key(k.to_string())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// Build a path: `path!["spec", "waves", 2, "name"]`.
#[macro_export]
macro_rules! path {
    ($($s:expr),* $(,)?) => { [$($crate::core::yaml::Seg::from($s)),*] };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    Plain,
    Single,
    Double,
    Literal,
    Folded,
}

#[derive(Debug, Clone)]
pub struct Scalar {
    pub value: String,
    pub style: Style,
    pub tagged: bool,
    /// Bytes of the value between its quotes (or the whole plain scalar), when exact.
    pub content: Option<Range<usize>>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Scalar(Scalar),
    Map(Vec<(NodeId, NodeId)>),
    Seq(Vec<NodeId>),
    Alias(NodeId),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    /// Byte offset of the node's first token (after any anchor or tag).
    pub start: usize,
    pub anchored: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Doc {
    pub nodes: Vec<Node>,
    pub root: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

/// Maps byte offsets to 1-based line and character column.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        LineIndex { starts }
    }

    /// (line, column), both 1-based; the column counts characters.
    pub fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        let start = self.starts[line - 1];
        let end = offset.min(text.len());
        let col = text
            .get(start..end)
            .map_or(end - start, |s| s.chars().count())
            + 1;
        (line, col)
    }
}

/// Byte offset where YAML content starts (after a UTF-8 byte order mark).
pub fn bom_len(text: &str) -> usize {
    if text.starts_with('\u{feff}') { 3 } else { 0 }
}

/// Parse every document of a YAML stream.
pub fn parse(text: &str) -> Result<Vec<Doc>, SyntaxError> {
    let bom = bom_len(text);
    let body = &text[bom..];
    let offsets = CharOffsets::new(body, bom);
    let mut b = Builder {
        text,
        offsets: &offsets,
        docs: Vec::new(),
        cur: Doc::default(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        error: None,
    };
    let mut parser = Parser::new_from_str(body);
    if let Err(e) = parser.load(&mut b, true) {
        return Err(SyntaxError {
            offset: offsets.byte(e.marker().index()),
            message: e.info().to_string(),
        });
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.docs)
}

/// The parser's event stream with positions dropped: two texts with equal streams hold
/// the same data, anchors and tags. Scalars are paired with their start byte.
pub fn events(text: &str) -> Result<Vec<(Event, usize)>, SyntaxError> {
    struct Collect<'a> {
        offsets: &'a CharOffsets,
        out: Vec<(Event, usize)>,
    }
    impl MarkedEventReceiver for Collect<'_> {
        fn on_event(&mut self, ev: Event, mark: Marker) {
            self.out.push((ev, self.offsets.byte(mark.index())));
        }
    }
    let bom = bom_len(text);
    let body = &text[bom..];
    let offsets = CharOffsets::new(body, bom);
    let mut c = Collect {
        offsets: &offsets,
        out: Vec::new(),
    };
    Parser::new_from_str(body)
        .load(&mut c, true)
        .map_err(|e| SyntaxError {
            offset: offsets.byte(e.marker().index()),
            message: e.info().to_string(),
        })?;
    Ok(c.out)
}

/// Character index → byte offset, cheap for ASCII text.
struct CharOffsets {
    base: usize,
    table: Option<Vec<usize>>,
}

impl CharOffsets {
    fn new(body: &str, base: usize) -> Self {
        let table = (!body.is_ascii()).then(|| {
            let mut t: Vec<usize> = body.char_indices().map(|(i, _)| i).collect();
            t.push(body.len());
            t
        });
        CharOffsets { base, table }
    }
    fn byte(&self, char_index: usize) -> usize {
        self.base
            + match &self.table {
                None => char_index,
                Some(t) => t
                    .get(char_index)
                    .copied()
                    .unwrap_or(*t.last().unwrap_or(&0)),
            }
    }
}

/// Mappings up to this many pairs find a duplicate key by scanning their pairs.
const SCAN_KEYS: usize = 16;

/// Whether `key` is already a scalar key of the mapping holding `pairs` (the pairs before it).
fn is_duplicate(
    nodes: &[Node],
    pairs: &[(NodeId, NodeId)],
    keys: &mut Option<HashSet<String>>,
    key: &str,
) -> bool {
    let scalar_key = |&(k, _): &(NodeId, NodeId)| match &nodes[k].kind {
        Kind::Scalar(s) => Some(s.value.as_str()),
        _ => None,
    };
    if keys.is_none() && pairs.len() < SCAN_KEYS {
        return pairs.iter().any(|p| scalar_key(p) == Some(key));
    }
    let set = keys.get_or_insert_with(|| {
        pairs
            .iter()
            .filter_map(scalar_key)
            .map(str::to_string)
            .collect()
    });
    !set.insert(key.to_string())
}

enum Open {
    Map {
        id: NodeId,
        pending_key: Option<NodeId>,
        /// The scalar keys seen so far, hashed once the mapping is large (a small mapping,
        /// the usual case, is checked by scanning its pairs: no allocation per key).
        keys: Option<HashSet<String>>,
    },
    Seq {
        id: NodeId,
    },
}

struct Builder<'a> {
    text: &'a str,
    offsets: &'a CharOffsets,
    docs: Vec<Doc>,
    cur: Doc,
    stack: Vec<(Open, bool)>,
    anchors: HashMap<usize, NodeId>,
    error: Option<SyntaxError>,
}

impl Builder<'_> {
    fn in_flow(&self) -> bool {
        self.stack.last().is_some_and(|(_, flow)| *flow)
    }

    fn push_node(&mut self, node: Node, anchor: usize) -> NodeId {
        let id = self.cur.nodes.len();
        self.cur.nodes.push(node);
        if anchor != 0 {
            self.anchors.insert(anchor, id);
        }
        id
    }

    fn attach(&mut self, id: NodeId) {
        match self.stack.last_mut() {
            None => self.cur.root = Some(id),
            Some((Open::Seq { id: seq }, _)) => {
                let seq = *seq;
                if let Kind::Seq(items) = &mut self.cur.nodes[seq].kind {
                    items.push(id);
                }
            }
            Some((
                Open::Map {
                    id: map,
                    pending_key,
                    keys,
                },
                _,
            )) => match pending_key.take() {
                None => *pending_key = Some(id),
                Some(k) => {
                    let map = *map;
                    let nodes = &self.cur.nodes;
                    if let Kind::Scalar(key) = &nodes[k].kind {
                        let dup = match &nodes[map].kind {
                            Kind::Map(pairs) => is_duplicate(nodes, pairs, keys, &key.value),
                            _ => false,
                        };
                        if dup && self.error.is_none() {
                            self.error = Some(SyntaxError {
                                offset: nodes[k].start,
                                message: format!("duplicate key {:?} in this mapping", key.value),
                            });
                        }
                    }
                    if let Kind::Map(pairs) = &mut self.cur.nodes[map].kind {
                        pairs.push((k, id));
                    }
                }
            },
        }
    }

    fn close(&mut self) {
        if let Some((open, flow)) = self.stack.pop() {
            let id = match open {
                Open::Map { id, .. } | Open::Seq { id } => id,
            };
            // A block mapping's start event is marked at its first `:`; point at the first key.
            if let (false, Kind::Map(pairs)) = (flow, &self.cur.nodes[id].kind) {
                if let Some(&(k, _)) = pairs.first() {
                    self.cur.nodes[id].start = self.cur.nodes[k].start;
                }
            }
            self.attach(id);
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let start = self.offsets.byte(mark.index());
        match ev {
            Event::DocumentStart => {
                self.cur = Doc::default();
                self.anchors.clear();
            }
            Event::DocumentEnd => self.docs.push(std::mem::take(&mut self.cur)),
            Event::Scalar(value, style, anchor, tag) => {
                let style = match style {
                    TScalarStyle::Plain => Style::Plain,
                    TScalarStyle::SingleQuoted => Style::Single,
                    TScalarStyle::DoubleQuoted => Style::Double,
                    TScalarStyle::Literal => Style::Literal,
                    TScalarStyle::Folded => Style::Folded,
                };
                let content = scalar_content(self.text, start, style, &value, self.in_flow());
                let node = Node {
                    kind: Kind::Scalar(Scalar {
                        value,
                        style,
                        tagged: tag.is_some(),
                        content,
                    }),
                    start,
                    anchored: anchor != 0,
                };
                let id = self.push_node(node, anchor);
                self.attach(id);
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor).copied() {
                Some(target) => {
                    let node = Node {
                        kind: Kind::Alias(target),
                        start,
                        anchored: false,
                    };
                    let id = self.push_node(node, 0);
                    self.attach(id);
                }
                None => {
                    self.error.get_or_insert(SyntaxError {
                        offset: start,
                        message: "alias refers to an unknown anchor".into(),
                    });
                }
            },
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let flow = matches!(self.text.as_bytes().get(start), Some(b'{' | b'['));
                let kind = if is_map {
                    Kind::Map(Vec::new())
                } else {
                    Kind::Seq(Vec::new())
                };
                let id = self.push_node(
                    Node {
                        kind,
                        start,
                        anchored: anchor != 0,
                    },
                    anchor,
                );
                let open = if is_map {
                    Open::Map {
                        id,
                        pending_key: None,
                        keys: None,
                    }
                } else {
                    Open::Seq { id }
                };
                self.stack.push((open, flow));
            }
            Event::MappingEnd | Event::SequenceEnd => self.close(),
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
    }
}

/// The exact bytes holding a scalar's value, if they can be found with certainty.
fn scalar_content(
    text: &str,
    start: usize,
    style: Style,
    value: &str,
    in_flow: bool,
) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    match style {
        Style::Double => {
            let open = start;
            (bytes.get(open) == Some(&b'"')).then_some(())?;
            let close = open + 1 + text[open + 1..].find('"')?;
            let raw = &text[open + 1..close];
            // Escapes and line folding make raw text differ from the value: not editable.
            (raw == value && !raw.contains('\\')).then_some(open + 1..close)
        }
        Style::Single => {
            (bytes.get(start) == Some(&b'\'')).then_some(())?;
            let mut i = start + 1;
            while i < bytes.len() {
                if bytes[i] == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    let raw = &text[start + 1..i];
                    return (raw.replace("''", "'") == value && !raw.contains(['\n', '\r']))
                        .then_some(start + 1..i);
                }
                i += 1;
            }
            None
        }
        // An empty plain scalar has no bytes; its mark is the next token, not a place to write.
        Style::Plain if value.is_empty() => None,
        Style::Plain => {
            let mut end = start;
            while end < bytes.len() {
                let b = bytes[end];
                if b == b'\n' || b == b'\r' {
                    break;
                }
                if b == b'#' && end > start && matches!(bytes[end - 1], b' ' | b'\t') {
                    break;
                }
                if in_flow && matches!(b, b',' | b']' | b'}') {
                    break;
                }
                if b == b':'
                    && matches!(
                        bytes.get(end + 1),
                        None | Some(b' ' | b'\t' | b'\r' | b'\n')
                    )
                {
                    break;
                }
                if in_flow && b == b':' && matches!(bytes.get(end + 1), Some(b',' | b']' | b'}')) {
                    break;
                }
                end += 1;
            }
            while end > start && matches!(bytes[end - 1], b' ' | b'\t') {
                end -= 1;
            }
            (&text[start..end] == value).then_some(start..end)
        }
        Style::Literal | Style::Folded => None,
    }
}

impl Doc {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Follow aliases to the node that holds the data.
    pub fn resolve(&self, mut id: NodeId) -> NodeId {
        // Aliases point only backwards, so this ends.
        while let Kind::Alias(t) = self.nodes[id].kind {
            id = t;
        }
        id
    }

    pub fn scalar(&self, id: NodeId) -> Option<&Scalar> {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn str(&self, id: NodeId) -> Option<&str> {
        self.scalar(id).map(|s| s.value.as_str())
    }

    pub fn entries(&self, id: NodeId) -> &[(NodeId, NodeId)] {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Map(p) => p,
            _ => &[],
        }
    }

    pub fn items(&self, id: NodeId) -> &[NodeId] {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Seq(items) => items,
            _ => &[],
        }
    }

    /// The value under `key` in a mapping (the last one, as YAML loaders do).
    pub fn get(&self, id: NodeId, key: &str) -> Option<NodeId> {
        self.entries(id)
            .iter()
            .rev()
            .find(|(k, _)| self.str(*k) == Some(key))
            .map(|(_, v)| *v)
    }

    /// The key node of `key` in a mapping.
    pub fn key(&self, id: NodeId, key: &str) -> Option<NodeId> {
        self.entries(id)
            .iter()
            .rev()
            .find(|(k, _)| self.str(*k) == Some(key))
            .map(|(k, _)| *k)
    }

    pub fn path(&self, id: NodeId, path: &[&str]) -> Option<NodeId> {
        path.iter().try_fold(id, |n, k| self.get(n, k))
    }

    pub fn root_path(&self, path: &[&str]) -> Option<NodeId> {
        self.path(self.root?, path)
    }

    pub fn root_str(&self, path: &[&str]) -> Option<&str> {
        self.str(self.root_path(path)?)
    }

    /// The node at a path of keys and sequence indexes from the root.
    pub fn at(&self, path: &[Seg]) -> Option<NodeId> {
        path.iter().try_fold(self.root?, |n, seg| match seg {
            Seg::Key(k) => self.get(n, k),
            Seg::Index(i) => self.items(n).get(*i).copied(),
        })
    }

    /// The deepest existing node along `path` (for pointing at where something is missing);
    /// a final key that exists points at the key itself when `at_key` is set.
    pub fn nearest(&self, path: &[Seg], at_key: bool) -> Option<NodeId> {
        let mut n = self.root?;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let next = match seg {
                Seg::Key(k) if last && at_key => self.key(n, k),
                Seg::Key(k) => self.get(n, k),
                Seg::Index(i) => self.items(n).get(*i).copied(),
            };
            match next {
                Some(x) => n = x,
                None => break,
            }
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_of(text: &str, path: &[&str]) -> Option<String> {
        let docs = parse(text).unwrap();
        let d = &docs[0];
        let n = d.resolve(d.root_path(path).unwrap());
        let s = d.scalar(n).unwrap();
        s.content.clone().map(|r| text[r].to_string())
    }

    #[test]
    fn spans_are_bytes_across_bom_and_multibyte() {
        let t = "\u{feff}a: é\nb: \"v1.2\"  # c\nc: 'it''s'\n";
        assert_eq!(content_of(t, &["a"]).unwrap(), "é");
        assert_eq!(content_of(t, &["b"]).unwrap(), "v1.2");
        assert_eq!(content_of(t, &["c"]).unwrap(), "it''s");
    }

    #[test]
    fn plain_scalar_stops_at_comment_and_flow_indicators() {
        let t = "a: v1.2 # note\nb: {x: v1, y: [v2, v3]}\nc: x#y\n";
        assert_eq!(content_of(t, &["a"]).unwrap(), "v1.2");
        assert_eq!(content_of(t, &["b", "x"]).unwrap(), "v1");
        assert_eq!(content_of(t, &["c"]).unwrap(), "x#y");
        let docs = parse(t).unwrap();
        let d = &docs[0];
        let seq = d.root_path(&["b", "y"]).unwrap();
        let last = d.items(seq)[1];
        assert_eq!(&t[d.scalar(last).unwrap().content.clone().unwrap()], "v3");
    }

    #[test]
    fn multiline_and_block_scalars_have_no_span() {
        let t = "a: one\n  two\nb: |\n  v1\nc: \"a\\tb\"\n";
        assert_eq!(content_of(t, &["a"]), None);
        assert_eq!(content_of(t, &["b"]), None);
        assert_eq!(content_of(t, &["c"]), None);
    }

    #[test]
    fn aliases_resolve_to_the_anchor() {
        let t = "a: &v v1.31.2\nb: *v\n";
        let docs = parse(t).unwrap();
        let d = &docs[0];
        let b = d.root_path(&["b"]).unwrap();
        assert_eq!(d.str(b), Some("v1.31.2"));
        let anchor = d.resolve(b);
        assert!(d.node(anchor).anchored);
        assert_eq!(
            &t[d.scalar(anchor).unwrap().content.clone().unwrap()],
            "v1.31.2"
        );
    }

    #[test]
    fn crlf_and_multi_documents() {
        let t = "a: 1\r\n---\r\nb: \"2\"\r\n";
        let docs = parse(t).unwrap();
        assert_eq!(docs.len(), 2);
        let d = &docs[1];
        let n = d.root_path(&["b"]).unwrap();
        assert_eq!(&t[d.scalar(n).unwrap().content.clone().unwrap()], "2");
        let li = LineIndex::new(t);
        assert_eq!(li.position(t, d.node(n).start), (3, 4));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.offset, 10);
        assert!(e.message.contains("duplicate key"));
    }

    #[test]
    fn a_hundred_thousand_keys_parse_and_a_late_duplicate_is_found() {
        let mut t = String::from("data:\n");
        for i in 0..100_000 {
            t.push_str(&format!("  k{i}: v{i}\n"));
        }
        let docs = parse(&t).unwrap();
        let data = docs[0].root_path(&["data"]).unwrap();
        assert_eq!(docs[0].entries(data).len(), 100_000);
        assert_eq!(
            docs[0].str(docs[0].get(data, "k99999").unwrap()),
            Some("v99999")
        );
        t.push_str("  k5: again\n");
        let e = parse(&t).unwrap_err();
        assert_eq!(e.message, "duplicate key \"k5\" in this mapping");
        assert_eq!(e.offset, t.len() - "k5: again\n".len());
    }

    #[test]
    fn alias_bombs_are_not_expanded() {
        let mut t = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            t.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let docs = parse(&t).unwrap();
        // 9^10 nodes if expanded; the arena holds each alias once.
        assert!(docs[0].nodes.len() < 200, "{}", docs[0].nodes.len());
    }

    #[test]
    fn syntax_errors_have_offsets() {
        let t = "a: 1\nb: [1, 2\n";
        let e = parse(t).unwrap_err();
        assert!(e.offset > 4, "{e:?}");
    }
}
