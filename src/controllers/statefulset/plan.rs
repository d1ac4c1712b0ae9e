//! What a StatefulSet needs next, decided from the set, its two revisions and its pods, as
//! upstream's `updateStatefulSet` (`stateful_set_control.go`) decides it. Pure: the controller
//! writes the [`Step`]s in order and stops at the first failure.
//!
//! The pods are split into *replicas* (ordinals `start..start+replicas`, missing ones made from
//! the revision their ordinal should run) and *condemned* (ordinals beyond, newest first). Then:
//!
//! 1. each replica in ordinal order: a failed or succeeded pod is deleted (to be made again); a
//!    missing one is created, its claims first (not while an old claim of that name is still
//!    going); a pending one gets any missing claims; one whose identity or storage drifted is
//!    repaired; its claims get the owners the retention policy wants. Under `OrderedReady`
//!    ("monotonic") the first creation, or a replica not yet Running, Ready and available (or
//!    terminating), ends the pass; under `Parallel` all are handled at once;
//! 2. condemned pods' claims get their owners, then condemned pods are deleted, highest ordinal
//!    first: one per pass, and only when every replica is healthy (`OrderedReady`), or all at
//!    once (`Parallel`);
//! 3. unless the strategy is `OnDelete`, the rolling update: from the highest ordinal down to the
//!    partition, the first pod not at the update revision is deleted (it comes back at the new
//!    one); an unavailable pod on the way ends the pass.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

use super::claims;
use super::identity::{
    self, claims_for, identity_matches, in_range, is_available, is_created, is_running_and_ready,
    is_terminating, is_unavailable, name, new_pod, ordinal, phase, revision_of, set_revision,
    start_ordinal, storage_matches, update_identity, update_storage,
};

/// What the planner reads.
pub struct Input<'a> {
    /// The set as stored.
    pub set: &'a StatefulSet,
    /// The set with the current revision's template.
    pub current: &'a StatefulSet,
    /// The set with the update revision's template.
    pub update: &'a StatefulSet,
    /// The current revision's name.
    pub current_revision: &'a str,
    /// The update revision's name.
    pub update_revision: &'a str,
    /// `status.collisionCount` as it stands after choosing the revisions.
    pub collision_count: i32,
    /// The set's pods (claimed: controlled by it, named after it).
    pub pods: &'a [&'a Pod],
    /// The claims of the set's namespace, by name.
    pub claims: &'a BTreeMap<String, &'a PersistentVolumeClaim>,
    /// The time availability is judged at.
    pub now: jiff::Timestamp,
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It failed or succeeded; it is made again.
    Finished,
    /// Its ordinal is beyond `replicas`.
    ScaleDown,
    /// It runs an older revision than the update revision.
    Update,
}

/// One write, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the claims the pod lacks, then the pod.
    CreatePod {
        /// The pod.
        pod: Box<Pod>,
        /// Its missing claims, created first.
        claims: Vec<PersistentVolumeClaim>,
    },
    /// Create claims a pending pod lacks.
    CreateClaims {
        /// The pod's name.
        pod: String,
        /// The missing claims.
        claims: Vec<PersistentVolumeClaim>,
    },
    /// Give an existing pod back its identity and storage (its missing claims created first).
    UpdatePod {
        /// The pod as it should be.
        pod: Box<Pod>,
        /// Its missing claims.
        claims: Vec<PersistentVolumeClaim>,
    },
    /// Set a claim's owner references as the retention policy wants.
    UpdateClaim {
        /// The pod whose claim it is.
        pod: String,
        /// The claim with its new references.
        claim: Box<PersistentVolumeClaim>,
    },
    /// Delete a pod.
    DeletePod {
        /// The pod's name.
        pod: String,
        /// Why.
        reason: Reason,
    },
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The status to record (before [`finish_status`]).
    pub status: StatefulSetStatus,
    /// The writes, in order.
    pub steps: Vec<Step>,
    /// What the pass stopped at, in words, if it stopped before the end.
    pub waiting: Option<String>,
}

fn min_ready(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn monotonic(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        != Some("Parallel")
}

fn strategy(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// `Some(partition)` when the strategy has a `rollingUpdate` (partition 0 if unset).
fn partition(set: &StatefulSet) -> Option<i32> {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .map(|r| r.partition.unwrap_or(0))
}

/// The replica counts over `pods` (`computeReplicaStatus`).
fn count(status: &mut StatefulSetStatus, input: &Input<'_>, pods: &[&Pod]) {
    let min_ready = min_ready(input.set);
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods {
        if is_created(pod) {
            replicas += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, input.now) {
                available += 1;
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            let revision = revision_of(pod);
            if revision == input.current_revision {
                current += 1;
            }
            if revision == input.update_revision {
                updated += 1;
            }
        }
    }
    status.replicas = replicas;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(current);
    status.updated_replicas = Some(updated);
}

/// A missing pod at `ordinal` made from the revision it should run
/// (`newVersionedStatefulSetPod`, with upstream's operator precedence: a `rollingUpdate`
/// partition applies whatever the strategy type says).
fn versioned_pod(input: &Input<'_>, ordinal: i32) -> Pod {
    let current = input.current;
    let start = start_ordinal(current);
    let current_replicas = current
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let at_current = match partition(current) {
        None => strategy(current) == "RollingUpdate" && ordinal < start + current_replicas,
        Some(p) => ordinal < start + p,
    };
    let (from, revision) = if at_current {
        (current, input.current_revision)
    } else {
        (input.update, input.update_revision)
    };
    let mut pod = new_pod(from, ordinal);
    set_revision(&mut pod, revision);
    pod
}

/// The pod's claims that the cache does not hold, with the owners the policy wants.
fn missing_claims(input: &Input<'_>, pod: &Pod) -> Vec<PersistentVolumeClaim> {
    let Some(ordinal) = ordinal(pod) else {
        return Vec::new();
    };
    claims_for(input.set, ordinal)
        .into_iter()
        .filter(|(_, c)| !input.claims.contains_key(name(&c.metadata)))
        .map(|(_, mut c)| {
            claims::update_owner_refs(&mut c, input.set, pod);
            c
        })
        .collect()
}

/// The claims (held in the cache) whose owners the policy wants otherwise, updated.
fn claim_fixes(input: &Input<'_>, pod: &Pod) -> Vec<Step> {
    let Some(ordinal) = ordinal(pod) else {
        return Vec::new();
    };
    claims_for(input.set, ordinal)
        .into_iter()
        .filter_map(|(_, wanted)| input.claims.get(name(&wanted.metadata)).copied())
        .filter(|c| !claims::owner_up_to_date(c, input.set, pod))
        .map(|c| {
            let mut claim = c.clone();
            claims::update_owner_refs(&mut claim, input.set, pod);
            Step::UpdateClaim {
                pod: name(&pod.metadata).to_owned(),
                claim: Box::new(claim),
            }
        })
        .collect()
}

/// What the pass does with one replica; `Err(words)` when a monotonic pass stops there.
fn replica(input: &Input<'_>, pod: &Pod, steps: &mut Vec<Step>) -> Result<(), String> {
    let monotonic = monotonic(input.set);
    let pod_name = name(&pod.metadata).to_owned();
    if matches!(phase(pod), "Failed" | "Succeeded") {
        if !is_terminating(pod) {
            steps.push(Step::DeletePod {
                pod: pod_name.clone(),
                reason: Reason::Finished,
            });
        }
        return Err(format!("{pod_name} is {}: it is made again", phase(pod)));
    }
    if !is_created(pod) {
        let ordinal = ordinal(pod).unwrap_or_default();
        let stale = claims_for(input.set, ordinal)
            .iter()
            .filter_map(|(_, c)| input.claims.get(name(&c.metadata)))
            .find(|c| claims::is_stale(input.set, c, pod))
            .map(|c| name(&c.metadata).to_owned());
        if let Some(claim) = stale {
            return Err(format!(
                "claim {claim} of an earlier {pod_name} is still being deleted"
            ));
        }
        steps.push(Step::CreatePod {
            pod: Box::new(pod.clone()),
            claims: missing_claims(input, pod),
        });
        if monotonic {
            return Err(format!("{pod_name} is being created"));
        }
        return Ok(());
    }
    if phase(pod) == "Pending" {
        let missing = missing_claims(input, pod);
        if !missing.is_empty() {
            steps.push(Step::CreateClaims {
                pod: pod_name.clone(),
                claims: missing,
            });
        }
    }
    if monotonic {
        if is_terminating(pod) {
            return Err(format!("waiting for {pod_name} to terminate"));
        }
        if !is_running_and_ready(pod) {
            return Err(format!("waiting for {pod_name} to be Running and Ready"));
        }
        if !is_available(pod, min_ready(input.set), input.now) {
            return Err(format!("waiting for {pod_name} to be available"));
        }
    }
    if is_terminating(pod) {
        return Ok(());
    }
    if !identity_matches(input.set, pod) || !storage_matches(input.set, pod) {
        let mut repaired = pod.clone();
        update_identity(input.update, &mut repaired);
        update_storage(input.update, &mut repaired);
        steps.push(Step::UpdatePod {
            claims: missing_claims(input, &repaired),
            pod: Box::new(repaired),
        });
    }
    steps.extend(claim_fixes(input, pod));
    Ok(())
}

/// Plans one pass over the set (`updateStatefulSet`).
pub fn plan(input: &Input<'_>) -> Plan {
    let set = input.set;
    let min_ready = min_ready(set);
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(input.current_revision.to_owned()),
        update_revision: Some(input.update_revision.to_owned()),
        collision_count: Some(input.collision_count),
        ..Default::default()
    };
    count(&mut status, input, input.pods);
    let mut plan = Plan {
        status: status.clone(),
        steps: Vec::new(),
        waiting: None,
    };
    if set.metadata.deletion_timestamp.is_some() {
        return plan;
    }

    let start = start_ordinal(set);
    let replica_count = identity::replicas(set);
    let mut slots: Vec<Option<&Pod>> = vec![None; replica_count as usize];
    let mut condemned: Vec<&Pod> = Vec::new();
    for pod in input.pods.iter().copied() {
        match ordinal(pod) {
            Some(o) if in_range(set, o) => slots[(o - start) as usize] = Some(pod),
            Some(_) => condemned.push(pod),
            None => {}
        }
    }
    let made: Vec<Pod> = slots
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_none())
        .map(|(i, _)| versioned_pod(input, start + i as i32))
        .collect();
    let mut made_iter = made.iter();
    let replicas: Vec<&Pod> = slots
        .iter()
        .map(|p| p.unwrap_or_else(|| made_iter.next().expect("one made per gap")))
        .collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
    let first_unhealthy = replicas
        .iter()
        .chain(condemned.iter().rev())
        .find(|p| is_unavailable(p, min_ready, input.now))
        .map(|p| name(&p.metadata).to_owned());

    let everything: Vec<&Pod> = replicas.iter().chain(condemned.iter()).copied().collect();
    let finish = |mut plan: Plan, waiting: Option<String>| {
        count(&mut plan.status, input, &everything);
        plan.waiting = waiting;
        plan
    };
    let monotonic = monotonic(set);

    // 1. The replicas, in ordinal order.
    let mut stop = None;
    for pod in &replicas {
        if let Err(why) = replica(input, pod, &mut plan.steps) {
            if monotonic {
                return finish(plan, Some(why));
            }
            stop.get_or_insert(why);
        }
    }
    // 2. The condemned pods' claims, then the pods, highest ordinal first.
    for pod in &condemned {
        plan.steps.extend(claim_fixes(input, pod));
    }
    for pod in &condemned {
        let pod_name = name(&pod.metadata).to_owned();
        if is_terminating(pod) {
            if monotonic {
                return finish(plan, Some(format!("waiting for {pod_name} to terminate")));
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == Some(pod_name.as_str());
        if monotonic && !first && !is_running_and_ready(pod) {
            let blocker = first_unhealthy.clone().unwrap_or_default();
            return finish(
                plan,
                Some(format!(
                    "waiting for {blocker} to be Running and Ready before scaling down"
                )),
            );
        }
        if monotonic && !first && !is_available(pod, min_ready, input.now) {
            let blocker = first_unhealthy.clone().unwrap_or_default();
            return finish(
                plan,
                Some(format!(
                    "waiting for {blocker} to be available before scaling down"
                )),
            );
        }
        plan.steps.push(Step::DeletePod {
            pod: pod_name.clone(),
            reason: Reason::ScaleDown,
        });
        if monotonic {
            return finish(plan, Some(format!("{pod_name} is being deleted")));
        }
    }
    let mut plan = finish(plan, stop);
    // 3. The rolling update, from the highest ordinal down to the partition.
    if strategy(set) == "OnDelete" {
        return plan;
    }
    let update_min = partition(set).unwrap_or(0).max(0) as usize;
    for target in (update_min..replicas.len()).rev() {
        let pod = replicas[target];
        let pod_name = name(&pod.metadata).to_owned();
        if revision_of(pod) != input.update_revision && !is_terminating(pod) {
            plan.steps.push(Step::DeletePod {
                pod: pod_name.clone(),
                reason: Reason::Update,
            });
            if let Some(c) = plan.status.current_replicas.as_mut() {
                *c -= 1;
            }
            plan.waiting
                .get_or_insert(format!("{pod_name} is being updated"));
            return plan;
        }
        if is_unavailable(pod, min_ready, input.now) {
            plan.waiting.get_or_insert(format!(
                "waiting for {pod_name} to be updated and available"
            ));
            return plan;
        }
    }
    plan
}

/// The status to write, if it differs from the set's (`completeRollingUpdate`, then
/// `inconsistentStatus`): a rolling update whose every replica is updated and ready makes the
/// update revision current.
pub fn finish_status(
    set: &StatefulSet,
    mut status: StatefulSetStatus,
) -> Option<StatefulSetStatus> {
    let replicas = identity::replicas(set);
    if strategy(set) == "RollingUpdate"
        && status.updated_replicas.unwrap_or(0) == replicas
        && status.ready_replicas.unwrap_or(0) == replicas
        && status.replicas == replicas
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
    let old = set.status.clone().unwrap_or_default();
    let zero = |v: Option<i32>| v.unwrap_or(0);
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let changed = status.observed_generation.unwrap_or(0) > old.observed_generation.unwrap_or(0)
        || status.replicas != old.replicas
        || zero(status.current_replicas) != zero(old.current_replicas)
        || zero(status.ready_replicas) != zero(old.ready_replicas)
        || zero(status.updated_replicas) != zero(old.updated_replicas)
        || text(&status.current_revision) != text(&old.current_revision)
        || zero(status.available_replicas) != zero(old.available_replicas)
        || text(&status.update_revision) != text(&old.update_revision);
    changed.then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::identity::tests::web;
    use serde_json::json;

    const NOW: &str = "2025-01-01T00:10:00Z";

    fn now() -> jiff::Timestamp {
        NOW.parse().unwrap()
    }

    /// `web` with `replicas`, a policy and a strategy.
    fn set(replicas: i32, policy: &str, strategy: serde_json::Value) -> StatefulSet {
        let mut s = web();
        let spec = s.spec.as_mut().unwrap();
        spec.replicas = Some(replicas);
        spec.pod_management_policy = Some(policy.into());
        spec.update_strategy = Some(serde_json::from_value(strategy).unwrap());
        s.metadata.generation = Some(2);
        s
    }

    fn rolling(partition: i32) -> serde_json::Value {
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}})
    }

    /// A created pod of `web` at `ordinal` in `state` (`ready`, `running`, `pending`,
    /// `failed`, `terminating`, `fresh`: ready since just now) at `revision`.
    fn pod(s: &StatefulSet, ordinal: i32, state: &str, revision: &str) -> Pod {
        let mut p = new_pod(s, ordinal);
        set_revision(&mut p, revision);
        let (phase, ready, since) = match state {
            "ready" | "terminating" => ("Running", "True", "2025-01-01T00:00:00Z"),
            "fresh" => ("Running", "True", NOW),
            "running" => ("Running", "False", "2025-01-01T00:00:00Z"),
            "pending" => ("Pending", "False", "2025-01-01T00:00:00Z"),
            "failed" => ("Failed", "False", "2025-01-01T00:00:00Z"),
            other => panic!("{other}"),
        };
        p.status = Some(
            serde_json::from_value(json!({"phase": phase, "conditions": [
                {"type": "Ready", "status": ready, "lastTransitionTime": since}]}))
            .unwrap(),
        );
        p.metadata.uid = Some(format!("uid-{ordinal}"));
        if state == "terminating" {
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        }
        p
    }

    fn claim(s: &StatefulSet, ordinal: i32) -> PersistentVolumeClaim {
        claims_for(s, ordinal).remove(0).1
    }

    /// Plans with every claim of `with_claims` present; `current`/`update` are the revisions
    /// (`r1`, or `r2` with image nginx:2 for the update).
    fn run(s: &StatefulSet, pods: &[Pod], with_claims: &[i32], update: &str) -> Plan {
        let claim_list: Vec<PersistentVolumeClaim> =
            with_claims.iter().map(|&o| claim(s, o)).collect();
        let claims: BTreeMap<String, &PersistentVolumeClaim> = claim_list
            .iter()
            .map(|c| (name(&c.metadata).to_owned(), c))
            .collect();
        let mut updated = s.clone();
        if update == "r2" {
            updated
                .spec
                .as_mut()
                .unwrap()
                .template
                .spec
                .as_mut()
                .unwrap()
                .containers[0]
                .image = Some("nginx:2".into());
        }
        let refs: Vec<&Pod> = pods.iter().collect();
        plan(&Input {
            set: s,
            current: s,
            update: &updated,
            current_revision: "r1",
            update_revision: update,
            collision_count: 0,
            pods: &refs,
            claims: &claims,
            now: now(),
        })
    }

    /// The steps in short: `create web-1 [www-web-1]`, `claims web-0 [..]`, `update web-0`,
    /// `claim www-web-0`, `delete web-2 (ScaleDown)`.
    fn steps(plan: &Plan) -> Vec<String> {
        plan.steps
            .iter()
            .map(|s| match s {
                Step::CreatePod { pod, claims } => format!(
                    "create {} {:?} {}",
                    name(&pod.metadata),
                    claims.iter().map(|c| name(&c.metadata)).collect::<Vec<_>>(),
                    revision_of(pod)
                ),
                Step::CreateClaims { pod, claims } => format!(
                    "claims {pod} {:?}",
                    claims.iter().map(|c| name(&c.metadata)).collect::<Vec<_>>()
                ),
                Step::UpdatePod { pod, .. } => format!("update {}", name(&pod.metadata)),
                Step::UpdateClaim { claim, .. } => format!("claim {}", name(&claim.metadata)),
                Step::DeletePod { pod, reason } => format!("delete {pod} ({reason:?})"),
            })
            .collect()
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_after_the_previous_is_ready() {
        let s = set(3, "OrderedReady", rolling(0));
        // (pods, claims present, steps, where the pass stops)
        type Case<'a> = (Vec<Pod>, Vec<i32>, Vec<&'a str>, Option<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (
                vec![],
                vec![],
                vec!["create web-0 [\"www-web-0\"] r1"],
                Some("web-0 is being created"),
            ),
            (
                vec![pod(&s, 0, "pending", "r1")],
                vec![0],
                vec![],
                Some("waiting for web-0 to be Running and Ready"),
            ),
            // A pending pod whose claim went missing gets it again.
            (
                vec![pod(&s, 0, "pending", "r1")],
                vec![],
                vec!["claims web-0 [\"www-web-0\"]"],
                Some("waiting for web-0 to be Running and Ready"),
            ),
            (
                vec![pod(&s, 0, "ready", "r1")],
                vec![0],
                vec!["create web-1 [\"www-web-1\"] r1"],
                Some("web-1 is being created"),
            ),
            (
                vec![
                    pod(&s, 0, "ready", "r1"),
                    pod(&s, 1, "ready", "r1"),
                    pod(&s, 2, "ready", "r1"),
                ],
                vec![0, 1, 2],
                vec![],
                None,
            ),
            // web-1 fails: deleted, and nothing after it moves.
            (
                vec![pod(&s, 0, "ready", "r1"), pod(&s, 1, "failed", "r1")],
                vec![0, 1],
                vec!["delete web-1 (Finished)"],
                Some("web-1 is Failed: it is made again"),
            ),
        ];
        for (pods, claims, want, waiting) in cases {
            let p = run(&s, &pods, &claims, "r1");
            assert_eq!(steps(&p), want, "{:?}", p.waiting);
            assert_eq!(p.waiting.as_deref(), waiting);
        }
    }

    #[test]
    fn min_ready_seconds_holds_the_next_creation() {
        let mut s = set(2, "OrderedReady", rolling(0));
        s.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        let p = run(&s, &[pod(&s, 0, "fresh", "r1")], &[0], "r1");
        assert!(steps(&p).is_empty());
        assert_eq!(
            p.waiting.as_deref(),
            Some("waiting for web-0 to be available")
        );
        assert_eq!(p.status.ready_replicas, Some(1));
        assert_eq!(p.status.available_replicas, Some(0));
        let p = run(&s, &[pod(&s, 0, "ready", "r1")], &[0], "r1");
        assert_eq!(steps(&p), ["create web-1 [\"www-web-1\"] r1"]);
    }

    #[test]
    fn parallel_creates_and_deletes_all_at_once() {
        let s = set(3, "Parallel", rolling(0));
        let p = run(&s, &[pod(&s, 1, "pending", "r1")], &[1], "r1");
        assert_eq!(
            steps(&p),
            [
                "create web-0 [\"www-web-0\"] r1",
                "create web-2 [\"www-web-2\"] r1"
            ]
        );
        let s1 = set(1, "Parallel", rolling(0));
        let pods = [
            pod(&s, 0, "ready", "r1"),
            pod(&s, 1, "pending", "r1"),
            pod(&s, 2, "ready", "r1"),
        ];
        let p = run(&s1, &pods, &[0, 1, 2], "r1");
        assert_eq!(
            steps(&p),
            ["delete web-2 (ScaleDown)", "delete web-1 (ScaleDown)"]
        );
    }

    #[test]
    fn ordered_scale_down_takes_the_highest_first_one_at_a_time() {
        let s3 = set(3, "OrderedReady", rolling(0));
        let s1 = set(1, "OrderedReady", rolling(0));
        let all = [
            pod(&s3, 0, "ready", "r1"),
            pod(&s3, 1, "ready", "r1"),
            pod(&s3, 2, "ready", "r1"),
        ];
        let p = run(&s1, &all, &[0, 1, 2], "r1");
        assert_eq!(steps(&p), ["delete web-2 (ScaleDown)"]);
        assert_eq!(p.waiting.as_deref(), Some("web-2 is being deleted"));
        // While web-2 terminates, web-1 waits.
        let going = [
            pod(&s3, 0, "ready", "r1"),
            pod(&s3, 1, "ready", "r1"),
            pod(&s3, 2, "terminating", "r1"),
        ];
        let p = run(&s1, &going, &[0, 1, 2], "r1");
        assert!(steps(&p).is_empty());
        assert_eq!(p.waiting.as_deref(), Some("waiting for web-2 to terminate"));
        // An unhealthy replica blocks scaling down; the first unhealthy condemned pod does not.
        let sick = [pod(&s3, 0, "running", "r1"), pod(&s3, 1, "ready", "r1")];
        let p = run(&s1, &sick, &[0, 1], "r1");
        assert_eq!(
            p.waiting.as_deref(),
            Some("waiting for web-0 to be Running and Ready")
        );
        let sick_condemned = [pod(&s3, 0, "ready", "r1"), pod(&s3, 1, "running", "r1")];
        let p = run(&s1, &sick_condemned, &[0, 1], "r1");
        assert_eq!(steps(&p), ["delete web-1 (ScaleDown)"]);
    }

    #[test]
    fn rolling_update_goes_down_to_the_partition_one_at_a_time() {
        let s = set(3, "OrderedReady", rolling(1));
        let at = |revs: [&str; 3]| -> Vec<Pod> {
            (0..3)
                .map(|i| pod(&s, i, "ready", revs[i as usize]))
                .collect()
        };
        let p = run(&s, &at(["r1", "r1", "r1"]), &[0, 1, 2], "r2");
        assert_eq!(steps(&p), ["delete web-2 (Update)"]);
        assert_eq!(
            p.status.current_replicas,
            Some(2),
            "the deleted one no longer counts"
        );
        assert_eq!(p.status.updated_replicas, Some(0));
        // web-2 came back at r2 but is not ready yet: wait.
        let mut pods = at(["r1", "r1", "r2"]);
        pods[2] = pod(&s, 2, "running", "r2");
        let p = run(&s, &pods, &[0, 1, 2], "r2");
        assert_eq!(
            p.waiting.as_deref(),
            Some("waiting for web-2 to be Running and Ready")
        );
        let p = run(&s, &at(["r1", "r1", "r2"]), &[0, 1, 2], "r2");
        assert_eq!(steps(&p), ["delete web-1 (Update)"]);
        // web-0 is below the partition: done.
        let p = run(&s, &at(["r1", "r2", "r2"]), &[0, 1, 2], "r2");
        assert!(steps(&p).is_empty());
        assert_eq!(p.status.updated_replicas, Some(2));
        assert_eq!(p.status.current_replicas, Some(1));
        // A missing web-0 is made at the current revision (below the partition), web-2 at the
        // update revision.
        let p = run(&set(3, "Parallel", rolling(1)), &[], &[], "r2");
        assert_eq!(
            steps(&p),
            [
                "create web-0 [\"www-web-0\"] r1",
                "create web-1 [\"www-web-1\"] r2",
                "create web-2 [\"www-web-2\"] r2"
            ]
        );
    }

    #[test]
    fn on_delete_never_deletes_for_an_update_but_recreates_at_the_update_revision() {
        let s = set(2, "OrderedReady", json!({"type": "OnDelete"}));
        let p = run(
            &s,
            &[pod(&s, 0, "ready", "r1"), pod(&s, 1, "ready", "r1")],
            &[0, 1],
            "r2",
        );
        assert!(steps(&p).is_empty());
        let p = run(&s, &[pod(&s, 0, "ready", "r1")], &[0], "r2");
        assert_eq!(steps(&p), ["create web-1 [\"www-web-1\"] r2"]);
    }

    #[test]
    fn drifted_identity_and_claim_owners_are_repaired() {
        let mut s = set(1, "OrderedReady", rolling(0));
        let mut p0 = pod(&s, 0, "ready", "r1");
        p0.metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(identity::POD_NAME_LABEL);
        let p = run(&s, std::slice::from_ref(&p0), &[0], "r1");
        assert_eq!(steps(&p), ["update web-0"]);
        s.spec
            .as_mut()
            .unwrap()
            .persistent_volume_claim_retention_policy = Some(
            serde_json::from_value(json!({"whenDeleted": "Delete", "whenScaled": "Retain"}))
                .unwrap(),
        );
        let p = run(&s, &[pod(&s, 0, "ready", "r1")], &[0], "r1");
        assert_eq!(steps(&p), ["claim www-web-0"]);
        // A new pod's claims are created with those owners already.
        let p = run(&s, &[], &[], "r1");
        match &p.steps[0] {
            Step::CreatePod { claims, .. } => assert_eq!(
                claims[0].metadata.owner_references.as_ref().unwrap()[0].kind,
                "StatefulSet"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stale_claim_holds_its_pod_back() {
        let mut s = set(1, "OrderedReady", rolling(0));
        s.spec
            .as_mut()
            .unwrap()
            .persistent_volume_claim_retention_policy = Some(
            serde_json::from_value(json!({"whenDeleted": "Retain", "whenScaled": "Delete"}))
                .unwrap(),
        );
        let mut old = claim(&s, 0);
        old.metadata.owner_references = Some(vec![serde_json::from_value(json!(
            {"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": "gone", "controller": true}
        )).unwrap()]);
        let claims: BTreeMap<String, &PersistentVolumeClaim> =
            [("www-web-0".to_owned(), &old)].into();
        let p = plan(&Input {
            set: &s,
            current: &s,
            update: &s,
            current_revision: "r1",
            update_revision: "r1",
            collision_count: 0,
            pods: &[],
            claims: &claims,
            now: now(),
        });
        assert!(p.steps.is_empty());
        assert_eq!(
            p.waiting.as_deref(),
            Some("claim www-web-0 of an earlier web-0 is still being deleted")
        );
    }

    #[test]
    fn status_counts_and_completion() {
        let s = set(2, "OrderedReady", rolling(0));
        let pods = [pod(&s, 0, "ready", "r2"), pod(&s, 1, "ready", "r2")];
        let p = run(&s, &pods, &[0, 1], "r2");
        assert_eq!(p.status.replicas, 2);
        assert_eq!(p.status.ready_replicas, Some(2));
        assert_eq!(p.status.current_replicas, Some(0));
        assert_eq!(p.status.updated_replicas, Some(2));
        assert_eq!(p.status.observed_generation, Some(2));
        assert_eq!(p.status.collision_count, Some(0));
        let done = finish_status(&s, p.status.clone()).expect("differs from the empty status");
        assert_eq!(done.current_revision.as_deref(), Some("r2"));
        assert_eq!(done.current_replicas, Some(2));
        let mut recorded = s.clone();
        recorded.status = Some(done.clone());
        assert_eq!(finish_status(&recorded, p.status), None, "nothing new");
        // A deleted set only records its status.
        let mut going = s.clone();
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        assert!(run(&going, &[], &[], "r1").steps.is_empty());
    }
}
