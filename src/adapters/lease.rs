//! Leader election with `coordination.k8s.io/v1` Leases: one Lease per plan
//! (`fleetwave-plan-<plan>`), so each plan has one acting replica, and one per replica
//! (`fleetwave-replica-<identity>`), so replicas can see each other and spread the plans.
//!
//! Each [`Elector::round`] lists the Leases of the namespace once, renews this replica's own
//! Lease, then per plan: renews a Lease it holds, follows one another replica holds, and takes
//! a free or expired one while it holds fewer than its share (`ceil(plans / live replicas)`);
//! above its share it releases Leases for the others. Every write is a PUT carrying the
//! `resourceVersion` read (or a POST for a new Lease): a 409 means another replica wrote first,
//! and this replica follows. Expiry is `renewTime + leaseDurationSeconds` against the caller's
//! clock, so replicas' clocks must agree to well within the lease duration. The Lease of a
//! replica gone for [`GONE_AFTER`] lease durations is deleted; plan Leases are kept.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, ListParams, PostParams};

/// Name prefix of the per-plan Leases.
pub const PLAN_PREFIX: &str = "fleetwave-plan-";
/// Name prefix of the per-replica Leases.
pub const REPLICA_PREFIX: &str = "fleetwave-replica-";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "fleetwave");
/// A replica's Lease unrenewed for this many lease durations is deleted by the others.
pub const GONE_AFTER: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {name}: {message}")]
    Api { name: String, message: String },
    #[error("cannot list the leases in namespace {namespace}: {message}")]
    List { namespace: String, message: String },
}

/// This replica's part for one plan after a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// This replica holds the plan's Lease: it acts.
    Leader,
    /// Another replica holds it (named), or it is free and left to another replica (None).
    Follower(Option<String>),
}

/// Who this replica is and how long its Leases last.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    /// Unique per replica (the pod name in Kubernetes).
    pub identity: String,
    pub duration: Duration,
}

/// What a round does with one Lease, decided from what was read (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Ours and live: write a new renewTime.
    Renew,
    /// Free, expired or someone else's that lapsed: take it (a new transition).
    Acquire,
    /// Live and someone else's.
    Follow(String),
}

/// Whether a Lease is free or lapsed at `now`.
pub fn expired(spec: &LeaseSpec, now: DateTime<Utc>) -> bool {
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    let Some(renewed) = spec.renew_time.as_ref().and_then(from_micro) else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    holder.is_empty() || renewed + chrono::Duration::seconds(secs) < now
}

/// What to do with a Lease read as `spec` (None: it does not exist).
pub fn act(spec: Option<&LeaseSpec>, me: &str, now: DateTime<Utc>) -> Act {
    match spec {
        None => Act::Acquire,
        Some(s) if expired(s, now) => Act::Acquire,
        Some(s) => match s.holder_identity.as_deref() {
            Some(h) if h == me => Act::Renew,
            h => Act::Follow(h.unwrap_or("").to_string()),
        },
    }
}

fn micro(t: DateTime<Utc>) -> MicroTime {
    let ts = k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    MicroTime(ts)
}

fn from_micro(t: &MicroTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(t.0.as_microsecond())
}

/// The Lease name of a plan (plan names are DNS-safe: lower-case, digits, `-`, `.`).
pub fn plan_lease(plan: &str) -> String {
    format!("{PLAN_PREFIX}{plan}")
}

/// The Lease name of a replica: its identity, lower-cased, other characters as `-`.
pub fn replica_lease(identity: &str) -> String {
    let clean: String = identity
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{REPLICA_PREFIX}{}", clean.trim_matches(['-', '.']))
}

/// Runs election rounds for one replica.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
}

impl Elector {
    pub fn new(client: kube::Client, cfg: LeaseConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// One round over `plans`: this replica's role for each.
    pub async fn round(
        &self,
        plans: &[String],
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, Role>, LeaseError> {
        let leases = self.list().await?;
        let me = &self.cfg.identity;
        let own = replica_lease(me);
        match self.write(&own, leases.get(&own), now).await {
            // Only this replica writes its own Lease; a lost write is retried next round.
            Ok(()) | Err(Conflict::Lost) => {}
            Err(Conflict::Failed(e)) => return Err(e),
        }
        let live = leases
            .iter()
            .filter(|(n, l)| {
                n.starts_with(REPLICA_PREFIX)
                    && **n != own
                    && l.spec.as_ref().is_some_and(|s| !expired(s, now))
            })
            .count()
            + 1;
        self.forget_gone(&leases, &own, now).await;
        let share = plans.len().div_ceil(live);
        let mut held = plans
            .iter()
            .filter(|p| {
                let spec = leases.get(&plan_lease(p)).and_then(|l| l.spec.as_ref());
                act(spec, me, now) == Act::Renew
            })
            .count();
        let mut roles = BTreeMap::new();
        for p in plans {
            let name = plan_lease(p);
            let lease = leases.get(&name);
            let role = match act(lease.and_then(|l| l.spec.as_ref()), me, now) {
                Act::Follow(h) => Role::Follower(Some(h)),
                Act::Renew if held > share && live > 1 => {
                    // Above this replica's share: leave it to another replica.
                    self.release(&name, lease, now).await?;
                    held -= 1;
                    Role::Follower(None)
                }
                Act::Renew => self.claim(&name, lease, now).await?,
                Act::Acquire if held < share => {
                    let r = self.claim(&name, lease, now).await?;
                    if r == Role::Leader {
                        held += 1;
                    }
                    r
                }
                Act::Acquire => Role::Follower(None),
            };
            roles.insert(p.clone(), role);
        }
        Ok(roles)
    }

    /// Give up every plan Lease this replica holds (at shutdown), so others take over at once.
    pub async fn release_all(&self, now: DateTime<Utc>) -> Result<usize, LeaseError> {
        let leases = self.list().await?;
        let mut n = 0;
        for (name, l) in &leases {
            let ours = l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                == Some(self.cfg.identity.as_str());
            if ours && (name.starts_with(PLAN_PREFIX) || *name == replica_lease(&self.cfg.identity))
            {
                self.release(name, Some(l), now).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Delete the Leases of replicas gone for [`GONE_AFTER`] lease durations (a Deployment's
    /// pods get new names on every rollout), at the resourceVersion read so a replica that
    /// came back is never deleted. Best effort: a failure waits for the next round.
    async fn forget_gone(&self, leases: &BTreeMap<String, Lease>, own: &str, now: DateTime<Utc>) {
        use kube::api::{DeleteParams, Preconditions};
        for (name, l) in leases {
            let Some(spec) = &l.spec else { continue };
            let renewed = spec.renew_time.as_ref().and_then(from_micro);
            let secs = i64::from(spec.lease_duration_seconds.unwrap_or(0)).max(1) * GONE_AFTER;
            let gone = renewed.is_none_or(|r| r + chrono::Duration::seconds(secs) < now);
            if !name.starts_with(REPLICA_PREFIX) || name == own || !gone {
                continue;
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: l.metadata.resource_version.clone(),
                    uid: None,
                }),
                ..Default::default()
            };
            if let Err(e) = self.api.delete(name, &dp).await {
                tracing::debug!(lease = %name, "not deleted: {e}");
            }
        }
    }

    async fn list(&self) -> Result<BTreeMap<String, Lease>, LeaseError> {
        let list = self
            .api
            .list(&ListParams::default())
            .await
            .map_err(|e| LeaseError::List {
                namespace: self.cfg.namespace.clone(),
                message: e.to_string(),
            })?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|l| l.metadata.name.clone().map(|n| (n, l)))
            .filter(|(n, _)| n.starts_with(PLAN_PREFIX) || n.starts_with(REPLICA_PREFIX))
            .collect())
    }

    /// Take or renew `name`: Leader when the write went through, Follower when another
    /// replica wrote first (409).
    async fn claim(
        &self,
        name: &str,
        lease: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Role, LeaseError> {
        match self.write(name, lease, now).await {
            Ok(()) => Ok(Role::Leader),
            Err(Conflict::Lost) => Ok(Role::Follower(None)),
            Err(Conflict::Failed(e)) => Err(e),
        }
    }

    /// Create `name` held by this replica, or replace it (renew, or take over with a new
    /// transition) at the resourceVersion read.
    async fn write(
        &self,
        name: &str,
        lease: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<(), Conflict> {
        let me = self.cfg.identity.clone();
        let old = lease.and_then(|l| l.spec.clone()).unwrap_or_default();
        let same = old.holder_identity.as_deref() == Some(me.as_str());
        let renew = same && !expired(&old, now);
        let spec = LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(self.cfg.duration.as_secs().max(1) as i32),
            renew_time: Some(micro(now)),
            acquire_time: if renew {
                old.acquire_time.clone()
            } else {
                Some(micro(now))
            },
            // A transition is a change of holder, as client-go counts them.
            lease_transitions: Some(
                old.lease_transitions.unwrap_or(0) + i32::from(lease.is_some() && !same),
            ),
            ..old
        };
        self.put(name, lease, spec).await
    }

    /// Clear the holder so another replica may take the Lease at once.
    async fn release(
        &self,
        name: &str,
        lease: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<(), LeaseError> {
        let old = lease.and_then(|l| l.spec.clone()).unwrap_or_default();
        let spec = LeaseSpec {
            holder_identity: None,
            renew_time: Some(micro(now)),
            ..old
        };
        match self.put(name, lease, spec).await {
            Ok(()) | Err(Conflict::Lost) => Ok(()),
            Err(Conflict::Failed(e)) => Err(e),
        }
    }

    async fn put(
        &self,
        name: &str,
        lease: Option<&Lease>,
        spec: LeaseSpec,
    ) -> Result<(), Conflict> {
        let err = |e: kube::Error| match &e {
            kube::Error::Api(s) if s.code == 409 => Conflict::Lost,
            _ => Conflict::Failed(LeaseError::Api {
                name: name.to_string(),
                message: e.to_string(),
            }),
        };
        match lease {
            Some(l) => {
                let mut new = l.clone();
                new.spec = Some(spec);
                self.api
                    .replace(name, &PostParams::default(), &new)
                    .await
                    .map(|_| ())
                    .map_err(err)
            }
            None => {
                let new = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(self.cfg.namespace.clone()),
                        labels: Some(BTreeMap::from([(
                            MANAGED_BY.0.to_string(),
                            MANAGED_BY.1.to_string(),
                        )])),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api
                    .create(&PostParams::default(), &new)
                    .await
                    .map(|_| ())
                    .map_err(err)
            }
        }
    }
}

/// A write that lost to another replica, or failed.
enum Conflict {
    Lost,
    Failed(LeaseError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed: DateTime<Utc>, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: Some(micro(renewed)),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_renewed_followed_or_taken_over_by_its_expiry() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-05T05:00:00Z")
            .unwrap()
            .to_utc();
        let s = spec(Some("a"), t0, 15);
        let at = |secs| t0 + chrono::Duration::seconds(secs);
        assert_eq!(act(Some(&s), "a", at(10)), Act::Renew);
        assert_eq!(act(Some(&s), "b", at(10)), Act::Follow("a".into()));
        assert_eq!(act(Some(&s), "b", at(15)), Act::Follow("a".into()));
        assert_eq!(act(Some(&s), "b", at(16)), Act::Acquire);
        assert_eq!(act(None, "b", at(0)), Act::Acquire);
        assert_eq!(act(Some(&spec(None, t0, 15)), "b", at(1)), Act::Acquire);
    }

    #[test]
    fn replica_lease_names_are_dns_safe() {
        assert_eq!(replica_lease("Pod_1"), "fleetwave-replica-pod-1");
        assert_eq!(plan_lease("k8s-1-34"), "fleetwave-plan-k8s-1-34");
    }
}
