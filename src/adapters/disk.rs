//! The fleet repository on disk: reading it under the path policy of [`crate::core::tree`]
//! ([`DiskTree`], [`read_regular`]), planning from a directory ([`prepare`]), and writing edits
//! all-or-nothing under the tree's lock ([`lock_tree`], [`write_all`]).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::core::diag::{Diag, Diags, Severity};
use crate::core::planner::{Planned, prepare_in};
use crate::core::tree::{EntryKind, FileTree, MAX_FILE_BYTES, link_kind, name_refusal, too_large};

/// The path to show for `p`: relative to the repo when inside it.
pub fn shown(repo: &Path, p: &Path) -> PathBuf {
    let abs = |x: &Path| std::fs::canonicalize(x).unwrap_or_else(|_| x.to_path_buf());
    abs(p)
        .strip_prefix(abs(repo))
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| p.to_path_buf())
}

pub fn prepare(repo: &Path, plan_path: &Path) -> Result<Planned, Diags> {
    let shown_plan = shown(repo, plan_path);
    // The operator names the plan on the command line, so a symlink is followed; it must
    // still be a regular file within the size limit.
    let bytes = read_regular(plan_path, true).map_err(|e| {
        Diag::whole_file(&shown_plan, format!("cannot read the plan: {e}"))
            .hint("pass the plan file with --plan")
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let ok = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
        Diag::new(
            &shown_plan,
            crate::core::yaml::LineIndex::new(&ok).position(&ok, at),
            "the plan is not UTF-8 text",
        )
        .hint("save the plan as UTF-8")
    })?;
    if !repo.is_dir() {
        return Err(
            Diag::whole_file(repo, "the fleet repository is not a directory")
                .hint("pass the repo's root with --repo")
                .into(),
        );
    }
    prepare_in(&DiskTree::new(repo.to_path_buf()), &shown_plan, text)
}

pub struct DiskTree {
    root: PathBuf,
    /// Directories already found plain (not symlinks) in this run: each is checked once, not
    /// once per file below it (a 10,000-cluster fleet has 42,000 files).
    plain_dirs: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

impl DiskTree {
    pub fn new(root: PathBuf) -> DiskTree {
        DiskTree {
            root,
            plain_dirs: Default::default(),
        }
    }

    /// Every component of `rel` must be a plain name and none of the ancestors a symlink.
    fn checked(&self, rel: &Path) -> io::Result<PathBuf> {
        let comps: Vec<Component> = rel.components().collect();
        let all_normal = comps.iter().all(|c| matches!(c, Component::Normal(_)));
        // A directory is recorded plain only after each of its ancestors was, so a plain
        // parent vouches for the whole path: one lookup instead of one per ancestor.
        if all_normal && comps.len() > 1 {
            let full = self.root.join(rel);
            if full.parent().is_some_and(|p| self.known_plain(p)) {
                return Ok(full);
            }
        }
        let mut at = self.root.clone();
        for (i, c) in comps.iter().enumerate() {
            let Component::Normal(s) = c else {
                return Err(io::Error::other("the path leaves the repository"));
            };
            at.push(s);
            if i + 1 < comps.len() && !self.known_plain(&at) {
                let m = std::fs::symlink_metadata(&at)?;
                if !m.is_dir() {
                    return Err(io::Error::other(format!(
                        "{} is not a plain directory (a symlink?); refused",
                        Path::new(s).display()
                    )));
                }
                self.plain_dirs
                    .lock()
                    .expect("dir cache")
                    .insert(at.clone());
            }
        }
        Ok(at)
    }

    /// The folders a listing of the plain folder `full` found, recorded plain: readdir's
    /// type says directory (a symlink says symlink), so the files below them are read with
    /// no stat of their folder.
    fn listed_plain(&self, full: &Path, items: &[(String, EntryKind)]) {
        let mut dirs = items
            .iter()
            .filter(|(_, k)| *k == EntryKind::Dir)
            .peekable();
        if dirs.peek().is_none() {
            return;
        }
        let mut plain = self.plain_dirs.lock().expect("dir cache");
        for (name, _) in dirs {
            plain.insert(full.join(name));
        }
    }

    fn known_plain(&self, dir: &Path) -> bool {
        self.plain_dirs.lock().expect("dir cache").contains(dir)
    }
}

/// What a file's metadata makes it under the policy (never following a symlink).
fn disk_kind(root: &Path, rel: &Path, t: std::fs::FileType) -> EntryKind {
    use std::os::unix::fs::FileTypeExt;
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
        let full = self.checked(dir).ok()?;
        // read_dir would follow a symlink: the folder itself must be plain too.
        if full != self.root && !self.known_plain(&full) {
            if !std::fs::symlink_metadata(&full).ok()?.is_dir() {
                return None;
            }
            self.plain_dirs
                .lock()
                .expect("dir cache")
                .insert(full.clone());
        }
        let entries = std::fs::read_dir(&full).ok()?;
        let mut items: Vec<(String, EntryKind)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let raw = e.file_name();
                let name = raw.to_string_lossy().into_owned();
                if let Some(r) = name_refusal(&name, raw.to_str().is_some()) {
                    return Some((name, r));
                }
                // The type readdir already gave: no stat per entry.
                let t = e.file_type().ok()?;
                Some((name.clone(), disk_kind(&self.root, &dir.join(&name), t)))
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        self.listed_plain(&full, &items);
        Some(items)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let full = self.checked(path)?;
        read_regular(&full, false)
    }

    fn kind(&self, path: &Path) -> Option<EntryKind> {
        let full = self.checked(path).ok()?;
        let m = std::fs::symlink_metadata(&full).ok()?;
        if m.is_dir() {
            // Its ancestors were checked plain and it is no symlink: its listing may vouch
            // for the folders in it (see `listed_plain`).
            self.plain_dirs.lock().expect("dir cache").insert(full);
        }
        Some(disk_kind(&self.root, path, m.file_type()))
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
    let tree = DiskTree::new(root.to_path_buf());
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
