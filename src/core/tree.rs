//! What the fleet's files are read from: a [`FileTree`], either a directory on disk (the
//! adapters' `DiskTree`, for `plan` and `apply`) or a commit held in memory ([`MemTree`]: the
//! reconciler plans against the base branch without a checkout).
//!
//! One path policy for both, so a preview and a rollout see the same files:
//! - symlinks are never followed; one whose target leaves the repository is refused (an
//!   error), one that stays inside is reported and skipped (Git checks symlinks out as links);
//! - FIFOs, sockets and devices are refused without being opened;
//! - names that are not UTF-8 or hold control characters are reported, not read;
//! - no file larger than [`MAX_FILE_BYTES`] is read.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::core::diag::{Severity, escape};

/// The largest file fleetwave reads (plan, `fleetwave.yaml`, fleet files, state): 16 MiB.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// What a directory entry is, as far as fleetwave will go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    /// Not read, and why (a symlink, a FIFO, socket or device, an unreadable name).
    Refused(Severity, String),
}

impl EntryKind {
    pub fn is_dir(&self) -> bool {
        matches!(self, EntryKind::Dir)
    }
}

/// Read-only access to a tree of files, by `/`-separated relative paths.
pub trait FileTree: Sync {
    /// Entries of a directory, sorted by name; None if it is not a directory. A name that is
    /// not UTF-8 is shown lossily and refused.
    fn list(&self, dir: &Path) -> Option<Vec<(String, EntryKind)>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// None when absent.
    fn kind(&self, path: &Path) -> Option<EntryKind>;
}

/// The rule for a symlink at `link` (relative to the root) pointing at `target`: resolved
/// lexically from the link's directory, it is refused when it leaves the repository and
/// otherwise reported as not followed.
pub fn link_kind(link: &Path, target: &Path) -> EntryKind {
    let shown = escape(&target.to_string_lossy()).into_owned();
    let mut at: Vec<&std::ffi::OsStr> = Vec::new();
    let mut leaves = target.is_absolute();
    let parent = link.parent().unwrap_or(Path::new(""));
    for c in parent.components().chain(target.components()) {
        match c {
            Component::Normal(s) => at.push(s),
            Component::ParentDir => leaves |= at.pop().is_none(),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => leaves = true,
        }
    }
    if leaves {
        EntryKind::Refused(
            Severity::Error,
            format!(
                "symlink to {shown} leaves the repository; refused (fleetwave reads and writes only inside the repository)"
            ),
        )
    } else {
        EntryKind::Refused(
            Severity::Warning,
            format!(
                "symlink to {shown} is not followed; point the cluster path at the real file or directory"
            ),
        )
    }
}

/// A name fleetwave will not read: not UTF-8, or holding control characters.
pub fn name_refusal(name: &str, utf8: bool) -> Option<EntryKind> {
    if !utf8 {
        return Some(EntryKind::Refused(
            Severity::Warning,
            "the file name is not UTF-8; not read (any version pinned in it stays as it is): rename it".into(),
        ));
    }
    name.chars().any(char::is_control).then(|| {
        EntryKind::Refused(
            Severity::Error,
            format!(
                "the name {} holds control characters; refused: rename it",
                escape(&format!("{name:?}"))
            ),
        )
    })
}

pub fn too_large() -> io::Error {
    io::Error::other(format!(
        "larger than {} MiB, the limit on any file fleetwave reads; refused",
        MAX_FILE_BYTES / (1024 * 1024)
    ))
}

/// Reads a file's contents by the id a tree gave it (a Git blob id), for a [`MemTree`] that
/// keeps ids instead of bytes. Called from any thread.
pub trait Blobs: Send + Sync + std::fmt::Debug {
    fn read(&self, id: &str) -> io::Result<Vec<u8>>;
}

/// A file of a [`MemTree`]: its bytes, or the id its [`Blobs`] reads them by.
#[derive(Debug, Clone)]
enum Content {
    Bytes(Vec<u8>),
    Id(String),
}

/// Files held in memory, e.g. the blobs of a Git commit, plus the entries the policy refuses
/// (symlinks, oversized blobs, unreadable names) so they are reported as on disk.
#[derive(Debug, Clone, Default)]
pub struct MemTree {
    files: BTreeMap<PathBuf, Content>,
    refused: BTreeMap<PathBuf, EntryKind>,
    /// Reads the files kept by id (each is read when asked for, so the tree does not hold a
    /// copy of what the reader keeps).
    blobs: Option<std::sync::Arc<dyn Blobs>>,
    /// Each directory's entries, built on the first `list`: listing by scanning every path
    /// made a walk of the tree quadratic (42,000 files × their directories at 10,000 clusters).
    dirs: std::sync::OnceLock<HashMap<PathBuf, BTreeMap<String, EntryKind>>>,
}

impl MemTree {
    pub fn new(files: BTreeMap<PathBuf, Vec<u8>>) -> Self {
        MemTree {
            files: files
                .into_iter()
                .map(|(p, b)| (p, Content::Bytes(b)))
                .collect(),
            ..MemTree::default()
        }
    }

    /// A tree whose files are read from `blobs` by id when asked for.
    pub fn by_id(ids: BTreeMap<PathBuf, String>, blobs: std::sync::Arc<dyn Blobs>) -> Self {
        MemTree {
            files: ids
                .into_iter()
                .map(|(p, id)| (p, Content::Id(id)))
                .collect(),
            blobs: Some(blobs),
            ..MemTree::default()
        }
    }

    pub fn with_refused(mut self, refused: BTreeMap<PathBuf, EntryKind>) -> Self {
        self.refused = refused;
        self.dirs = std::sync::OnceLock::new();
        self
    }

    /// Directory -> its entries, in one pass over every path. Each path is walked up from its
    /// file only until a folder already recorded as one: its ancestors are recorded too.
    fn dirs(&self) -> &HashMap<PathBuf, BTreeMap<String, EntryKind>> {
        self.dirs.get_or_init(|| {
            let mut dirs: HashMap<PathBuf, BTreeMap<String, EntryKind>> = HashMap::new();
            dirs.insert(PathBuf::new(), BTreeMap::new());
            for p in self.files.keys().chain(self.refused.keys()) {
                let mut kind = self.refused.get(p).cloned().unwrap_or(EntryKind::File);
                let mut path: &Path = p;
                while let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
                    if !dirs.contains_key(parent) {
                        dirs.insert(parent.to_path_buf(), BTreeMap::new());
                    }
                    let entries = dirs.get_mut(parent).expect("inserted above");
                    let name = name.to_string_lossy().into_owned();
                    let known_dir = entries.get(&name).is_some_and(EntryKind::is_dir);
                    if kind.is_dir() {
                        entries.insert(name, EntryKind::Dir);
                    } else {
                        entries.entry(name).or_insert(kind);
                    }
                    if known_dir {
                        break;
                    }
                    kind = EntryKind::Dir;
                    path = parent;
                }
            }
            dirs
        })
    }
}

impl FileTree for MemTree {
    fn list(&self, dir: &Path) -> Option<Vec<(String, EntryKind)>> {
        let entries = self.dirs().get(dir)?;
        Some(
            entries
                .iter()
                .map(|(n, k)| (n.clone(), k.clone()))
                .collect(),
        )
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        if let Some(EntryKind::Refused(_, why)) = self.refused.get(path) {
            return Err(io::Error::other(why.clone()));
        }
        match (self.files.get(path), &self.blobs) {
            (Some(Content::Bytes(b)), _) => Ok(b.clone()),
            (Some(Content::Id(id)), Some(blobs)) => blobs.read(id),
            (Some(Content::Id(_)), None) | (None, _) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not in tree", path.display()),
            )),
        }
    }

    fn kind(&self, path: &Path) -> Option<EntryKind> {
        if self.files.contains_key(path) {
            return Some(EntryKind::File);
        }
        if let Some(r) = self.refused.get(path) {
            return Some(r.clone());
        }
        let files = self
            .files
            .range(path.to_path_buf()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(path));
        let refused = self
            .refused
            .range(path.to_path_buf()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(path));
        (files || refused).then_some(EntryKind::Dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_tree_lists_like_a_directory() {
        let mut f = BTreeMap::new();
        for p in ["a/b/c.yaml", "a/d.yaml", "a-x/e.yaml", "top.yaml"] {
            f.insert(PathBuf::from(p), p.as_bytes().to_vec());
        }
        let t = MemTree::new(f);
        assert_eq!(
            t.list(Path::new("a")).unwrap(),
            vec![
                ("b".to_string(), EntryKind::Dir),
                ("d.yaml".to_string(), EntryKind::File)
            ]
        );
        assert_eq!(t.list(Path::new("")).unwrap().len(), 3);
        assert_eq!(t.kind(Path::new("a/b")), Some(EntryKind::Dir));
        assert_eq!(t.kind(Path::new("a/d.yaml")), Some(EntryKind::File));
        assert_eq!(t.kind(Path::new("a/zz")), None);
        assert!(t.list(Path::new("nope")).is_none());
        assert_eq!(t.read(Path::new("top.yaml")).unwrap(), b"top.yaml");
    }

    #[test]
    fn mem_tree_lists_every_folder_of_deep_and_refused_paths() {
        let mut f = BTreeMap::new();
        for p in ["a/b/c.yaml", "a/b/d/e/f.yaml", "a/b/d/g.yaml", "z.yaml"] {
            f.insert(PathBuf::from(p), Vec::new());
        }
        let link = EntryKind::Refused(Severity::Error, "a symlink".into());
        let refused = BTreeMap::from([
            (PathBuf::from("a/b/d/e/link"), link.clone()),
            (PathBuf::from("r/s/link"), link.clone()),
        ]);
        let t = MemTree::new(f).with_refused(refused);
        let names = |d: &str| -> Vec<(String, EntryKind)> { t.list(Path::new(d)).unwrap() };
        let (dir, file) = (EntryKind::Dir, EntryKind::File);
        assert_eq!(
            names(""),
            [
                ("a".into(), dir.clone()),
                ("r".into(), dir.clone()),
                ("z.yaml".into(), file.clone())
            ]
        );
        assert_eq!(names("a"), [("b".into(), dir.clone())]);
        assert_eq!(
            names("a/b"),
            [("c.yaml".into(), file.clone()), ("d".into(), dir.clone())]
        );
        assert_eq!(
            names("a/b/d"),
            [("e".into(), dir.clone()), ("g.yaml".into(), file.clone())]
        );
        assert_eq!(
            names("a/b/d/e"),
            [("f.yaml".into(), file), ("link".into(), link.clone())]
        );
        assert_eq!(names("r"), [("s".into(), dir)]);
        assert_eq!(names("r/s"), [("link".into(), link)]);
    }

    #[test]
    fn links_are_judged_lexically_from_their_directory() {
        let sev = |l: &str, t: &str| match link_kind(Path::new(l), Path::new(t)) {
            EntryKind::Refused(s, _) => s,
            k => panic!("{k:?}"),
        };
        assert_eq!(sev("clusters/a", "/etc"), Severity::Error);
        assert_eq!(sev("clusters/a", "../../x"), Severity::Error);
        assert_eq!(sev("clusters/a", "../b"), Severity::Warning);
        assert_eq!(sev("clusters/a/f.yaml", "../../../../b"), Severity::Error);
    }
}
