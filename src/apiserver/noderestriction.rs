//! NodeRestriction admission (`plugin/pkg/admission/noderestriction`): what a kubelet
//! (`system:node:<name>` in `system:nodes`) may write, past what the Node authorizer lets it
//! ask, in upstream's words.
//!
//! - Nodes: only its own Node (create, update, its status, delete).
//! - Pods: create only mirror pods bound to itself, owned (as controller) by its Node as it is
//!   now, and naming no service account, Secret, ConfigMap, ClusterTrustBundle or claim (a node
//!   must not grant itself access to other objects through the graph); delete only pods bound
//!   to itself; update only the status of pods bound to itself, not their labels; evict only
//!   pods bound to itself.
//! - PersistentVolumeClaims: only their status.
//! - TokenRequests: only bound to a pod, with its uid, that is bound to itself.
//! - Leases: only its own, in `kube-node-lease`.
//!
//! Left out: upstream's limits on the labels and taints a node sets on its own Node, and on the
//! status fields of a claim it updates.

use serde_json::Value;

use super::ApiServer;
use super::auth::graph::{self, Kind};
use super::errors::ApiError;
use super::resources::Resource;

/// A write as admission sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op<'a> {
    Create(&'a Value),
    Update { new: &'a Value, old: &'a Value },
    Delete(&'a Value),
}

impl<'a> Op<'a> {
    /// The object written (an update's new one, a delete's existing one).
    fn object(self) -> &'a Value {
        match self {
            Op::Create(o) | Op::Update { new: o, .. } | Op::Delete(o) => o,
        }
    }

    /// `admission.Operation`'s name.
    fn name(&self) -> &'static str {
        match self {
            Op::Create(_) => "CREATE",
            Op::Update { .. } => "UPDATE",
            Op::Delete(_) => "DELETE",
        }
    }
}

/// The node the request being served comes from, if a node's.
fn requesting_node() -> Option<String> {
    let user = super::auth::requester()?;
    user.node().map(str::to_owned)
}

fn refused(resource: &str, name: &str, detail: String) -> ApiError {
    ApiError::Forbidden {
        resource: resource.into(),
        name: name.into(),
        detail,
    }
}

fn node_name_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

/// Admits `op` on `resource`'s `subresource` (`""`: the object itself) for the requesting node,
/// if a node asks.
pub(crate) async fn admit(
    api: &ApiServer,
    resource: &Resource,
    subresource: &str,
    op: Op<'_>,
) -> Result<(), ApiError> {
    let Some(node) = requesting_node() else {
        return Ok(());
    };
    let decided = decide(&node, resource, subresource, op);
    let (Err(detail), name) = decided else {
        return Ok(());
    };
    match detail {
        Refusal::Forbidden(detail) => Err(refused(&resource.qualified(), name, detail)),
        Refusal::CheckNodeUid { owner_uid } => {
            // The owner must be the Node as it is now.
            let node_object =
                super::registry::store::get_object(api, node_resource(), None, &node).await?;
            let uid = node_object["metadata"]["uid"].as_str().unwrap_or_default();
            if uid == owner_uid {
                return Ok(());
            }
            Err(refused(
                &resource.qualified(),
                name,
                format!("node {node} UID mismatch: expected {owner_uid} got {uid}"),
            ))
        }
    }
}

fn node_resource() -> &'static Resource {
    super::resources::find("", "v1", "nodes").expect("nodes are served")
}

fn pod_resource() -> &'static Resource {
    super::resources::find("", "v1", "pods").expect("pods are served")
}

/// Why a write is refused, or what remains to check against the store.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Forbidden(String),
    /// A mirror pod passes if its owner's uid is the Node's.
    CheckNodeUid {
        owner_uid: String,
    },
}

/// The decision that needs nothing from the store, and the name to refuse it for.
fn decide<'a>(
    node: &str,
    resource: &Resource,
    subresource: &str,
    op: Op<'a>,
) -> (Result<(), Refusal>, &'a str) {
    let object = op.object();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let no = |detail: String| Err(Refusal::Forbidden(detail));
    if node.is_empty() {
        return (
            no("could not determine node from user \"system:node:\"".into()),
            name,
        );
    }
    let decided = match (resource.group, resource.kind) {
        ("", "Pod") => match (subresource, op) {
            ("", Op::Create(pod)) => mirror_pod(node, pod),
            ("", Op::Delete(pod)) if node_name_of(pod) != node => no(format!(
                "node {node:?} can only delete pods with spec.nodeName set to itself"
            )),
            ("", Op::Delete(_)) => Ok(()),
            ("", op) => no(format!(
                "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
                op.name()
            )),
            ("status", Op::Update { new, old }) => {
                if node_name_of(old) != node {
                    no(format!(
                        "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                    ))
                } else if labels(new) != labels(old) {
                    no(format!(
                        "node {node:?} cannot update labels through pod status"
                    ))
                } else {
                    Ok(())
                }
            }
            ("status", op) => no(format!("unexpected operation {:?}", op.name())),
            (other, _) => no(format!(
                "unexpected pod subresource {other:?}, only 'status' and 'eviction' are allowed"
            )),
        },
        ("", "Node") if name != node => no(format!(
            "node {node:?} is not allowed to modify node {name:?}"
        )),
        ("", "PersistentVolumeClaim") if subresource != "status" => {
            no("may only update PVC status".into())
        }
        ("coordination.k8s.io", "Lease") => {
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
            if namespace != "kube-node-lease" {
                no("can only access leases in the \"kube-node-lease\" system namespace".into())
            } else if name != node {
                no("can only access node lease with the same name as the requesting node".into())
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    };
    (decided, name)
}

fn labels(object: &Value) -> &Value {
    match &object["metadata"]["labels"] {
        Value::Object(l) if !l.is_empty() => &object["metadata"]["labels"],
        _ => &Value::Null,
    }
}

/// `admitPodCreate`: a node creates only mirror pods of its own, using nothing.
fn mirror_pod(node: &str, pod: &Value) -> Result<(), Refusal> {
    let no = |detail: String| Err(Refusal::Forbidden(detail));
    if pod["metadata"]["annotations"][graph::MIRROR].is_null() {
        return no(format!(
            "pod does not have {:?} annotation, node {node:?} can only create mirror pods",
            graph::MIRROR
        ));
    }
    if node_name_of(pod) != node {
        return no(format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        ));
    }
    let owners = pod["metadata"]["ownerReferences"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let owner = match owners {
        [] => {
            return no(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ));
        }
        [owner] => owner,
        _ => {
            return no(format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            ));
        }
    };
    if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
        return no(format!(
            "node {node:?} can only create pods with an owner reference set to itself"
        ));
    }
    if owner["controller"] != true {
        return no(format!(
            "node {node:?} can only create pods with a controller owner reference set to itself"
        ));
    }
    if owner["blockOwnerDeletion"] == true {
        return no(format!(
            "node {node:?} must not set blockOwnerDeletion on an owner reference"
        ));
    }
    if pod["spec"]["serviceAccountName"]
        .as_str()
        .is_some_and(|a| !a.is_empty())
    {
        return no(format!(
            "node {node:?} can not create pods that reference a service account"
        ));
    }
    let references = graph::references(pod);
    for (kind, plural) in [(Kind::Secret, "secrets"), (Kind::ConfigMap, "configmaps")] {
        if references.iter().any(|(k, _)| *k == kind) {
            return no(format!(
                "node {node:?} can not create pods that reference {plural}"
            ));
        }
    }
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let bundles = volumes.iter().any(|v| {
        v["projected"]["sources"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["clusterTrustBundle"].is_object()))
    });
    if bundles {
        return no(format!(
            "node {node:?} can not create pods that reference clustertrustbundles"
        ));
    }
    if volumes
        .iter()
        .any(|v| v["persistentVolumeClaim"].is_object())
    {
        return no(format!(
            "node {node:?} can not create pods that reference persistentvolumeclaims"
        ));
    }
    Err(Refusal::CheckNodeUid {
        owner_uid: owner["uid"].as_str().unwrap_or_default().to_owned(),
    })
}

/// `admitServiceAccount`: a node's TokenRequest (`request`, for account `account`) must be bound
/// to a pod, with its uid, that is bound to the node.
pub(crate) async fn admit_token_request(
    api: &ApiServer,
    namespace: &str,
    account: &str,
    request: &Value,
) -> Result<(), ApiError> {
    let Some(node) = requesting_node() else {
        return Ok(());
    };
    let no = |detail: &str| Err(refused("serviceaccounts", account, detail.into()));
    let bound = &request["spec"]["boundObjectRef"];
    let pod_name = bound["name"].as_str().unwrap_or_default();
    if !bound.is_object()
        || bound["apiVersion"] != "v1"
        || bound["kind"] != "Pod"
        || pod_name.is_empty()
    {
        return no("node requested token not bound to a pod");
    }
    let uid = bound["uid"].as_str().unwrap_or_default();
    if uid.is_empty() {
        return no("node requested token with a pod binding without a uid");
    }
    let pod =
        super::registry::store::get_object(api, pod_resource(), Some(namespace), pod_name).await?;
    if pod["metadata"]["uid"].as_str() != Some(uid) {
        return no(&format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
        ));
    }
    if node_name_of(&pod) != node {
        return no("node requested token bound to a pod scheduled on a different node");
    }
    Ok(())
}

/// `admitPodEviction`: a node evicts only pods bound to itself.
pub(crate) async fn admit_eviction(
    api: &ApiServer,
    namespace: &str,
    pod_name: &str,
) -> Result<(), ApiError> {
    let Some(node) = requesting_node() else {
        return Ok(());
    };
    let pod =
        super::registry::store::get_object(api, pod_resource(), Some(namespace), pod_name).await?;
    if node_name_of(&pod) != node {
        return Err(refused(
            "pods",
            pod_name,
            format!("node {node} can only evict pods with spec.nodeName set to itself"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mirror() -> Value {
        json!({
            "metadata": {
                "name": "etcd-node-1",
                "namespace": "kube-system",
                "annotations": {graph::MIRROR: "hash"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": "u1", "controller": true}],
            },
            "spec": {"nodeName": "node-1", "volumes": [{"name": "data", "hostPath": {"path": "/var/lib/etcd"}}]},
        })
    }

    fn refusal(detail: &str) -> Result<(), Refusal> {
        Err(Refusal::Forbidden(detail.into()))
    }

    #[test]
    fn a_node_creates_only_mirror_pods_of_its_own_using_nothing() {
        assert_eq!(
            mirror_pod("node-1", &mirror()),
            Err(Refusal::CheckNodeUid {
                owner_uid: "u1".into()
            })
        );
        let changed = |change: &dyn Fn(&mut Value)| {
            let mut pod = mirror();
            change(&mut pod);
            mirror_pod("node-1", &pod)
        };
        type Change<'a> = &'a dyn Fn(&mut Value);
        let cases: [(Change<'_>, &str); 9] = [
            (
                &|p| p["metadata"]["annotations"] = json!({}),
                "pod does not have \"kubernetes.io/config.mirror\" annotation, node \"node-1\" can only create mirror pods",
            ),
            (
                &|p| p["spec"]["nodeName"] = json!("node-2"),
                "node \"node-1\" can only create pods with spec.nodeName set to itself",
            ),
            (
                &|p| p["metadata"]["ownerReferences"] = json!([]),
                "node \"node-1\" can only create pods with an owner reference set to itself",
            ),
            (
                &|p| p["metadata"]["ownerReferences"][0]["name"] = json!("node-2"),
                "node \"node-1\" can only create pods with an owner reference set to itself",
            ),
            (
                &|p| p["metadata"]["ownerReferences"][0]["controller"] = json!(false),
                "node \"node-1\" can only create pods with a controller owner reference set to itself",
            ),
            (
                &|p| p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = json!(true),
                "node \"node-1\" must not set blockOwnerDeletion on an owner reference",
            ),
            (
                &|p| p["spec"]["serviceAccountName"] = json!("default"),
                "node \"node-1\" can not create pods that reference a service account",
            ),
            (
                &|p| {
                    p["spec"]["containers"] =
                        json!([{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}])
                },
                "node \"node-1\" can not create pods that reference secrets",
            ),
            (
                &|p| {
                    p["spec"]["volumes"] =
                        json!([{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}])
                },
                "node \"node-1\" can not create pods that reference persistentvolumeclaims",
            ),
        ];
        for (change, expected) in cases {
            assert_eq!(changed(change), refusal(expected));
        }
    }

    #[test]
    fn a_node_writes_only_its_own_node_lease_and_pods() {
        let pods = pod_resource();
        let nodes = node_resource();
        let leases = super::super::resources::find("coordination.k8s.io", "v1", "leases").unwrap();
        let pod = |node: &str| json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"nodeName": node}});
        let (own, theirs) = (pod("node-1"), pod("node-2"));
        fn decided(resource: &Resource, sub: &str, op: Op<'_>) -> Result<(), Refusal> {
            decide("node-1", resource, sub, op).0
        }
        assert_eq!(decided(pods, "", Op::Delete(&own)), Ok(()));
        assert_eq!(
            decided(pods, "", Op::Delete(&theirs)),
            refusal("node \"node-1\" can only delete pods with spec.nodeName set to itself")
        );
        assert_eq!(
            decided(
                pods,
                "",
                Op::Update {
                    new: &own,
                    old: &own
                }
            ),
            refusal(
                "unexpected operation \"UPDATE\", node \"node-1\" can only create and delete mirror pods"
            )
        );
        assert_eq!(
            decided(
                pods,
                "status",
                Op::Update {
                    new: &own,
                    old: &own
                }
            ),
            Ok(())
        );
        assert_eq!(
            decided(
                pods,
                "status",
                Op::Update {
                    new: &theirs,
                    old: &theirs
                }
            ),
            refusal(
                "node \"node-1\" can only update pod status for pods with spec.nodeName set to itself"
            )
        );
        let mut relabelled = own.clone();
        relabelled["metadata"]["labels"]["app"] = json!("db");
        assert_eq!(
            decided(
                pods,
                "status",
                Op::Update {
                    new: &relabelled,
                    old: &own
                }
            ),
            refusal("node \"node-1\" cannot update labels through pod status")
        );
        assert_eq!(
            decided(
                pods,
                "ephemeralcontainers",
                Op::Update {
                    new: &own,
                    old: &own
                }
            ),
            refusal(
                "unexpected pod subresource \"ephemeralcontainers\", only 'status' and 'eviction' are allowed"
            )
        );

        let node = |name: &str| json!({"metadata": {"name": name}});
        assert_eq!(
            decided(
                nodes,
                "status",
                Op::Update {
                    new: &node("node-1"),
                    old: &node("node-1")
                }
            ),
            Ok(())
        );
        assert_eq!(
            decided(nodes, "", Op::Create(&node("node-2"))),
            refusal("node \"node-1\" is not allowed to modify node \"node-2\"")
        );

        let lease = |ns: &str, name: &str| json!({"metadata": {"name": name, "namespace": ns}});
        assert_eq!(
            decided(leases, "", Op::Create(&lease("kube-node-lease", "node-1"))),
            Ok(())
        );
        assert_eq!(
            decided(leases, "", Op::Create(&lease("kube-node-lease", "node-2"))),
            refusal("can only access node lease with the same name as the requesting node")
        );
        assert_eq!(
            decided(leases, "", Op::Create(&lease("default", "node-1"))),
            refusal("can only access leases in the \"kube-node-lease\" system namespace")
        );
    }
}
