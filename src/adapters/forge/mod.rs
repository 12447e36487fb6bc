//! Forges: where step pull requests live. The `local` forge keeps them as branches and
//! merge commits in Git; the GitHub forge (octocrab) implements the same trait, so `decide`
//! cannot tell them apart.

pub mod github;
pub mod local;

use std::collections::BTreeMap;

use crate::core::decide::PrObs;
use crate::core::state::GateState;

/// The dashboard line that changes every time it is written; ignored when comparing bodies.
pub const DASHBOARD_UPDATED: &str = "Updated ";

/// A step's branch and what fleetwave last knew of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRef {
    pub branch: String,
    pub pr: Option<u64>,
    /// The step commit fleetwave pushed last (None before the first push).
    pub head: Option<String>,
    /// Who may approve, when the wave has an approval gate (None: no approval needed).
    pub approval: Option<Approvers>,
}

/// The reviewers an approval gate accepts: the plan's `users` and `teams` (`org/team`), plus
/// those given on the command line. Both empty: any approving review by a collaborator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvers {
    pub users: Vec<String>,
    pub teams: Vec<String>,
}

/// What a step's pull request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrSpec {
    pub title: String,
    pub body: String,
    pub base: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error(transparent)]
    Git(#[from] crate::adapters::git::GitError),
    #[error("the base branch moved while merging; will retry on the next tick")]
    BaseMoved,
    #[error("{0}")]
    Api(String),
}

#[allow(async_fn_in_trait)]
pub trait Forge {
    /// The state of each step's pull request; steps with no branch and no PR are absent.
    async fn observe(
        &self,
        steps: &[StepRef],
        base_head: &str,
    ) -> Result<BTreeMap<String, PrObs>, ForgeError>;
    /// Open the step's pull request, or update its title and body; the branch is pushed already.
    async fn open(&self, step: &StepRef, spec: &PrSpec) -> Result<Option<u64>, ForgeError>;
    /// Post the `fleetwave/gate` status on the step's head.
    async fn set_status(
        &self,
        step: &StepRef,
        head: &str,
        state: GateState,
        description: &str,
    ) -> Result<(), ForgeError>;
    /// Merge the step at exactly `head`; returns the merge commit.
    async fn merge(&self, step: &StepRef, head: &str, message: &str) -> Result<String, ForgeError>;
    /// Write the step's managed comment (one per PR, edited in place).
    async fn comment(&self, _step: &StepRef, _body: &str) -> Result<(), ForgeError> {
        Ok(())
    }
    /// Close open pull requests under `prefix` that the current plan revision no longer has.
    async fn close_stale(
        &self,
        _prefix: &str,
        _keep: &[String],
    ) -> Result<Vec<String>, ForgeError> {
        Ok(Vec::new())
    }
    /// Close every open pull request under `prefix` (a plan deleted from the repository),
    /// saying `why` in a comment where the forge has comments; merged ones stay as they are.
    /// Returns what was closed.
    async fn close_prs(&self, _prefix: &str, _why: &str) -> Result<Vec<String>, ForgeError> {
        Ok(Vec::new())
    }
    /// Create or update the plan's dashboard issue (one per plan, edited in place).
    async fn dashboard(&self, _plan: &str, _body: &str) -> Result<(), ForgeError> {
        Ok(())
    }
    /// Whether this forge reads reviews, so approval gates can wait for an approving review.
    fn reviews(&self) -> bool {
        false
    }
    /// End of a tick: persist caches; returns the API calls made, where counted.
    fn finish_tick(&self) -> Option<usize> {
        None
    }
}
