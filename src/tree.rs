//! Where the fleet's files are read from: a directory on disk (`plan`, `apply`) or a commit
//! held in memory (the reconciler plans against the base branch without a checkout).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Read-only access to a tree of files, by `/`-separated relative paths.
pub trait FileTree: Sync {
    /// Entries of a directory as (name, is_dir), sorted by name; None if it is not a directory.
    fn list(&self, dir: &Path) -> Option<Vec<(String, bool)>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Some(true) for a directory, Some(false) for a file, None when absent.
    fn kind(&self, path: &Path) -> Option<bool>;
}

pub struct DiskTree(pub PathBuf);

impl FileTree for DiskTree {
    fn list(&self, dir: &Path) -> Option<Vec<(String, bool)>> {
        let entries = std::fs::read_dir(self.0.join(dir)).ok()?;
        let mut items: Vec<(String, bool)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                // Follow symlinks like kustomize does.
                let dir = std::fs::metadata(e.path()).ok()?.is_dir();
                Some((name, dir))
            })
            .collect();
        items.sort();
        Some(items)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(self.0.join(path))
    }

    fn kind(&self, path: &Path) -> Option<bool> {
        std::fs::metadata(self.0.join(path))
            .ok()
            .map(|m| m.is_dir())
    }
}

/// Files held in memory, e.g. the blobs of a Git commit.
#[derive(Debug, Clone, Default)]
pub struct MemTree {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl MemTree {
    pub fn new(files: BTreeMap<PathBuf, Vec<u8>>) -> Self {
        MemTree { files }
    }

    pub fn files(&self) -> &BTreeMap<PathBuf, Vec<u8>> {
        &self.files
    }
}

impl FileTree for MemTree {
    fn list(&self, dir: &Path) -> Option<Vec<(String, bool)>> {
        let mut out: BTreeMap<String, bool> = BTreeMap::new();
        let range = self.files.range(dir.to_path_buf()..);
        for (p, _) in range {
            let Ok(rest) = p.strip_prefix(dir) else { break };
            let mut comps = rest.components();
            let Some(first) = comps.next() else { continue };
            let name = first.as_os_str().to_string_lossy().to_string();
            let is_dir = comps.next().is_some();
            *out.entry(name).or_insert(is_dir) |= is_dir;
        }
        (!out.is_empty() || dir.as_os_str().is_empty()).then(|| out.into_iter().collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files.get(path).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not in tree", path.display()),
            )
        })
    }

    fn kind(&self, path: &Path) -> Option<bool> {
        if self.files.contains_key(path) {
            return Some(false);
        }
        self.files
            .range(path.to_path_buf()..)
            .next()
            .filter(|(p, _)| p.starts_with(path))
            .map(|_| true)
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
            vec![("b".to_string(), true), ("d.yaml".to_string(), false)]
        );
        assert_eq!(t.list(Path::new("")).unwrap().len(), 3);
        assert_eq!(t.kind(Path::new("a/b")), Some(true));
        assert_eq!(t.kind(Path::new("a/d.yaml")), Some(false));
        assert_eq!(t.kind(Path::new("a/zz")), None);
        assert!(t.list(Path::new("nope")).is_none());
        assert_eq!(t.read(Path::new("top.yaml")).unwrap(), b"top.yaml");
    }
}
