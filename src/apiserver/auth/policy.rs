//! The roles and bindings a cluster has from its first start, as kube-apiserver's bootstrap
//! policy (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`) defines them: the user-facing
//! `cluster-admin`, `admin`, `edit` and `view` (the last three aggregated from the
//! `system:aggregate-to-*` roles), the `system:*` roles of each component, one
//! `system:controller:<name>` role per controller bound to its service account, and the roles
//! of the add-ons Orrery runs in-process (CoreDNS, metrics-server, the ingress controller, the
//! service load balancer and the local-path provisioner) as their own manifests define them.
//! Every default object is labelled `kubernetes.io/bootstrapping=rbac-defaults` and annotated
//! `rbac.authorization.kubernetes.io/autoupdate=true`; [`reconcile`] creates the missing ones
//! and gives back to an auto-updated role any rule it lost, at every start.

use serde_json::{Value, json};

/// The role whose rules the Node authorizer grants every kubelet for what its graph does not
/// decide.
pub(crate) const NODE_ROLE: &str = "system:node";

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn strings(v: &[&str]) -> Value {
    json!(v)
}

/// A resource rule.
fn r(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": strings(verbs), "apiGroups": strings(groups), "resources": strings(resources)})
}

/// A resource rule for named objects only.
fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Value {
    let mut rule = r(verbs, groups, resources);
    rule["resourceNames"] = strings(names);
    rule
}

/// A non-resource rule.
fn urls(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": strings(verbs), "nonResourceURLs": strings(urls)})
}

/// `eventsRule()`: what every component's recorder needs.
fn events() -> Value {
    r(
        &["create", "patch", "update"],
        &["", "events.k8s.io"],
        &["events"],
    )
}

fn metadata(name: &str, labels: &[(&str, &str)]) -> Value {
    let mut all = serde_json::Map::new();
    all.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
    for (k, v) in labels {
        all.insert((*k).into(), json!(v));
    }
    json!({"name": name, "labels": all, "annotations": {AUTOUPDATE: "true"}})
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    cluster_role_labelled(name, &[], rules)
}

fn cluster_role_labelled(name: &str, labels: &[(&str, &str)], rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata(name, labels),
        "rules": rules,
    })
}

/// A ClusterRole whose rules the aggregation controller fills from the roles `selector` labels.
fn aggregated(name: &str, labels: &[(&str, &str)], selector: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata(name, labels),
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {selector: "true"}}]},
        "rules": [],
    })
}

fn subject(kind: &str, name: &str) -> Value {
    match kind.split_once('/') {
        Some(("ServiceAccount", namespace)) => {
            json!({"kind": "ServiceAccount", "name": name, "namespace": namespace})
        }
        _ => json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}),
    }
}

/// A ClusterRoleBinding of ClusterRole `role` (of the same name) to `subjects`
/// (`("Group", "system:masters")`, `("ServiceAccount/kube-system", "coredns")`).
fn binding(name: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects.iter().map(|(k, n)| subject(k, n)).collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": metadata(name, &[]),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": subjects,
    })
}

/// The service account each of Orrery's controllers runs as (its name in
/// kube-controller-manager), from the name it gives its client.
pub(crate) fn controller_account(controller: &str) -> &'static str {
    match controller {
        "deployment" => "deployment-controller",
        "replicaset" => "replicaset-controller",
        "replicationcontroller" => "replication-controller",
        "statefulset" => "statefulset-controller",
        "daemonset" => "daemon-set-controller",
        "job" => "job-controller",
        "cronjob" => "cronjob-controller",
        "namespace" => "namespace-controller",
        "endpointslice" => "endpointslice-controller",
        "endpoints" => "endpoint-controller",
        "serviceaccount" => "service-account-controller",
        "disruption" => "disruption-controller",
        "nodelifecycle" => "node-controller",
        "garbagecollector" => "generic-garbage-collector",
        "horizontal-pod-autoscaler" => "horizontal-pod-autoscaler",
        "persistentvolume-binder" => "persistent-volume-binder",
        "pvc-protection" => "pvc-protection-controller",
        "pv-protection" => "pv-protection-controller",
        "clusterrole-aggregation" => "clusterrole-aggregation-controller",
        "root-ca-cert-publisher" => "root-ca-cert-publisher",
        "certificate" => "certificate-controller",
        "resourcequota" => "resourcequota-controller",
        // A controller added without a role here has none: its requests are refused, which
        // the tests of every controller would show at once.
        _ => "unknown-controller",
    }
}

/// `system:controller:<account>`'s rules, as `controller_policy.go` has them.
fn controller_rules(account: &str) -> Vec<Value> {
    let apps = &["apps", "extensions"];
    let mut rules = match account {
        "certificate-controller" => {
            let certificates = &["certificates.k8s.io"];
            vec![
                r(
                    &["get", "list", "watch", "delete"],
                    certificates,
                    &["certificatesigningrequests"],
                ),
                r(
                    &["update"],
                    certificates,
                    &[
                        "certificatesigningrequests/status",
                        "certificatesigningrequests/approval",
                    ],
                ),
                named(
                    &["approve"],
                    certificates,
                    &["signers"],
                    &["kubernetes.io/kube-apiserver-client-kubelet"],
                ),
                named(
                    &["sign"],
                    certificates,
                    &["signers"],
                    &[
                        "kubernetes.io/legacy-unknown",
                        "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                    ],
                ),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ]
        }
        "clusterrole-aggregation-controller" => vec![r(
            &["escalate", "get", "list", "patch", "update", "watch"],
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
        )],
        "cronjob-controller" => vec![
            r(
                &["get", "list", "update", "watch"],
                &["batch"],
                &["cronjobs"],
            ),
            r(
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
                &["batch"],
                &["jobs"],
            ),
            r(&["update"], &["batch"], &["cronjobs/status"]),
            r(&["update"], &["batch"], &["cronjobs/finalizers"]),
            r(&["delete", "list"], &[""], &["pods"]),
        ],
        "daemon-set-controller" => vec![
            r(READ, apps, &["daemonsets"]),
            r(&["update"], apps, &["daemonsets/status"]),
            r(&["update"], apps, &["daemonsets/finalizers"]),
            r(READ, &[""], &["nodes"]),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            r(&["create"], &[""], &["pods/binding"]),
            r(
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
                &["apps"],
                &["controllerrevisions"],
            ),
        ],
        "deployment-controller" => vec![
            r(&["get", "list", "update", "watch"], apps, &["deployments"]),
            r(&["update"], apps, &["deployments/status"]),
            r(&["update"], apps, &["deployments/finalizers"]),
            r(
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
                apps,
                &["replicasets"],
            ),
            r(&["get", "list", "update", "watch"], &[""], &["pods"]),
        ],
        "disruption-controller" => vec![
            r(READ, apps, &["deployments"]),
            r(READ, apps, &["replicasets"]),
            r(READ, &[""], &["replicationcontrollers"]),
            r(READ, &["policy"], &["poddisruptionbudgets"]),
            r(READ, &["apps"], &["statefulsets"]),
            r(&["update"], &["policy"], &["poddisruptionbudgets/status"]),
            r(&["get"], &["*"], &["*/scale"]),
            r(&["patch", "update"], &[""], &["pods/status"]),
        ],
        "endpoint-controller" => vec![
            r(READ, &[""], &["services", "pods"]),
            r(
                &["create", "delete", "get", "list", "update"],
                &[""],
                &["endpoints"],
            ),
            r(&["create"], &[""], &["endpoints/restricted"]),
        ],
        "endpointslice-controller" => vec![
            r(READ, &[""], &["services", "pods", "nodes"]),
            r(&["update"], &[""], &["services/finalizers"]),
            r(
                &["create", "delete", "get", "list", "update"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
            // Orrery's EndpointSlice controller keeps the legacy Endpoints too.
            r(
                &["create", "delete", "get", "list", "update"],
                &[""],
                &["endpoints"],
            ),
            r(&["create"], &[""], &["endpoints/restricted"]),
        ],
        "generic-garbage-collector" => vec![r(
            &["delete", "get", "list", "patch", "update", "watch"],
            &["*"],
            &["*"],
        )],
        "horizontal-pod-autoscaler" => vec![
            r(READ, &["autoscaling"], &["horizontalpodautoscalers"]),
            r(
                &["update"],
                &["autoscaling"],
                &["horizontalpodautoscalers/status"],
            ),
            r(&["get", "update"], &["*"], &["*/scale"]),
            r(&["list"], &[""], &["pods"]),
            r(&["list"], &["metrics.k8s.io"], &["pods"]),
            r(&["get", "list"], &["custom.metrics.k8s.io"], &["*"]),
            r(&["get", "list"], &["external.metrics.k8s.io"], &["*"]),
        ],
        "job-controller" => vec![
            r(&["get", "list", "update", "watch"], &["batch"], &["jobs"]),
            r(&["update"], &["batch"], &["jobs/status"]),
            r(&["update"], &["batch"], &["jobs/finalizers"]),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
        ],
        "namespace-controller" => vec![
            r(&["delete", "get", "list", "watch"], &[""], &["namespaces"]),
            r(
                &["update"],
                &[""],
                &["namespaces/finalize", "namespaces/status"],
            ),
            r(
                &["delete", "deletecollection", "get", "list"],
                &["*"],
                &["*"],
            ),
        ],
        "node-controller" => vec![
            r(
                &["delete", "get", "list", "patch", "update"],
                &[""],
                &["nodes"],
            ),
            r(&["patch", "update"], &[""], &["nodes/status"]),
            r(&["patch", "update"], &[""], &["pods/status"]),
            r(&["delete", "list"], &[""], &["pods"]),
            r(&["get"], &[""], &["pods"]),
        ],
        "persistent-volume-binder" => vec![
            r(
                &["create", "delete", "get", "list", "update", "watch"],
                &[""],
                &["persistentvolumes"],
            ),
            r(&["update"], &[""], &["persistentvolumes/status"]),
            r(
                &["get", "list", "update", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
            r(&["update"], &[""], &["persistentvolumeclaims/status"]),
            r(
                &["create", "delete", "get", "list", "watch"],
                &[""],
                &["pods"],
            ),
            r(READ, &["storage.k8s.io"], &["storageclasses"]),
            r(
                &["create", "delete", "get"],
                &["", "discovery.k8s.io"],
                &["endpoints", "services", "endpointslices"],
            ),
            r(&["get"], &[""], &["secrets"]),
            r(READ, &[""], &["nodes"]),
        ],
        "pvc-protection-controller" => vec![
            r(
                &["get", "list", "update", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
            r(READ, &[""], &["pods"]),
        ],
        "pv-protection-controller" => vec![r(
            &["get", "list", "update", "watch"],
            &[""],
            &["persistentvolumes"],
        )],
        "replicaset-controller" => vec![
            r(&["get", "list", "update", "watch"], apps, &["replicasets"]),
            r(&["update"], apps, &["replicasets/status"]),
            r(&["update"], apps, &["replicasets/finalizers"]),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
        ],
        "replication-controller" => vec![
            // 1.0 controllers needed get and update, so old controllers keep them.
            r(
                &["get", "list", "update", "watch"],
                &[""],
                &["replicationcontrollers"],
            ),
            r(&["update"], &[""], &["replicationcontrollers/status"]),
            r(&["update"], &[""], &["replicationcontrollers/finalizers"]),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
        ],
        "resourcequota-controller" => vec![
            // Quota can count anything, so it lists and watches everything.
            r(&["list", "watch"], &["*"], &["*"]),
            r(&["update"], &[""], &["resourcequotas/status"]),
        ],
        "service-account-controller" => vec![r(&["create"], &[""], &["serviceaccounts"])],
        // Upstream's reads its ConfigMaps from an informer; Orrery's gets the one it keeps.
        "root-ca-cert-publisher" => vec![r(&["create", "get", "update"], &[""], &["configmaps"])],
        "statefulset-controller" => vec![
            r(READ, &[""], &["pods"]),
            r(READ, &["apps"], &["statefulsets"]),
            r(&["update"], &["apps"], &["statefulsets/status"]),
            r(&["update"], &["apps"], &["statefulsets/finalizers"]),
            r(
                &["create", "delete", "get", "patch", "update"],
                &[""],
                &["pods"],
            ),
            r(
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
                &["apps"],
                &["controllerrevisions"],
            ),
            r(&["create", "get"], &[""], &["persistentvolumeclaims"]),
            r(&["update", "delete"], &[""], &["persistentvolumeclaims"]),
        ],
        _ => vec![],
    };
    // Orrery's controllers write with merge patches where upstream's update: wherever
    // upstream grants `update`, `patch` is granted too.
    for rule in &mut rules {
        if let Some(verbs) = rule["verbs"].as_array_mut()
            && verbs.iter().any(|v| v == "update")
            && !verbs.iter().any(|v| v == "patch")
        {
            verbs.push(json!("patch"));
        }
    }
    rules.push(events());
    rules
}

const CONTROLLER_ACCOUNTS: &[&str] = &[
    "certificate-controller",
    "clusterrole-aggregation-controller",
    "cronjob-controller",
    "daemon-set-controller",
    "deployment-controller",
    "disruption-controller",
    "endpoint-controller",
    "endpointslice-controller",
    "generic-garbage-collector",
    "horizontal-pod-autoscaler",
    "job-controller",
    "namespace-controller",
    "node-controller",
    "persistent-volume-binder",
    "pvc-protection-controller",
    "pv-protection-controller",
    "replicaset-controller",
    "replication-controller",
    "root-ca-cert-publisher",
    "resourcequota-controller",
    "service-account-controller",
    "statefulset-controller",
];

/// The view/edit/admin rules, aggregated into those roles.
fn aggregate_roles() -> Vec<Value> {
    let view = vec![
        r(
            READ,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ],
        ),
        r(
            READ,
            &[""],
            &[
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
            ],
        ),
        r(READ, &[""], &["namespaces"]),
        r(READ, &["discovery.k8s.io"], &["endpointslices"]),
        r(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
        ),
        r(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        r(
            READ,
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        ),
        r(
            READ,
            &["extensions"],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "networkpolicies",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
            ],
        ),
        r(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        r(
            READ,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
        r(READ, &["metrics.k8s.io"], &["pods", "nodes"]),
        // Orrery's own: the flow, the stepper and the components, to watch (a ClusterRoleBinding
        // to `view` is what reaches them: paths are never namespaced).
        urls(
            &["get"],
            &[
                "/orrery/v1/flow",
                "/orrery/v1/flow/*",
                "/orrery/v1/stepper",
                "/orrery/v1/components",
                "/orrery/v1/nodes",
                "/orrery/v1/logs",
                "/orrery/v1/logs/*",
            ],
        ),
    ];
    let edit = vec![
        r(
            READ,
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
        ),
        r(&["impersonate"], &[""], &["serviceaccounts"]),
        r(
            WRITE,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
        ),
        r(&["create"], &[""], &["pods/eviction"]),
        r(
            WRITE,
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
        ),
        r(&["create"], &[""], &["serviceaccounts/token"]),
        r(
            WRITE,
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
        ),
        r(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        r(WRITE, &["batch"], &["cronjobs", "jobs"]),
        r(
            WRITE,
            &["extensions"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "ingresses",
                "networkpolicies",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
            ],
        ),
        r(WRITE, &["policy"], &["poddisruptionbudgets"]),
        r(
            WRITE,
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
        ),
        r(READ_WRITE, &["coordination.k8s.io"], &["leases"]),
    ];
    let admin = vec![
        r(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
        r(
            READ_WRITE,
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
        ),
    ];
    let to = |level: &str| format!("rbac.authorization.k8s.io/aggregate-to-{level}");
    vec![
        aggregated("admin", &[], &to("admin")),
        aggregated("edit", &[(&to("admin"), "true")], &to("edit")),
        aggregated("view", &[(&to("edit"), "true")], &to("view")),
        cluster_role_labelled(
            "system:aggregate-to-admin",
            &[(&to("admin"), "true")],
            admin,
        ),
        cluster_role_labelled("system:aggregate-to-edit", &[(&to("edit"), "true")], edit),
        cluster_role_labelled("system:aggregate-to-view", &[(&to("view"), "true")], view),
    ]
}

/// Every default ClusterRole.
pub(crate) fn cluster_roles() -> Vec<Value> {
    let mut roles = vec![cluster_role(
        "cluster-admin",
        vec![r(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
    )];
    roles.extend(aggregate_roles());
    roles.extend([
        cluster_role(
            "system:discovery",
            vec![urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                r(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:monitoring",
            vec![urls(
                &["get"],
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/metrics/slis",
                    "/readyz",
                    "/readyz/*",
                ],
            )],
        ),
        cluster_role(
            "system:auth-delegator",
            vec![
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:kube-scheduler",
            vec![
                events(),
                r(&["create"], &["coordination.k8s.io"], &["leases"]),
                named(
                    &["get", "update"],
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["kube-scheduler"],
                ),
                r(READ, &[""], &["nodes"]),
                r(&["delete", "get", "list", "watch"], &[""], &["pods"]),
                r(&["create"], &[""], &["bindings", "pods/binding"]),
                r(&["patch", "update"], &[""], &["pods/status"]),
                r(READ, &[""], &["replicationcontrollers", "services"]),
                r(READ, &["apps", "extensions"], &["replicasets"]),
                r(READ, &["apps"], &["statefulsets"]),
                r(READ, &["policy"], &["poddisruptionbudgets"]),
                r(
                    READ,
                    &[""],
                    &["persistentvolumeclaims", "persistentvolumes"],
                ),
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
                r(READ, &["storage.k8s.io"], &["csinodes"]),
                r(READ, &[""], &["namespaces"]),
                r(
                    READ,
                    &["storage.k8s.io"],
                    &["csidrivers", "csistoragecapacities"],
                ),
            ],
        ),
        cluster_role(
            "system:volume-scheduler",
            vec![
                r(
                    &["get", "list", "patch", "update", "watch"],
                    &[""],
                    &["persistentvolumes"],
                ),
                r(READ, &["storage.k8s.io"], &["storageclasses"]),
                r(
                    &["get", "list", "patch", "update", "watch"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
            ],
        ),
        cluster_role(
            "system:kube-controller-manager",
            vec![
                events(),
                r(&["create"], &["coordination.k8s.io"], &["leases"]),
                named(
                    &["get", "update"],
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["kube-controller-manager"],
                ),
                r(&["create"], &[""], &["secrets", "serviceaccounts"]),
                r(&["delete"], &[""], &["secrets"]),
                r(
                    &["get"],
                    &[""],
                    &["configmaps", "namespaces", "secrets", "serviceaccounts"],
                ),
                r(&["update"], &[""], &["secrets", "serviceaccounts"]),
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
                r(&["list", "watch"], &["*"], &["*"]),
                r(&["create"], &[""], &["serviceaccounts/token"]),
            ],
        ),
        cluster_role(
            NODE_ROLE,
            vec![
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews", "subjectaccessreviews"],
                ),
                r(READ, &[""], &["services"]),
                r(&["create", "get", "list", "watch"], &[""], &["nodes"]),
                r(&["patch", "update"], &[""], &["nodes/status"]),
                r(&["patch", "update"], &[""], &["nodes"]),
                events(),
                r(READ, &[""], &["pods"]),
                r(&["create", "delete"], &[""], &["pods"]),
                r(&["patch", "update"], &[""], &["pods/status"]),
                r(&["create"], &[""], &["pods/eviction"]),
                r(READ, &[""], &["configmaps", "secrets"]),
                r(
                    &["get"],
                    &[""],
                    &["persistentvolumeclaims", "persistentvolumes"],
                ),
                r(&["get"], &[""], &["endpoints"]),
                r(
                    &["create", "get", "list", "watch"],
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests"],
                ),
                r(
                    &["create", "delete", "get", "patch", "update"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
                r(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
                r(&["create"], &[""], &["serviceaccounts/token"]),
                r(
                    &["get", "patch", "update"],
                    &[""],
                    &["persistentvolumeclaims/status"],
                ),
                r(READ, &["storage.k8s.io"], &["csidrivers"]),
                r(
                    &["create", "delete", "get", "patch", "update"],
                    &["storage.k8s.io"],
                    &["csinodes"],
                ),
                r(READ, &["node.k8s.io"], &["runtimeclasses"]),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            vec![
                r(&["list", "watch"], &[""], &["endpoints", "services"]),
                r(READ, &[""], &["nodes"]),
                events(),
                r(
                    &["list", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
            ],
        ),
        cluster_role(
            "system:kube-dns",
            vec![r(&["list", "watch"], &[""], &["endpoints", "services"])],
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            vec![
                r(
                    &["create", "delete", "get", "list", "watch"],
                    &[""],
                    &["persistentvolumes"],
                ),
                r(
                    &["get", "list", "update", "watch"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
                r(READ, &["storage.k8s.io"], &["storageclasses"]),
                r(&["watch"], &[""], &["events"]),
                events(),
            ],
        ),
        // Who may ask for a node's client certificate, their own or any.
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![r(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![r(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
        // Orrery's control-plane kubelet shows the in-process components as static pods: it
        // reads their state.
        cluster_role(
            "system:orrery:node",
            vec![urls(&["get"], &["/orrery/v1/components"])],
        ),
        // kubeadm's CoreDNS role.
        cluster_role(
            "system:coredns",
            vec![
                r(
                    &["list", "watch"],
                    &[""],
                    &["endpoints", "services", "pods", "namespaces"],
                ),
                r(
                    &["list", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
                // Orrery's DNS keeps its own `kube-system/kube-dns` Service and endpoints,
                // which kubeadm's add-on manifests would make.
                r(
                    &["create"],
                    &["", "discovery.k8s.io"],
                    &["services", "endpoints", "endpointslices"],
                ),
                named(
                    &["get", "patch", "update"],
                    &["", "discovery.k8s.io"],
                    &["services", "endpoints", "endpointslices"],
                    &["kube-dns"],
                ),
            ],
        ),
        // metrics-server's manifest's role; Orrery's reads the kubelets through nodes/proxy.
        cluster_role(
            "system:metrics-server",
            vec![
                r(&["get"], &[""], &["nodes/metrics", "nodes/proxy"]),
                r(READ, &[""], &["pods", "nodes"]),
            ],
        ),
        // ingress-nginx's controller role, as its manifest has it.
        cluster_role(
            "system:orrery:ingress-controller",
            vec![
                r(
                    &["list", "watch", "get"],
                    &[""],
                    &[
                        "configmaps",
                        "endpoints",
                        "nodes",
                        "pods",
                        "secrets",
                        "namespaces",
                    ],
                ),
                r(READ, &[""], &["services"]),
                r(
                    READ,
                    &["networking.k8s.io"],
                    &["ingresses", "ingressclasses"],
                ),
                // Orrery's makes its IngressClass, which the controller's manifest would.
                r(
                    &["create", "patch", "update"],
                    &["networking.k8s.io"],
                    &["ingressclasses"],
                ),
                // Orrery's patches the status where ingress-nginx updates it.
                r(
                    &["update", "patch"],
                    &["networking.k8s.io"],
                    &["ingresses/status"],
                ),
                r(
                    &["list", "watch", "get"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
                events(),
            ],
        ),
        // k3s's service load balancer (klipper-lb's controller).
        cluster_role(
            "system:orrery:service-lb-controller",
            vec![
                r(
                    &["get", "list", "watch", "patch", "update"],
                    &[""],
                    &["services"],
                ),
                r(&["patch", "update"], &[""], &["services/status"]),
                r(READ, &[""], &["nodes", "pods", "endpoints"]),
                r(READ, &["discovery.k8s.io"], &["endpointslices"]),
                events(),
            ],
        ),
        // local-path-provisioner's role.
        cluster_role(
            "system:orrery:local-path-provisioner",
            vec![
                r(
                    READ,
                    &[""],
                    &["nodes", "persistentvolumeclaims", "configmaps", "pods"],
                ),
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
                r(
                    &[
                        "get", "list", "watch", "create", "patch", "update", "delete",
                    ],
                    &[""],
                    &["persistentvolumes"],
                ),
                r(&["create", "delete", "get"], &[""], &["pods"]),
                r(READ, &["storage.k8s.io"], &["storageclasses"]),
                // Orrery's makes its default StorageClass, which the manifest would.
                r(
                    &["create", "patch", "update"],
                    &["storage.k8s.io"],
                    &["storageclasses"],
                ),
                // Orrery's resizes claims it provisioned: it writes their status.
                r(
                    &["patch", "update"],
                    &[""],
                    &["persistentvolumeclaims/status"],
                ),
                events(),
            ],
        ),
    ]);
    for account in CONTROLLER_ACCOUNTS {
        roles.push(cluster_role(
            &format!("system:controller:{account}"),
            controller_rules(account),
        ));
    }
    roles
}

/// Every default ClusterRoleBinding.
pub(crate) fn cluster_role_bindings() -> Vec<Value> {
    let sa = "ServiceAccount/kube-system";
    let authenticated = ("Group", super::AUTHENTICATED);
    let mut bindings = vec![
        binding("cluster-admin", &[("Group", super::MASTERS)]),
        binding("system:basic-user", &[authenticated]),
        binding("system:discovery", &[authenticated]),
        binding(
            "system:public-info-viewer",
            &[authenticated, ("Group", super::UNAUTHENTICATED)],
        ),
        binding("system:monitoring", &[("Group", "system:monitoring")]),
        binding(
            "system:kube-controller-manager",
            &[("User", "system:kube-controller-manager")],
        ),
        binding(
            "system:kube-scheduler",
            &[("User", "system:kube-scheduler")],
        ),
        binding(
            "system:volume-scheduler",
            &[("User", "system:kube-scheduler")],
        ),
        binding("system:node-proxier", &[("User", "system:kube-proxy")]),
        binding("system:kube-dns", &[(sa, "kube-dns")]),
        binding("system:coredns", &[(sa, "coredns")]),
        binding("system:orrery:node", &[("Group", super::NODES)]),
        binding(
            "system:metrics-server",
            &[(sa, crate::metrics_server::COMPONENT)],
        ),
        binding(
            "system:orrery:ingress-controller",
            &[(sa, crate::ingress::COMPONENT)],
        ),
        binding(
            "system:orrery:service-lb-controller",
            &[(sa, crate::servicelb::COMPONENT)],
        ),
        binding(
            "system:orrery:local-path-provisioner",
            &[(sa, crate::provisioner::COMPONENT)],
        ),
    ];
    // `system:node` has no subjects: the Node authorizer grants it, narrowed by its graph (a
    // binding to `system:nodes` would let any node read every Secret).
    let mut node = binding(NODE_ROLE, &[]);
    if let Some(map) = node.as_object_mut() {
        map.remove("subjects");
    }
    bindings.push(node);
    for account in CONTROLLER_ACCOUNTS {
        let mut b = binding(&format!("system:controller:{account}"), &[(sa, account)]);
        b["metadata"]["name"] = json!(format!("system:controller:{account}"));
        bindings.push(b);
    }
    bindings
}

/// Brings an existing default object back to its defaults, as `reconciliation.ReconcileRole`
/// does for auto-updated roles: rules it lost are added (rules it gained stay), and a binding
/// gets back missing subjects. `None`: nothing to change (or auto-update was turned off).
pub(crate) fn reconcile(default: &Value, existing: &Value) -> Option<Value> {
    if existing["metadata"]["annotations"][AUTOUPDATE].as_str() == Some("false") {
        return None;
    }
    let mut updated = existing.clone();
    let mut changed = false;
    let add_missing = |field: &str, updated: &mut Value, changed: &mut bool| {
        let wanted = default[field].as_array().cloned().unwrap_or_default();
        let have = updated[field].as_array().cloned().unwrap_or_default();
        let mut all = have.clone();
        for w in wanted {
            if !have.contains(&w) {
                all.push(w);
                *changed = true;
            }
        }
        updated[field] = Value::Array(all);
    };
    match default["kind"].as_str() {
        Some("ClusterRole") if default.get("aggregationRule").is_some() => {
            if existing.get("aggregationRule") != default.get("aggregationRule") {
                updated["aggregationRule"] = default["aggregationRule"].clone();
                changed = true;
            }
        }
        Some("ClusterRole") => {
            let have: Vec<k8s_openapi::api::rbac::v1::PolicyRule> =
                serde_json::from_value(existing["rules"].clone()).unwrap_or_default();
            let wanted: Vec<k8s_openapi::api::rbac::v1::PolicyRule> =
                serde_json::from_value(default["rules"].clone()).unwrap_or_default();
            if !super::rbac::uncovered(&have, &wanted).is_empty() {
                add_missing("rules", &mut updated, &mut changed);
            }
        }
        _ => {
            if default.get("subjects").is_some() {
                add_missing("subjects", &mut updated, &mut changed);
            }
        }
    }
    for (field, labels) in [
        ("labels", &default["metadata"]["labels"]),
        ("annotations", &default["metadata"]["annotations"]),
    ] {
        if let Some(labels) = labels.as_object() {
            for (k, v) in labels {
                if updated["metadata"][field][k] != *v {
                    if !updated["metadata"][field].is_object() {
                        updated["metadata"][field] = json!({});
                    }
                    updated["metadata"][field][k] = v.clone();
                    changed = true;
                }
            }
        }
    }
    changed.then_some(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_role_is_a_valid_cluster_role_and_every_binding_names_one() {
        let roles = cluster_roles();
        let names: Vec<&str> = roles
            .iter()
            .map(|r| r["metadata"]["name"].as_str().unwrap())
            .collect();
        for role in &roles {
            serde_json::from_value::<k8s_openapi::api::rbac::v1::ClusterRole>(role.clone())
                .unwrap();
        }
        for b in cluster_role_bindings() {
            let b: k8s_openapi::api::rbac::v1::ClusterRoleBinding =
                serde_json::from_value(b).unwrap();
            assert!(
                names.contains(&b.role_ref.name.as_str()),
                "{}",
                b.role_ref.name
            );
        }
        for controller in [
            "deployment",
            "replicaset",
            "replicationcontroller",
            "statefulset",
            "daemonset",
            "job",
            "cronjob",
            "namespace",
            "endpointslice",
            "serviceaccount",
            "disruption",
            "nodelifecycle",
            "garbagecollector",
            "horizontal-pod-autoscaler",
            "persistentvolume-binder",
            "pvc-protection",
            "pv-protection",
            "clusterrole-aggregation",
            "root-ca-cert-publisher",
            "certificate",
        ] {
            let account = controller_account(controller);
            assert!(CONTROLLER_ACCOUNTS.contains(&account), "{controller}");
        }
    }

    #[test]
    fn reconcile_gives_back_lost_rules_only() {
        let default = cluster_role("x", vec![r(READ, &[""], &["pods"])]);
        assert_eq!(reconcile(&default, &default), None);
        let mut lost = default.clone();
        lost["rules"] = json!([]);
        assert_eq!(
            reconcile(&default, &lost).unwrap()["rules"],
            default["rules"]
        );
        let mut off = lost.clone();
        off["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert_eq!(reconcile(&default, &off), None);
    }
}
