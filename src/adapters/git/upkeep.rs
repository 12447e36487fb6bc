//! Keeps the cache's loose objects in check. Every step branch, merge and state write adds
//! loose objects (one file each: a commit, the trees on the changed paths, the files), and
//! libgit2 has no `gc`. A `serve` or an Action's kept cache would gather them without end:
//! a whole rollout of 10,000 clusters writes tens of thousands. Past [`PACK_AT`] (estimated
//! when the cache is opened), they are written into one pack and the loose files removed,
//! as `git repack -d` followed by `git prune-packed` does. Nothing is pruned: an object no
//! ref reaches is packed all the same, which keeps this safe without a reachability walk.

use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

/// Estimated loose objects past which the cache packs them.
pub(super) const PACK_AT: usize = 10_000;

/// The loose objects in `objects/`, estimated from 4 of its 256 fan-out folders (object ids
/// are uniform).
pub(super) fn loose_estimate(gitdir: &Path) -> usize {
    let sampled: usize = ["00", "01", "02", "03"]
        .iter()
        .filter_map(|d| std::fs::read_dir(gitdir.join("objects").join(d)).ok())
        .map(Iterator::count)
        .sum();
    sampled * 64
}

/// Pack the loose objects of `repo` when there are more than [`PACK_AT`]; how many were
/// packed. A failure is only a warning: the cache works as it is, only larger.
pub(super) fn keep_small(repo: &Repository) -> usize {
    if loose_estimate(repo.path()) <= PACK_AT {
        return 0;
    }
    match pack_loose(repo) {
        Ok(n) => {
            tracing::info!(
                "packed {n} loose objects of the cache {}",
                repo.path().display()
            );
            n
        }
        Err(e) => {
            tracing::warn!("cannot pack the cache's loose objects: {}", e.message());
            0
        }
    }
}

/// Every loose object of the repository at `gitdir`, with its file.
fn loose_objects(gitdir: &Path) -> std::io::Result<Vec<(Oid, PathBuf)>> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(gitdir.join("objects"))? {
        let dir = dir?;
        let prefix = dir.file_name().to_string_lossy().into_owned();
        if prefix.len() != 2 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        for file in std::fs::read_dir(dir.path())? {
            let file = file?;
            let rest = file.file_name().to_string_lossy().into_owned();
            // Temporary files of a killed write are not objects.
            if let Ok(id) = Oid::from_str(&format!("{prefix}{rest}")) {
                if rest.len() == 38 {
                    out.push((id, file.path()));
                }
            }
        }
    }
    Ok(out)
}

/// Write every loose object of `repo` into one new pack, then remove the loose files;
/// how many were packed. The pack is indexed and in place before any file goes, so a
/// process killed midway leaves every object readable (loose, packed, or both).
pub(super) fn pack_loose(repo: &Repository) -> Result<usize, git2::Error> {
    let loose = loose_objects(repo.path())
        .map_err(|e| git2::Error::from_str(&format!("list loose objects: {e}")))?;
    if loose.is_empty() {
        return Ok(0);
    }
    let mut builder = repo.packbuilder()?;
    // The delta search is most of the cost (15,000 objects: 2 s on one core).
    builder.set_threads(0);
    for (id, _) in &loose {
        builder.insert_object(*id, None)?;
    }
    let odb = repo.odb()?;
    let mut writer = odb.packwriter()?;
    let mut failed = None;
    builder.foreach(|chunk| match writer.write_all(chunk) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    if let Some(e) = failed {
        return Err(git2::Error::from_str(&format!("write pack: {e}")));
    }
    writer.commit()?;
    odb.refresh()?;
    for (_, file) in &loose {
        let _ = std::fs::remove_file(file);
    }
    Ok(loose.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_objects_are_packed_and_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let ids: Vec<Oid> = (0..600)
            .map(|i| repo.blob(format!("object {i}\n").as_bytes()).unwrap())
            .collect();
        // A temporary file a killed write left is not an object, and stays.
        let tmp = dir.path().join("objects/00/tmp_obj_abc");
        std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
        std::fs::write(&tmp, b"partial").unwrap();
        let estimate = loose_estimate(dir.path());
        assert!((300..=1200).contains(&estimate), "{estimate}");

        assert_eq!(pack_loose(&repo).unwrap(), 600);
        assert_eq!(loose_objects(dir.path()).unwrap().len(), 0);
        assert!(tmp.exists());
        let fresh = Repository::open_bare(dir.path()).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let blob = fresh.find_blob(*id).unwrap();
            assert_eq!(blob.content(), format!("object {i}\n").as_bytes());
        }
        assert_eq!(pack_loose(&fresh).unwrap(), 0);
    }

    #[test]
    fn a_cache_past_the_threshold_is_packed_when_kept_small() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        for i in 0..200 {
            repo.blob(format!("few {i}\n").as_bytes()).unwrap();
        }
        assert_eq!(keep_small(&repo), 0, "200 objects stay loose");
        for i in 0..PACK_AT + PACK_AT / 3 {
            repo.blob(format!("many {i}\n").as_bytes()).unwrap();
        }
        assert_eq!(keep_small(&repo), PACK_AT + PACK_AT / 3 + 200);
        assert!(loose_estimate(dir.path()) == 0);
    }
}
