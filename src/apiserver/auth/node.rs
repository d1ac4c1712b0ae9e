//! The Node authorizer (`node_authorizer.go`): what a kubelet, `system:node:<name>` in
//! `system:nodes`, may do.
//!
//! - Secrets and ConfigMaps: `get`, and `list`/`watch` of one object (a `metadata.name` field
//!   selector names it), only when the object is related to the node through the [`graph`]
//!   (a pod on the node uses it; a Secret also through a volume bound to such a pod's claim).
//! - PersistentVolumeClaims and PersistentVolumes: `get` only, the same way; a claim's status
//!   may be updated for a claim a pod on the node uses.
//! - ServiceAccounts: only `create` of the `token` subresource, for an account a pod on the
//!   node runs as.
//! - Leases: `get`, `create`, `update`, `patch`, `delete` in `kube-node-lease`, of the node's
//!   own Lease (the name is checked on create by NodeRestriction admission).
//! - Anything else: the `system:node` ClusterRole's rules, as upstream's static node rules.
//!
//! Outside these the answer is no opinion, with upstream's reason (`no relationship found
//! between node 'node-1' and this object`), and RBAC decides next. Which Node and pods a
//! kubelet may write is NodeRestriction's to check (`apiserver::noderestriction`).

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::Attributes;
use super::graph::{Graph, Kind, Start};
use super::rbac;

/// The namespace of the nodes' Leases.
const NODE_LEASES: &str = "kube-node-lease";

/// The Node authorizer's answer: it allows, or has no opinion (RBAC decides next).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    NoOpinion {
        /// Why, in upstream's words (may be empty).
        reason: String,
        /// Whether the graph found no path from the object to the node: a pod just bound may
        /// not be in the graph yet, so the question is worth asking again once it has caught up.
        unrelated: bool,
    },
}

fn no(reason: impl Into<String>) -> Verdict {
    Verdict::NoOpinion {
        reason: reason.into(),
        unrelated: false,
    }
}

/// The Node authorizer's decision on `a` for `node`, from its role's rules and the graph.
pub(crate) fn authorize(role: &[PolicyRule], graph: &Graph, node: &str, a: &Attributes) -> Verdict {
    if node.is_empty() {
        return no("unknown node for user \"system:node:\"");
    }
    if a.resource_request {
        let used = |kind| Start::Used(kind);
        match (a.api_group.as_str(), a.resource.as_str()) {
            ("", "secrets") => return read_namespaced(graph, node, used(Kind::Secret), a),
            ("", "configmaps") => return read_namespaced(graph, node, used(Kind::ConfigMap), a),
            ("", "persistentvolumeclaims") if a.subresource == "status" => {
                return status_update(graph, node, used(Kind::PersistentVolumeClaim), a);
            }
            ("", "persistentvolumeclaims") => {
                return get(graph, node, used(Kind::PersistentVolumeClaim), a);
            }
            ("", "persistentvolumes") => return get(graph, node, Start::PersistentVolume, a),
            ("", "serviceaccounts") => return create_token(graph, node, a),
            ("coordination.k8s.io", "leases") => return lease(node, a),
            _ => {}
        }
    }
    if role.iter().any(|r| rbac::rule_allows(a, r)) {
        Verdict::Allow
    } else {
        no("")
    }
}

/// `authorizeReadNamespacedObject`.
fn read_namespaced(graph: &Graph, node: &str, start: Start, a: &Attributes) -> Verdict {
    if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
        return no("can only read resources of this type");
    }
    if !a.subresource.is_empty() {
        return no("cannot read subresource");
    }
    if a.namespace.is_empty() {
        return no("can only read namespaced object of this type");
    }
    related(graph, node, start, a)
}

/// `authorizeGet`.
fn get(graph: &Graph, node: &str, start: Start, a: &Attributes) -> Verdict {
    if a.verb != "get" {
        return no("can only get individual resources of this type");
    }
    if !a.subresource.is_empty() {
        return no("cannot get subresource");
    }
    related(graph, node, start, a)
}

/// `authorizeStatusUpdate`.
fn status_update(graph: &Graph, node: &str, start: Start, a: &Attributes) -> Verdict {
    if !matches!(a.verb.as_str(), "update" | "patch") {
        return no("can only get/update/patch this type");
    }
    if a.subresource != "status" {
        return no("can only update status subresource");
    }
    related(graph, node, start, a)
}

/// `authorizeCreateToken`.
fn create_token(graph: &Graph, node: &str, a: &Attributes) -> Verdict {
    if a.verb != "create" || a.name.is_empty() {
        return no("can only create tokens for individual service accounts");
    }
    if a.subresource != "token" {
        return no("can only create token subresource of serviceaccount");
    }
    related(graph, node, Start::Used(Kind::ServiceAccount), a)
}

/// `authorizeLease`.
fn lease(node: &str, a: &Attributes) -> Verdict {
    let verb = a.verb.as_str();
    if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
        return no("can only get, create, update, patch, or delete a node lease");
    }
    if a.namespace != NODE_LEASES {
        return no(format!(
            "can only access leases in the \"{NODE_LEASES}\" system namespace"
        ));
    }
    // The name of a create is NodeRestriction's to check: the authorizer does not see it.
    if verb != "create" && a.name != node {
        return no("can only access node lease with the same name as the requesting node");
    }
    Verdict::Allow
}

/// `authorize`: the object must be named, and related to the node.
fn related(graph: &Graph, node: &str, start: Start, a: &Attributes) -> Verdict {
    if a.name.is_empty() {
        return no("No Object name found");
    }
    if graph.has_path(node, start, &a.namespace, &a.name) {
        Verdict::Allow
    } else {
        Verdict::NoOpinion {
            reason: format!("no relationship found between node '{node}' and this object"),
            unrelated: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::apiserver::auth::graph::{BoundPod, BoundVolume};

    fn role() -> Vec<PolicyRule> {
        let all = crate::apiserver::auth::policy::cluster_roles();
        let node = all
            .iter()
            .find(|r| r["metadata"]["name"] == super::super::policy::NODE_ROLE)
            .expect("the system:node role");
        serde_json::from_value(node["rules"].clone()).unwrap()
    }

    fn graph() -> Graph {
        let mut g = Graph::default();
        let uses = |list: &[(Kind, &str)]| -> BTreeSet<(Kind, String)> {
            list.iter().map(|(k, n)| (*k, (*n).to_owned())).collect()
        };
        g.set_pod(
            "default/web",
            Some(BoundPod {
                node: "node-1".into(),
                uses: uses(&[
                    (Kind::Secret, "default/db"),
                    (Kind::ConfigMap, "default/settings"),
                    (Kind::PersistentVolumeClaim, "default/data"),
                    (Kind::ServiceAccount, "default/default"),
                ]),
            }),
        );
        g.set_pod(
            "default/other",
            Some(BoundPod {
                node: "node-2".into(),
                uses: uses(&[(Kind::Secret, "default/theirs")]),
            }),
        );
        g.set_volume(
            "pv-data",
            Some(BoundVolume {
                claim: "default/data".into(),
                secrets: BTreeSet::new(),
            }),
        );
        g
    }

    fn ask(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes::resource(verb, group, resource, ns).named(name)
    }

    #[test]
    fn decisions_follow_upstream() {
        let (role, g) = (role(), graph());
        let allowed = Verdict::Allow;
        let no = |reason: &str| no(reason);
        let unrelated = Verdict::NoOpinion {
            reason: "no relationship found between node 'node-1' and this object".into(),
            unrelated: true,
        };
        let with_sub = |mut a: Attributes, sub: &str| {
            a.subresource = sub.into();
            a
        };
        let cases = [
            (ask("get", "", "secrets", "default", "db"), allowed.clone()),
            (
                ask("watch", "", "secrets", "default", "db"),
                allowed.clone(),
            ),
            (
                ask("get", "", "secrets", "default", "theirs"),
                unrelated.clone(),
            ),
            (
                ask("get", "", "secrets", "default", "nobodys"),
                unrelated.clone(),
            ),
            (
                ask("list", "", "secrets", "default", ""),
                no("No Object name found"),
            ),
            (
                ask("get", "", "secrets", "", "db"),
                no("can only read namespaced object of this type"),
            ),
            (
                ask("update", "", "secrets", "default", "db"),
                no("can only read resources of this type"),
            ),
            (
                ask("get", "", "configmaps", "default", "settings"),
                allowed.clone(),
            ),
            (
                ask("get", "", "configmaps", "default", "db"),
                unrelated.clone(),
            ),
            (
                ask("get", "", "persistentvolumeclaims", "default", "data"),
                allowed.clone(),
            ),
            (
                ask("list", "", "persistentvolumeclaims", "default", "data"),
                no("can only get individual resources of this type"),
            ),
            (
                with_sub(
                    ask("patch", "", "persistentvolumeclaims", "default", "data"),
                    "status",
                ),
                allowed.clone(),
            ),
            (
                with_sub(
                    ask("get", "", "persistentvolumeclaims", "default", "data"),
                    "status",
                ),
                no("can only get/update/patch this type"),
            ),
            (
                ask("get", "", "persistentvolumes", "", "pv-data"),
                allowed.clone(),
            ),
            (
                ask("get", "", "persistentvolumes", "", "pv-else"),
                unrelated.clone(),
            ),
            (
                with_sub(
                    ask("create", "", "serviceaccounts", "default", "default"),
                    "token",
                ),
                allowed.clone(),
            ),
            (
                with_sub(
                    ask("create", "", "serviceaccounts", "default", "builder"),
                    "token",
                ),
                unrelated.clone(),
            ),
            (
                ask("get", "", "serviceaccounts", "default", "default"),
                no("can only create tokens for individual service accounts"),
            ),
            (
                ask(
                    "patch",
                    "coordination.k8s.io",
                    "leases",
                    "kube-node-lease",
                    "node-1",
                ),
                allowed.clone(),
            ),
            (
                ask(
                    "create",
                    "coordination.k8s.io",
                    "leases",
                    "kube-node-lease",
                    "",
                ),
                allowed.clone(),
            ),
            (
                ask(
                    "patch",
                    "coordination.k8s.io",
                    "leases",
                    "kube-node-lease",
                    "node-2",
                ),
                no("can only access node lease with the same name as the requesting node"),
            ),
            (
                ask("get", "coordination.k8s.io", "leases", "default", "node-1"),
                no("can only access leases in the \"kube-node-lease\" system namespace"),
            ),
            (
                ask(
                    "list",
                    "coordination.k8s.io",
                    "leases",
                    "kube-node-lease",
                    "",
                ),
                no("can only get, create, update, patch, or delete a node lease"),
            ),
            // The rest is the role's.
            (ask("list", "", "pods", "", ""), allowed.clone()),
            (ask("patch", "", "nodes", "", "node-2"), allowed.clone()),
            (ask("delete", "", "nodes", "", "node-1"), no("")),
            (ask("list", "apps", "deployments", "default", ""), no("")),
        ];
        for (attributes, expected) in cases {
            assert_eq!(
                authorize(&role, &g, "node-1", &attributes),
                expected,
                "{attributes:?}"
            );
        }
        assert_eq!(
            authorize(&role, &g, "", &ask("get", "", "pods", "", "")),
            no("unknown node for user \"system:node:\"")
        );
    }
}
