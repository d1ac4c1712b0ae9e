//! The ClusterRole aggregation controller, kube-controller-manager's
//! `clusterrole-aggregation`: a ClusterRole with an `aggregationRule` gets as its rules the
//! rules of every ClusterRole its selectors match (itself excepted), deduplicated in the order
//! found, as upstream's `syncClusterRole` computes them. This is how `admin`, `edit` and `view`
//! get theirs, and how a ClusterRole labelled `rbac.authorization.k8s.io/aggregate-to-view:
//! "true"` adds to what every viewer may do.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, PostParams};

use super::Context;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::flow::{Flow, FlowEvent};
use crate::informers::Informer;

/// The controller's name.
pub const NAME: &str = "clusterrole-aggregation";

/// What went wrong updating a ClusterRole.
#[derive(Debug, thiserror::Error)]
#[error("update the rules of clusterrole {name}: {source}")]
pub struct Error {
    /// The ClusterRole.
    name: String,
    /// The API server's error.
    source: kube::Error,
}

/// The rules `role` aggregates from `roles` (`None`: it aggregates nothing).
pub fn aggregated_rules(role: &ClusterRole, roles: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let rule = role.aggregation_rule.as_ref()?;
    let selectors = rule.cluster_role_selectors.as_deref().unwrap_or_default();
    let mut sorted: Vec<&Arc<ClusterRole>> = roles.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in selectors {
        for other in &sorted {
            if other.metadata.name == role.metadata.name {
                continue;
            }
            let labels = other.metadata.labels.clone().unwrap_or_default();
            if !crate::apimachinery::labels::matches(selector, &labels) {
                continue;
            }
            for r in other.rules.as_deref().unwrap_or_default() {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
    }
    Some(rules)
}

/// The ClusterRole aggregation controller.
pub struct ClusterRoleAggregationController {
    client: kube::Client,
    flow: Flow,
    roles: Informer<ClusterRole>,
    queue: WorkQueue<Key>,
}

impl ClusterRoleAggregationController {
    /// Takes the ClusterRole informer from `ctx`; any change queues every aggregating role.
    pub fn new(ctx: &Context) -> Self {
        let roles = ctx.factory.informer::<ClusterRole>();
        let queue = WorkQueue::new(NAME);
        {
            let queue = queue.clone();
            let informer = roles.clone();
            roles.add_handler(move |_| {
                for role in informer.list() {
                    if role.aggregation_rule.is_some() {
                        queue.add(Key::of(&*role));
                    }
                }
            });
        }
        ClusterRoleAggregationController {
            client: ctx.client(NAME),
            flow: ctx.flow.clone(),
            roles,
            queue,
        }
    }

    /// Waits for the cache, then reconciles roles one at a time.
    pub async fn run(self) {
        self.roles.synced().await;
        for role in self.roles.list() {
            if role.aggregation_rule.is_some() {
                self.queue.add(Key::of(&*role));
            }
        }
        let this = Arc::new(self);
        run_workers(this.queue.clone(), 1, |key| {
            let this = this.clone();
            async move { this.sync(key).await }
        })
        .await;
    }

    async fn sync(&self, key: Key) -> Result<Action, Error> {
        let Some(role) = self.roles.get("", &key.name) else {
            return Ok(Action::Done);
        };
        let Some(rules) = aggregated_rules(&role, &self.roles.list()) else {
            return Ok(Action::Done);
        };
        if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
            return Ok(Action::Done);
        }
        self.flow
            .gate_emit(
                FlowEvent::new(format!("controller/{NAME}"), "apiserver", "AGGREGATE")
                    .object("ClusterRole", "", &key.name)
                    .detail(format!(
                        "{} rules from the roles its selectors match",
                        rules.len()
                    )),
            )
            .await;
        let mut updated = (*role).clone();
        updated.rules = Some(rules);
        let roles: Api<ClusterRole> = Api::all(self.client.clone());
        match roles
            .replace(&key.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                Ok(Action::RequeueAfter(std::time::Duration::from_millis(100)))
            }
            Err(source) => Err(Error {
                name: key.name,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_role_gets_the_rules_of_the_roles_it_selects() {
        let role =
            |v: serde_json::Value| Arc::new(serde_json::from_value::<ClusterRole>(v).unwrap());
        let view = role(json!({
            "metadata": {"name": "view"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]},
        }));
        let a = role(json!({
            "metadata": {"name": "a", "labels": {"agg": "true"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}],
        }));
        let b = role(json!({
            "metadata": {"name": "b", "labels": {"agg": "true"}},
            "rules": [
                {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]},
            ],
        }));
        let other = role(
            json!({"metadata": {"name": "c"}, "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}),
        );
        let rules = aggregated_rules(&view, &[view.clone(), b, a, other]).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].verbs, ["list"]);
        assert_eq!(
            aggregated_rules(&role(json!({"metadata": {"name": "x"}})), &[]),
            None
        );
    }
}
