//! The side repository: a bare repository inside the cache that holds only what a push of
//! the state branch reads, so that push costs what the state changed. Used when libgit2
//! pushes the state (SSH remotes); local and HTTP remotes take fleetwave's own push (see
//! `sparse`), which needs no copy.
//!
//! Why: before it packs, libgit2 marks every remote head it holds locally as already sent by
//! walking that head's whole tree (it has no sparse walk, unlike git). From the cache, which
//! holds the fleet's branches, every state write walked the fleet's tens of thousands of
//! trees. The side repository holds only state commits, so the remote's fleet branches are
//! unknown to it and libgit2 skips them.
//!
//! What it holds, and what stays true even after a copy killed midway:
//! - every commit in it has its root tree and every tree under it (blobs are copied only
//!   when a push sends them: libgit2 marks a hidden tree's blobs without reading them);
//! - every commit whose parents it lacks is listed in its `shallow` file, which libgit2's
//!   revision walk honours by treating that commit as a root.
//!
//! Objects are written before the commit that names them, and a commit's `shallow` entry
//! before the commit. The side repository is a copy: when it cannot be opened, or has
//! gathered more loose objects than [`MAX_LOOSE`], it is built again.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use git2::{ObjectType, Odb, Oid, Repository};

/// The side repository's folder inside the cache.
const DIR: &str = "fleetwave-side.git";

/// Loose objects past which the side repository is built again: each state write adds a
/// few (a commit, its trees, the files that changed) and nothing else removes them.
const MAX_LOOSE: usize = 20_000;

/// Whether the repository at `dir` holds more than [`MAX_LOOSE`] loose objects.
fn too_big(dir: &Path) -> bool {
    super::upkeep::loose_estimate(dir) > MAX_LOOSE
}

/// Open, or create, the side repository of the cache at `cache`.
pub(super) fn open(cache: &Path) -> Result<Repository, git2::Error> {
    let dir = cache.join(DIR);
    if too_big(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    // `open`, not `open_bare`: only the former reads the `shallow` file.
    match Repository::open(&dir) {
        Ok(r) => Ok(r),
        Err(_) => {
            // A copy: whatever is there (a killed init, a damaged folder) is rebuilt.
            let _ = std::fs::remove_dir_all(&dir);
            Repository::init_bare(&dir)
        }
    }
}

/// Copy into `side` what a push of `new` over the remote's `expected` reads: both commits,
/// their trees, and the blobs of `new` that `expected` does not have.
pub(super) fn copy_for_push(
    main: &Repository,
    side: &Repository,
    new: Oid,
    expected: Option<Oid>,
) -> Result<(), git2::Error> {
    let from = main.odb()?;
    let to = side.odb()?;
    let mut sent_already = HashSet::new();
    if let Some(old) = expected {
        let tree = main.find_commit(old)?.tree_id();
        copy_tree(main, &from, &to, tree, &mut |blob| {
            sent_already.insert(blob);
            false
        })?;
        copy_commit(main, side.path(), &from, &to, old)?;
    }
    let tree = main.find_commit(new)?.tree_id();
    copy_tree(main, &from, &to, tree, &mut |blob| {
        !sent_already.contains(&blob)
    })?;
    copy_commit(main, side.path(), &from, &to, new)
}

/// Copy tree `id` and every tree under it that `to` lacks, children first; a blob is
/// copied when `wanted(blob)` says so and `to` lacks it.
fn copy_tree(
    main: &Repository,
    from: &Odb<'_>,
    to: &Odb<'_>,
    id: Oid,
    wanted: &mut dyn FnMut(Oid) -> bool,
) -> Result<(), git2::Error> {
    let tree = main.find_tree(id)?;
    for entry in tree.iter() {
        match entry.kind() {
            Some(ObjectType::Tree) => copy_tree(main, from, to, entry.id(), wanted)?,
            Some(ObjectType::Blob) if wanted(entry.id()) && !to.exists(entry.id()) => {
                to.write(ObjectType::Blob, from.read(entry.id())?.data())?;
            }
            _ => {}
        }
    }
    if !to.exists(id) {
        to.write(ObjectType::Tree, from.read(id)?.data())?;
    }
    Ok(())
}

/// Copy commit `id` (its tree is already there); listed as shallow first when `side` lacks
/// one of its parents.
fn copy_commit(
    main: &Repository,
    side: &Path,
    from: &Odb<'_>,
    to: &Odb<'_>,
    id: Oid,
) -> Result<(), git2::Error> {
    if to.exists(id) {
        return Ok(());
    }
    let commit = main.find_commit(id)?;
    if commit.parent_ids().any(|p| !to.exists(p)) {
        add_shallow(side, id)?;
    }
    to.write(ObjectType::Commit, from.read(id)?.data())?;
    Ok(())
}

/// Append `id` to the `shallow` file (written aside, then renamed into place).
fn add_shallow(gitdir: &Path, id: Oid) -> Result<(), git2::Error> {
    let path = gitdir.join("shallow");
    let io = |e: std::io::Error| git2::Error::from_str(&format!("{}: {e}", path.display()));
    let mut text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let line = id.to_string();
    if text.lines().any(|l| l == line) {
        return Ok(());
    }
    text.push_str(&line);
    text.push('\n');
    let mut tmp = tempfile::NamedTempFile::new_in(gitdir).map_err(io)?;
    tmp.write_all(text.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(&path).map_err(|e| io(e.error))?;
    Ok(())
}
