//! The `local` forge: for teams with a plain Git server, and for the demo. A step's "pull
//! request" is its branch plus the record in fleetwave's state; "merge" is a merge commit on
//! the base branch pushed with a lease. Commit statuses are kept in the state only.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Forge, ForgeError, PrSpec, StepRef};
use crate::adapters::git::{GitError, GitRepo, Sig};
use crate::core::decide::PrObs;
use crate::core::state::GateState;

pub struct LocalForge<'a> {
    pub git: &'a GitRepo,
    pub base: String,
    /// Commits by this author on a step branch are fleetwave's own.
    pub author_email: String,
    pub sig: Sig,
}

impl LocalForge<'_> {
    /// The base commit that merged `head`, and when: the oldest first-parent commit of the
    /// base branch that contains it.
    fn find_merge(
        &self,
        head: &str,
        base_head: &str,
    ) -> Result<Option<(String, DateTime<Utc>)>, GitError> {
        if !self.git.is_ancestor(head, base_head)? {
            return Ok(None);
        }
        // Usually a merge commit names the head as a parent: find it cheaply first.
        let log = self.git.first_parent_log(base_head, 500)?;
        if let Some(c) = log
            .iter()
            .find(|c| c.parents.iter().skip(1).any(|p| p == head))
        {
            return Ok(Some((c.id.clone(), c.time)));
        }
        let mut found = None;
        for c in &log {
            if self.git.is_ancestor(head, &c.id)? {
                found = Some((c.id.clone(), c.time));
            } else {
                break;
            }
        }
        Ok(found)
    }
}

impl Forge for LocalForge<'_> {
    async fn observe(
        &self,
        steps: &[StepRef],
        base_head: &str,
    ) -> Result<BTreeMap<String, PrObs>, ForgeError> {
        let mut out = BTreeMap::new();
        for s in steps {
            let Some(head) = self.git.branch_head(&s.branch)? else {
                continue;
            };
            let merged = self.find_merge(&head, base_head)?;
            let own: Vec<_> = self.git.commits_between(base_head, &head)?;
            let foreign: Vec<String> = own
                .iter()
                .filter(|c| c.author_email != self.author_email)
                .map(|c| format!("{} by {}", &c.id[..c.id.len().min(10)], c.author_email))
                .collect();
            // The base a step commit sits on: the parent of the branch's oldest own commit.
            let base = own
                .first()
                .and_then(|c| c.parents.first().cloned())
                .unwrap_or_else(|| base_head.to_string());
            let tree = self.git.tree_id(&head)?;
            out.insert(
                s.branch.clone(),
                PrObs {
                    number: None,
                    head: head.clone(),
                    tree,
                    base,
                    open: merged.is_none(),
                    merged,
                    foreign,
                    approved: false,
                    needs_pr: false,
                },
            );
        }
        Ok(out)
    }

    async fn open(&self, _step: &StepRef, _spec: &PrSpec) -> Result<Option<u64>, ForgeError> {
        Ok(None)
    }

    async fn set_status(
        &self,
        _step: &StepRef,
        _head: &str,
        _state: GateState,
        _description: &str,
    ) -> Result<(), ForgeError> {
        Ok(())
    }

    /// A local "pull request" is its branch: closing one deletes an unmerged step branch
    /// (at the head read, so a branch that moved meanwhile is left alone). Merged branches
    /// and rollback branches stay.
    async fn close_prs(&self, prefix: &str, _why: &str) -> Result<Vec<String>, ForgeError> {
        let Some(base_head) = self.git.branch_head(&self.base)? else {
            return Ok(Vec::new());
        };
        let mut closed = Vec::new();
        for (branch, head) in self.git.branches(prefix)? {
            if branch.ends_with("/rollback") || self.git.is_ancestor(&head, &base_head)? {
                continue;
            }
            match self.git.delete_branch(&branch, &head) {
                Ok(()) => closed.push(branch),
                Err(GitError::LeaseLost { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(closed)
    }

    async fn merge(&self, step: &StepRef, head: &str, message: &str) -> Result<String, ForgeError> {
        let base_head = self
            .git
            .branch_head(&self.base)?
            .ok_or_else(|| ForgeError::Api(format!("base branch {} is gone", self.base)))?;
        if self.git.branch_head(&step.branch)?.as_deref() != Some(head) {
            return Err(ForgeError::Api(format!(
                "{} moved away from the verified head; not merging",
                step.branch
            )));
        }
        let merge = self
            .git
            .merge_commit(&base_head, head, message, &self.sig)?;
        match self.git.push(&self.base, &merge, Some(&base_head)) {
            Ok(()) => Ok(merge),
            Err(GitError::LeaseLost { .. }) => Err(ForgeError::BaseMoved),
            Err(e) => Err(e.into()),
        }
    }
}
