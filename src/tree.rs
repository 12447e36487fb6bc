//! Where the fleet's files are read from: a directory on disk (`plan`, `apply`) or a commit
//! held in memory (the reconciler plans against the base branch without a checkout).
//!
//! One path policy for both, so a preview and a rollout see the same files:
//! - symlinks are never followed; one whose target leaves the repository is refused (an
//!   error), one that stays inside is reported and skipped (Git checks symlinks out as links);
//! - FIFOs, sockets and devices are refused without being opened;
//! - names that are not UTF-8 or hold control characters are reported, not read;
//! - no file larger than [`MAX_FILE_BYTES`] is read.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::diag::{Severity, escape};

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

pub struct DiskTree(pub PathBuf);

impl DiskTree {
    /// Every component of `rel` must be a plain name and none of the ancestors a symlink.
    fn checked(&self, rel: &Path) -> io::Result<PathBuf> {
        let mut at = self.0.clone();
        let comps: Vec<Component> = rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            let Component::Normal(s) = c else {
                return Err(io::Error::other("the path leaves the repository"));
            };
            at.push(s);
            if i + 1 < comps.len() {
                let m = std::fs::symlink_metadata(&at)?;
                if !m.is_dir() {
                    return Err(io::Error::other(format!(
                        "{} is not a plain directory (a symlink?); refused",
                        Path::new(s).display()
                    )));
                }
            }
        }
        Ok(at)
    }
}

/// What a file's metadata makes it under the policy (never following a symlink).
fn disk_kind(root: &Path, rel: &Path, m: &std::fs::Metadata) -> EntryKind {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        EntryKind::Dir
    } else if t.is_file() {
        EntryKind::File
    } else if t.is_symlink() {
        match std::fs::read_link(root.join(rel)) {
            Ok(target) => link_kind(rel, &target),
            Err(e) => EntryKind::Refused(Severity::Error, format!("unreadable symlink: {e}")),
        }
    } else {
        let what = if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        EntryKind::Refused(
            Severity::Error,
            format!("{what}, not a regular file; refused without opening it"),
        )
    }
}

impl FileTree for DiskTree {
    fn list(&self, dir: &Path) -> Option<Vec<(String, EntryKind)>> {
        let entries = std::fs::read_dir(self.checked(dir).ok()?).ok()?;
        let mut items: Vec<(String, EntryKind)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let raw = e.file_name();
                let name = raw.to_string_lossy().into_owned();
                if let Some(r) = name_refusal(&name, raw.to_str().is_some()) {
                    return Some((name, r));
                }
                let m = std::fs::symlink_metadata(e.path()).ok()?;
                Some((name.clone(), disk_kind(&self.0, &dir.join(&name), &m)))
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        Some(items)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let full = self.checked(path)?;
        read_regular(&full, false)
    }

    fn kind(&self, path: &Path) -> Option<EntryKind> {
        let full = self.checked(path).ok()?;
        let m = std::fs::symlink_metadata(full).ok()?;
        Some(disk_kind(&self.0, path, &m))
    }
}

/// Read a regular file of at most [`MAX_FILE_BYTES`]. FIFOs, sockets and devices are refused
/// from their metadata, before any open; the open itself neither blocks nor (unless
/// `follow`) follows a symlink, and what was opened is checked again.
pub fn read_regular(path: &Path, follow: bool) -> io::Result<Vec<u8>> {
    let meta = if follow {
        std::fs::metadata(path)?
    } else {
        std::fs::symlink_metadata(path)?
    };
    let not_regular = |m: &std::fs::Metadata| {
        io::Error::other(if m.file_type().is_symlink() {
            "a symlink; refused (fleetwave does not follow symlinks in the repository)"
        } else if m.is_dir() {
            "a directory, not a file"
        } else {
            "not a regular file (a FIFO, socket or device); refused without reading it"
        })
    };
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let mut out = Vec::with_capacity(meta.len().min(MAX_FILE_BYTES) as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(out)
}

pub fn too_large() -> io::Error {
    io::Error::other(format!(
        "larger than {} MiB, the limit on any file fleetwave reads; refused",
        MAX_FILE_BYTES / (1024 * 1024)
    ))
}

/// Files held in memory, e.g. the blobs of a Git commit, plus the entries the policy refuses
/// (symlinks, oversized blobs, unreadable names) so they are reported as on disk.
#[derive(Debug, Clone, Default)]
pub struct MemTree {
    files: BTreeMap<PathBuf, Vec<u8>>,
    refused: BTreeMap<PathBuf, EntryKind>,
}

impl MemTree {
    pub fn new(files: BTreeMap<PathBuf, Vec<u8>>) -> Self {
        MemTree {
            files,
            refused: BTreeMap::new(),
        }
    }

    pub fn with_refused(mut self, refused: BTreeMap<PathBuf, EntryKind>) -> Self {
        self.refused = refused;
        self
    }

    pub fn files(&self) -> &BTreeMap<PathBuf, Vec<u8>> {
        &self.files
    }
}

impl FileTree for MemTree {
    fn list(&self, dir: &Path) -> Option<Vec<(String, EntryKind)>> {
        let mut out: BTreeMap<String, EntryKind> = BTreeMap::new();
        for p in self.files.keys().chain(self.refused.keys()) {
            let Ok(rest) = p.strip_prefix(dir) else {
                continue;
            };
            let mut comps = rest.components();
            let Some(first) = comps.next() else { continue };
            let name = first.as_os_str().to_string_lossy().to_string();
            let kind = if comps.next().is_some() {
                EntryKind::Dir
            } else if let Some(r) = self.refused.get(p) {
                r.clone()
            } else {
                EntryKind::File
            };
            let e = out.entry(name).or_insert_with(|| kind.clone());
            if kind.is_dir() {
                *e = EntryKind::Dir;
            }
        }
        (!out.is_empty() || dir.as_os_str().is_empty()).then(|| out.into_iter().collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        if let Some(EntryKind::Refused(_, why)) = self.refused.get(path) {
            return Err(io::Error::other(why.clone()));
        }
        self.files.get(path).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not in tree", path.display()),
            )
        })
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

/// Take the tree's apply lock (an OS lock on the root directory itself, so no file is left
/// in the tree), or say that another apply holds it. Held until the returned handle is
/// dropped or the process dies: two `apply`s on one tree never read and write interleaved.
pub fn lock_tree(root: &Path) -> io::Result<std::fs::File> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)?;
    match dir.try_lock() {
        Ok(()) => Ok(dir),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "another fleetwave apply is writing this tree; wait for it to finish",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Write every file or none. Each new content goes to a temporary file created exclusively,
/// with an unpredictable name, in the target's own directory; each is synced; only when all
/// are ready are they renamed over their targets. Any error before that removes the
/// temporary files and leaves the tree as it was; a rename failing half-way puts back the
/// files already renamed (`old` holds their contents). Targets must be regular files reached
/// without a symlink.
pub fn write_all(
    root: &Path,
    edits: &BTreeMap<PathBuf, String>,
    old: &dyn Fn(&Path) -> Option<String>,
) -> Result<(), (PathBuf, io::Error)> {
    let tree = DiskTree(root.to_path_buf());
    let mut ready = Vec::new();
    for (rel, text) in edits {
        let fail = |e: io::Error| (rel.clone(), e);
        let target = tree.checked(rel).map_err(fail)?;
        let meta = std::fs::symlink_metadata(&target).map_err(fail)?;
        if !meta.is_file() {
            return Err(fail(io::Error::other("no longer a regular file; refused")));
        }
        let tmp = staged(&target, text.as_bytes(), meta.permissions()).map_err(fail)?;
        ready.push((rel, target, tmp));
    }
    let mut done: Vec<(&PathBuf, PathBuf)> = Vec::new();
    for (rel, target, tmp) in ready {
        if let Err(e) = tmp.persist(&target) {
            for (r, t) in done {
                let perm = std::fs::symlink_metadata(&t).map(|m| m.permissions());
                if let (Some(text), Ok(perm)) = (old(r), perm) {
                    let _ = staged(&t, text.as_bytes(), perm)
                        .and_then(|f| f.persist(&t).map_err(|e| e.error));
                }
            }
            return Err((rel.clone(), e.error));
        }
        done.push((rel, target));
    }
    for (_, t) in &done {
        if let Some(dir) = t.parent() {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
    }
    Ok(())
}

/// `bytes` in a new temporary file beside `target`, synced, with `perm`.
fn staged(
    target: &Path,
    bytes: &[u8],
    perm: std::fs::Permissions,
) -> io::Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".fleetwave-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().set_permissions(perm)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
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
