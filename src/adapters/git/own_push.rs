//! fleetwave's own push, for local bare remotes and smart HTTP: it sends the objects
//! `sparse` picks, checks the lease itself, and reads the branch back when an answer is
//! lost. Where it cannot start (SSH, a remote it cannot list) it says so, changing
//! nothing, and the caller pushes with libgit2.

use std::path::Path;

use git2::{ErrorCode, Oid, Repository};

use super::{
    Auth, GitError, GitRepo, SPARSE_OBJECTS, ca_bundle_for_https_remote, is_http, lease_lost,
    local_remote_dir, smart_http, sparse,
};

/// How a push that chose its own objects ended.
enum Sparse {
    Done(Result<(), GitError>),
    /// Nothing was changed on the remote; libgit2 pushes instead, for this reason.
    Fallback(String),
}

impl GitRepo {
    /// fleetwave's own push of `new` (None: delete), or `libgit2` where it cannot start.
    pub(super) fn push_own_or(
        &self,
        branch: &str,
        new: Option<Oid>,
        expected: Option<Oid>,
        libgit2: impl FnOnce() -> Result<(), GitError>,
    ) -> Result<(), GitError> {
        match self.push_own(branch, new, expected) {
            Sparse::Done(result) => result,
            Sparse::Fallback(why) => {
                tracing::debug!("{branch} with libgit2: {why}");
                libgit2()
            }
        }
    }

    /// The push that picks its own objects, where the remote allows it; `new` None deletes.
    fn push_own(&self, branch: &str, new: Option<Oid>, expected: Option<Oid>) -> Sparse {
        if let Some(dir) = local_remote_dir(&self.url) {
            self.push_local(&dir, branch, new, expected)
        } else if is_http(&self.url) {
            self.push_http(branch, new, expected)
        } else {
            Sparse::Fallback("SSH remote".into())
        }
    }

    /// [`GitRepo::push`] into a local bare repository: the objects it lacks are written as
    /// one pack, and the ref moved with a compare-and-swap, under the push lock.
    fn push_local(
        &self,
        dir: &Path,
        branch: &str,
        new: Option<Oid>,
        expected: Option<Oid>,
    ) -> Sparse {
        let refname = format!("refs/heads/{branch}");
        let _lock = match self.lock_local_remote() {
            Ok(l) => l,
            Err(e) => return Sparse::Done(Err(e)),
        };
        self.clear_stale_ref_lock(&refname);
        let remote = match Repository::open(dir) {
            Ok(r) if r.is_bare() => r,
            // libgit2 refuses to push into a work tree, with its own message.
            Ok(_) => return Sparse::Fallback("not a bare repository".into()),
            Err(e) => return Sparse::Fallback(e.message().to_string()),
        };
        let done = |r: Result<(), git2::Error>, what: &str| {
            r.map_err(|e| self.err(format!("push {branch}: {what}"), &e))
        };
        let found = match remote.refname_to_id(&refname) {
            Ok(id) => Some(id),
            Err(e) if e.code() == ErrorCode::NotFound => None,
            Err(e) => return Sparse::Done(done(Err(e), "read the branch")),
        };
        if found != expected {
            return Sparse::Done(Err(lease_lost(branch, expected, found)));
        }
        let tips = match local_tips(&remote) {
            Ok(t) => t,
            Err(e) => return Sparse::Done(done(Err(e), "list the remote's refs")),
        };
        // Nothing refers to what was copied until the ref moves: a failure changed nothing.
        let copied = new.map_or(Ok(0), |new| copy_objects(&self.repo, &remote, new, &tips));
        let sent = match copied {
            Ok(n) => n,
            Err(e) => return Sparse::Fallback(format!("copy objects: {}", e.message())),
        };
        match move_ref(&remote, &refname, new, expected) {
            Ok(_) => {}
            // Someone else (not a fleetwave, which takes the lock) moved it since the check.
            Err(e) if matches!(e.code(), ErrorCode::Modified | ErrorCode::Exists) => {
                let found = remote.refname_to_id(&refname).ok();
                return Sparse::Done(Err(lease_lost(branch, expected, found)));
            }
            Err(e) => return Sparse::Done(done(Err(e), "update the branch")),
        }
        SPARSE_OBJECTS.fetch_add(sent as u64, std::sync::atomic::Ordering::Relaxed);
        Sparse::Done(self.follow_push(branch, new))
    }

    /// [`GitRepo::push`] over smart HTTP (see `smart_http`).
    fn push_http(&self, branch: &str, new: Option<Oid>, expected: Option<Oid>) -> Sparse {
        let refname = format!("refs/heads/{branch}");
        let basic = match &self.auth {
            Auth::None => None,
            Auth::Token(t) => Some(smart_http::Basic {
                user: "x-access-token".into(),
                secret: t.clone(),
            }),
            Auth::UserPass { user, secret } => Some(smart_http::Basic {
                user: user.clone(),
                secret: secret.clone(),
            }),
            Auth::SshAgent | Auth::SshKey { .. } => {
                return Sparse::Fallback("SSH credentials for an HTTP remote".into());
            }
        };
        ca_bundle_for_https_remote(&self.url);
        let cache = self.repo.path();
        match smart_http::push(cache, &self.url, basic, &refname, new, expected) {
            Ok(smart_http::Answer::Lost(found)) => {
                Sparse::Done(Err(lease_lost(branch, expected, found)))
            }
            Ok(smart_http::Answer::Report(report, sent)) => {
                self.after_report(branch, new, expected, report, sent)
            }
            Err(smart_http::Failure::NotSent(why)) => Sparse::Fallback(why),
            Err(smart_http::Failure::Unknown(why)) => self.read_back(branch, new, expected, why),
        }
    }

    /// What a `report-status` means for the push of `branch`.
    fn after_report(
        &self,
        branch: &str,
        new: Option<Oid>,
        expected: Option<Oid>,
        report: smart_http::Report,
        sent: usize,
    ) -> Sparse {
        let refname = format!("refs/heads/{branch}");
        if let Err(why) = report.unpack {
            // Nothing was updated: the remote could not take the pack.
            tracing::warn!(
                "push {branch}: the remote could not unpack ({why}); retrying with libgit2"
            );
            return Sparse::Fallback(why);
        }
        match report.refs.get(&refname) {
            Some(Ok(())) => {
                SPARSE_OBJECTS.fetch_add(sent as u64, std::sync::atomic::Ordering::Relaxed);
                Sparse::Done(self.follow_push(branch, new))
            }
            Some(Err(why)) if why.contains("missing necessary objects") => {
                tracing::warn!(
                    "push {branch}: the pack lacked objects ({why}); retrying with libgit2"
                );
                Sparse::Fallback(why.clone())
            }
            Some(Err(why)) => {
                // Smart servers compare the old value themselves; tell a race from a refusal.
                let found = match self.remote_head(&refname) {
                    Ok(f) => f,
                    Err(e) => return Sparse::Done(Err(e)),
                };
                if found != expected && found != new {
                    return Sparse::Done(Err(lease_lost(branch, expected, found)));
                }
                Sparse::Done(Err(GitError::Rejected {
                    branch: branch.to_string(),
                    reason: why.clone(),
                }))
            }
            None => self.read_back(
                branch,
                new,
                expected,
                "the report did not name the branch".into(),
            ),
        }
    }

    /// The answer to a push was lost: the branch as the remote has it says what happened.
    fn read_back(
        &self,
        branch: &str,
        new: Option<Oid>,
        expected: Option<Oid>,
        why: String,
    ) -> Sparse {
        let refname = format!("refs/heads/{branch}");
        match self.remote_head(&refname) {
            Ok(found) if found == new => {
                let shown = new.map_or("deleted".to_string(), |n| format!("at {n}"));
                tracing::warn!("push {branch}: {why}; the remote shows the branch {shown}");
                Sparse::Done(self.follow_push(branch, new))
            }
            // Not applied: pushing again under the same lease is safe.
            Ok(found) if found == expected => Sparse::Fallback(why),
            Ok(found) => Sparse::Done(Err(lease_lost(branch, expected, found))),
            Err(e) => Sparse::Done(Err(GitError::Git {
                context: format!("push {branch}"),
                message: format!("{why}; reading the branch back failed too: {e}"),
            })),
        }
    }
}

/// Every ref tip of a local repository: what a pack into it may leave out.
fn local_tips(repo: &Repository) -> Result<Vec<Oid>, git2::Error> {
    let mut tips = Vec::new();
    for r in repo.references()? {
        if let Some(id) = r?.resolve().ok().and_then(|r| r.target()) {
            tips.push(id);
        }
    }
    Ok(tips)
}

/// Move (or, `new` None, delete) `refname` in a local repository if it is at `expected`.
fn move_ref(
    remote: &Repository,
    refname: &str,
    new: Option<Oid>,
    expected: Option<Oid>,
) -> Result<(), git2::Error> {
    const WHY: &str = "fleetwave: push";
    match (new, expected) {
        (Some(new), Some(old)) => remote.reference_matching(refname, new, true, old, WHY)?,
        (Some(new), None) => remote.reference(refname, new, false, WHY)?,
        // libgit2 deletes a ref only if it still has the value it was read with.
        (None, Some(_)) => return remote.find_reference(refname)?.delete(),
        (None, None) => return Ok(()),
    };
    Ok(())
}

/// Write into `to` the objects of `new` it lacks, as one pack; how many were written.
fn copy_objects(
    from: &Repository,
    to: &Repository,
    new: Oid,
    tips: &[Oid],
) -> Result<usize, git2::Error> {
    let odb = to.odb()?;
    let mut objects = sparse::new_objects(from, new, tips)?;
    objects.retain(|id| !odb.exists(*id));
    if objects.is_empty() {
        return Ok(0);
    }
    let pack = sparse::pack(from, &objects)?;
    let mut writer = odb.packwriter()?;
    std::io::Write::write_all(&mut writer, &pack)
        .map_err(|e| git2::Error::from_str(&format!("write pack: {e}")))?;
    writer.commit()?;
    Ok(objects.len())
}
