//! Resource quota accounting as upstream's quota evaluators do it (`pkg/quota/v1`), shared by
//! the ResourceQuota admission plugin and the resource quota controller: resource lists of
//! exact quantities ([`Quantity`], from `apimachinery::quantity`) and their arithmetic
//! ([`add`], [`subtract_non_negative`], [`mask`], [`less_than_or_equal`]), what one object
//! uses ([`usage`]: the pod, service and claim evaluators, and object counts for the rest),
//! which quota names an object's kind is charged under ([`matches`]) and which scoped quotas
//! select it ([`in_scope`]), the pod evaluator's
//! `Constraints` ([`pod_constraints`]) and the names a quota may hold ([`is_standard_name`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::quantity::Quantity;

/// A `ResourceList`: resource names to quantities, in name order.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Reads a `ResourceList` (`spec.hard`, a container's `requests`); unreadable entries go.
pub fn resource_list(value: &Value) -> ResourceList {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Quantity::of(v).map(|q| (k.clone(), q)))
        .collect()
}

/// Writes a `ResourceList` back as JSON.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect(),
    )
}

/// `quota.Add`: every key of either, summed where both have it.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone())
            .and_modify(|q| *q = q.plus(*v))
            .or_insert(*v);
    }
    out
}

/// `quota.SubtractWithNonNegativeResult`: `a - b`, no key below zero.
pub fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    a.iter()
        .map(|(k, v)| {
            let d = match b.get(k) {
                Some(o) => v.minus(*o),
                None => *v,
            };
            (k.clone(), if d.is_negative() { v.zeroed() } else { d })
        })
        .collect()
}

/// `quota.Mask`: only the given names.
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names
        .into_iter()
        .filter_map(|k| list.get(k).map(|v| (k.clone(), *v)))
        .collect()
}

/// `quota.LessThanOrEqual`: whether every key of `a` that `b` has is within it, and the keys
/// that are not.
pub fn less_than_or_equal(a: &ResourceList, b: &ResourceList) -> (bool, Vec<String>) {
    let exceeded: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|limit| **v > *limit))
        .map(|(k, _)| k.clone())
        .collect();
    (exceeded.is_empty(), exceeded)
}

/// The admission plugin's `prettyPrint`: `pods=1,requests.cpu=500m`.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The resources a quota may limit by their plain names (`IsStandardQuotaResourceName`).
pub const STANDARD_QUOTA_NAMES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

/// Whether a plain quota name is standard (hugepages included).
pub fn is_standard_name(name: &str) -> bool {
    STANDARD_QUOTA_NAMES.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

/// Whether a quota name counts whole things (`IsIntegerResourceName`).
pub fn is_integer_name(name: &str) -> bool {
    [
        "pods",
        "resourcequotas",
        "services",
        "replicationcontrollers",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "services.nodeports",
        "services.loadbalancers",
    ]
    .contains(&name)
}

/// The kinds counted under a legacy name as well as `count/<plural>`.
const LEGACY_COUNTS: &[&str] = &[
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
];

/// `count/<plural>` for the core group, `count/<plural>.<group>` for the others.
pub fn object_count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The compute resources of pods (`podComputeQuotaResources` and the rest the pod evaluator
/// reports).
const POD_COMPUTE: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

/// The storage class a claim's quota names carry: `<class>.storageclass.storage.k8s.io/`.
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Whether the quota name `name` is charged for objects of `group`/`plural` (the evaluator's
/// `MatchingResources`).
pub fn matches(group: &str, plural: &str, name: &str) -> bool {
    if name == object_count_name(group, plural) {
        return true;
    }
    if !group.is_empty() {
        return false;
    }
    match plural {
        "pods" => {
            name == "pods"
                || POD_COMPUTE.contains(&name)
                || name.starts_with("hugepages-")
                || name.starts_with("requests.hugepages-")
        }
        "services" => matches!(
            name,
            "services" | "services.nodeports" | "services.loadbalancers"
        ),
        "persistentvolumeclaims" => {
            matches!(name, "persistentvolumeclaims" | "requests.storage")
                || name.split_once(STORAGE_CLASS_SUFFIX).is_some_and(|(_, r)| {
                    matches!(r, "persistentvolumeclaims" | "requests.storage")
                })
        }
        p => LEGACY_COUNTS.contains(&p) && name == p,
    }
}

/// Whether a pod has ended (Succeeded or Failed): its compute resources and `pods` no longer
/// count, as upstream's `QuotaV1Pod` has it.
pub fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// Whether a pod is of the `BestEffort` QoS class: no container requests or limits cpu or
/// memory.
pub fn is_best_effort(pod: &Value) -> bool {
    ["containers", "initContainers"].iter().all(|list| {
        containers(pod, list).iter().all(|c| {
            ["requests", "limits"].iter().all(|what| {
                resource_list(&c["resources"][*what])
                    .iter()
                    .all(|(k, q)| !matches!(k.as_str(), "cpu" | "memory") || q.is_zero())
            })
        })
    })
}

/// Whether a quota's scopes (`spec.scopes`, and `spec.scopeSelector`'s expressions) all
/// select `object` (upstream's `podMatchesScopeFunc`; only pods have scopes, so a scoped quota
/// counts nothing else). An unscoped quota selects everything.
pub fn in_scope(quota: &Value, group: &str, plural: &str, object: &Value) -> bool {
    let spec = &quota["spec"];
    let mut requirements: Vec<(String, String, Vec<String>)> = spec["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_owned(), "Exists".to_owned(), Vec::new()))
        .collect();
    for e in spec["scopeSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let values = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        requirements.push((
            e["scopeName"].as_str().unwrap_or_default().to_owned(),
            e["operator"].as_str().unwrap_or_default().to_owned(),
            values,
        ));
    }
    if requirements.is_empty() {
        return true;
    }
    if (group, plural) != ("", "pods") {
        return false;
    }
    requirements.iter().all(|(scope, operator, values)| {
        let deadline = object["spec"]["activeDeadlineSeconds"]
            .as_i64()
            .is_some_and(|d| d >= 0);
        match scope.as_str() {
            "Terminating" => deadline,
            "NotTerminating" => !deadline,
            "BestEffort" => is_best_effort(object),
            "NotBestEffort" => !is_best_effort(object),
            "PriorityClass" => {
                let class = object["spec"]["priorityClassName"]
                    .as_str()
                    .unwrap_or_default();
                match operator.as_str() {
                    "Exists" => !class.is_empty(),
                    "DoesNotExist" => class.is_empty(),
                    "In" => values.iter().any(|v| v == class),
                    "NotIn" => !values.iter().any(|v| v == class),
                    _ => false,
                }
            }
            _ => false,
        }
    })
}

/// `podComputeUsageHelper`: what one container's (or a whole pod's) requests and limits use.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), Quantity::count(1));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            out.insert(r.into(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), *q);
        }
    }
    for (k, q) in requests {
        if k.starts_with("hugepages-") {
            out.insert(k.clone(), *q);
            out.insert(format!("requests.{k}"), *q);
        }
    }
    out
}

fn containers(pod: &Value, field: &str) -> Vec<Value> {
    pod["spec"][field].as_array().cloned().unwrap_or_default()
}

/// A pod's requests or limits (`what`): its containers' summed, and no less than any one init
/// container's (upstream's `PodRequests`/`PodLimits` without overhead).
pub fn pod_resources(pod: &Value, what: &str) -> ResourceList {
    let mut sum = ResourceList::new();
    for c in containers(pod, "containers") {
        sum = add(&sum, &resource_list(&c["resources"][what]));
    }
    for c in containers(pod, "initContainers") {
        for (k, v) in resource_list(&c["resources"][what]) {
            let entry = sum.entry(k).or_insert(v);
            if v > *entry {
                *entry = v;
            }
        }
    }
    sum
}

/// What one object of `group`/`plural` uses of every quota name it is charged under.
pub fn usage(group: &str, plural: &str, object: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(object_count_name(group, plural), Quantity::count(1));
    if !group.is_empty() {
        return out;
    }
    match plural {
        "pods" if !is_terminal(object) => {
            let used = compute_usage(
                &pod_resources(object, "requests"),
                &pod_resources(object, "limits"),
            );
            out.extend(used);
        }
        "pods" => {}
        "services" => {
            out.insert("services".into(), Quantity::count(1));
            let spec = &object["spec"];
            let ports = spec["ports"].as_array().map_or(0, Vec::len) as i64;
            match spec["type"].as_str() {
                Some("NodePort") => {
                    out.insert("services.nodeports".into(), Quantity::count(ports));
                }
                Some("LoadBalancer") => {
                    let node_ports = if spec["allocateLoadBalancerNodePorts"] == false {
                        spec["ports"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|p| p["nodePort"].as_i64().is_some_and(|n| n != 0))
                            .count() as i64
                    } else {
                        ports
                    };
                    out.insert("services.nodeports".into(), Quantity::count(node_ports));
                    out.insert("services.loadbalancers".into(), Quantity::count(1));
                }
                _ => {}
            }
        }
        "persistentvolumeclaims" => {
            out.insert("persistentvolumeclaims".into(), Quantity::count(1));
            let class =
                object["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
                    .as_str()
                    .or(object["spec"]["storageClassName"].as_str())
                    .unwrap_or_default()
                    .to_owned();
            if !class.is_empty() {
                out.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                    Quantity::count(1),
                );
            }
            // The larger of the request and what the volume was grown to.
            let request = Quantity::of(&object["spec"]["resources"]["requests"]["storage"]);
            let allocated = Quantity::of(&object["status"]["allocatedResources"]["storage"]);
            let storage = match (request, allocated) {
                (Some(r), Some(a)) if a > r => Some(a),
                (Some(r), _) => Some(r),
                (None, a) => a,
            };
            if let Some(storage) = storage {
                out.insert("requests.storage".into(), storage);
                if !class.is_empty() {
                    out.insert(
                        format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                        storage,
                    );
                }
            }
        }
        p if LEGACY_COUNTS.contains(&p) => {
            out.insert(p.into(), Quantity::count(1));
        }
        _ => {}
    }
    out
}

/// The resources every container must name once a quota limits them (the pod evaluator's
/// `validationSet`).
const REQUIRED_PER_CONTAINER: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// The pod evaluator's `Constraints`: with a quota on cpu or memory, each container must
/// request (or limit) it. `Err("must specify limits.cpu for: c; requests.cpu for: c")`.
pub fn pod_constraints(required: &BTreeSet<String>, pod: &Value) -> Result<(), String> {
    let required: BTreeSet<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|r| REQUIRED_PER_CONTAINER.contains(r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for c in containers(pod, "containers")
        .iter()
        .chain(containers(pod, "initContainers").iter())
    {
        let used = compute_usage(
            &resource_list(&c["resources"]["requests"]),
            &resource_list(&c["resources"]["limits"]),
        );
        for r in &required {
            if !used.contains_key(*r) {
                missing
                    .entry(r)
                    .or_default()
                    .insert(c["name"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apimachinery::quantity::go_debug;
    use serde_json::json;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap()
    }

    #[test]
    fn quantities_are_written_as_gos() {
        for (text, shown) in [
            ("500m", "500m"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("2000", "2k"),
            ("1500", "1500"),
            ("128Mi", "128Mi"),
            ("1024Mi", "1Gi"),
            ("1536", "1536"),
            ("1.5Gi", "1536Mi"),
            ("1e3", "1k"),
            ("0", "0"),
            ("100n", "100n"),
            ("-1", "-1"),
        ] {
            assert_eq!(q(text).to_string(), shown, "{text}");
        }
        assert_eq!(q("500m").plus(q("1")).to_string(), "1500m");
        assert_eq!(q("64Mi").plus(q("64Mi")).to_string(), "128Mi");
        assert_eq!(
            q("0").plus(q("32Mi")).to_string(),
            "32Mi",
            "zero takes the format"
        );
        assert_eq!(q("1").plus(q("1Ki")).to_string(), "1025");
        assert_eq!(q("1.5").milli(), 1500);
        assert_eq!(q("1.5").value(), 2);
        assert!(Quantity::parse("abc").is_err());
        assert!(Quantity::parse("1x").is_err());
    }

    #[test]
    fn a_pod_uses_its_requests_and_limits_until_it_ends() {
        let mut pod = json!({
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "300m"}}},
                ],
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}],
            },
            "status": {"phase": "Running"},
        });
        let used = usage("", "pods", &pod);
        let shown: BTreeMap<&str, String> = used
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        assert_eq!(shown["pods"], "1");
        assert_eq!(shown["count/pods"], "1");
        assert_eq!(shown["requests.cpu"], "1", "the init container's is larger");
        assert_eq!(shown["cpu"], "1");
        assert_eq!(shown["requests.memory"], "64Mi");
        assert_eq!(shown["limits.cpu"], "200m");
        pod["status"]["phase"] = json!("Succeeded");
        let used = usage("", "pods", &pod);
        assert_eq!(used.keys().collect::<Vec<_>>(), ["count/pods"]);
    }

    #[test]
    fn kinds_are_charged_under_their_names() {
        assert!(matches("", "pods", "pods"));
        assert!(matches("", "pods", "requests.cpu"));
        assert!(matches("", "pods", "count/pods"));
        assert!(!matches("", "pods", "services"));
        assert!(matches("", "configmaps", "configmaps"));
        assert!(matches("apps", "deployments", "count/deployments.apps"));
        assert!(!matches("apps", "deployments", "count/deployments"));
        assert!(matches(
            "",
            "persistentvolumeclaims",
            "gold.storageclass.storage.k8s.io/requests.storage"
        ));
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        let used = usage("", "services", &svc);
        assert_eq!(used["services.nodeports"], Quantity::count(2));
        assert_eq!(used["services"], Quantity::count(1));
        let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        assert_eq!(
            usage("", "services", &lb)["services.loadbalancers"],
            Quantity::count(1)
        );
    }

    #[test]
    fn quantities_print_as_gos_struct() {
        assert_eq!(
            go_debug("2"),
            r#"resource.Quantity{i:resource.int64Amount{value:2, scale:0}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:"2", Format:"DecimalSI"}"#
        );
        assert!(go_debug("500m").contains("value:500, scale:-3}"));
        assert!(go_debug("500m").contains(r#"s:"500m""#));
        assert!(go_debug("128Mi").contains(r#"value:134217728, scale:0}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:"", Format:"BinarySI""#));
        assert!(go_debug("1000").contains(r#"s:"""#));
    }

    #[test]
    fn scoped_quotas_select_pods_only() {
        let best_effort = json!({"spec": {"containers": [{"name": "c"}]}});
        let burstable = json!({"spec": {"activeDeadlineSeconds": 30, "priorityClassName": "high",
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}});
        let scoped = |scopes: Value| json!({"spec": {"hard": {"pods": "1"}, "scopes": scopes}});
        assert!(in_scope(
            &scoped(json!(["BestEffort"])),
            "",
            "pods",
            &best_effort
        ));
        assert!(!in_scope(
            &scoped(json!(["BestEffort"])),
            "",
            "pods",
            &burstable
        ));
        assert!(in_scope(
            &scoped(json!(["NotBestEffort", "Terminating"])),
            "",
            "pods",
            &burstable
        ));
        assert!(!in_scope(
            &scoped(json!(["NotTerminating"])),
            "",
            "pods",
            &burstable
        ));
        assert!(!in_scope(
            &scoped(json!(["BestEffort"])),
            "",
            "services",
            &json!({})
        ));
        assert!(in_scope(&json!({"spec": {}}), "", "services", &json!({})));
        let priority = json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        assert!(in_scope(&priority, "", "pods", &burstable));
        assert!(!in_scope(&priority, "", "pods", &best_effort));
    }

    #[test]
    fn arithmetic_and_comparison_are_upstreams() {
        let used: ResourceList = [("pods".to_owned(), Quantity::count(2))].into();
        let hard: ResourceList = [
            ("pods".to_owned(), Quantity::count(2)),
            ("requests.cpu".to_owned(), q("1")),
        ]
        .into();
        let requested: ResourceList = [("pods".to_owned(), Quantity::count(1))].into();
        let new = add(&used, &requested);
        let (ok, exceeded) = less_than_or_equal(&new, &hard);
        assert!(!ok);
        assert_eq!(exceeded, ["pods"]);
        assert_eq!(pretty(&mask(&hard, &exceeded)), "pods=2");
        assert_eq!(
            subtract_non_negative(&requested, &new)["pods"],
            Quantity::count(0)
        );
    }

    #[test]
    fn constraints_name_every_container_missing_a_resource() {
        let pod = json!({"spec": {"containers": [
            {"name": "c", "resources": {}},
            {"name": "d", "resources": {"requests": {"cpu": "1"}}},
        ]}});
        let required: BTreeSet<String> = ["requests.cpu", "limits.cpu", "pods"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            pod_constraints(&required, &pod),
            Err("must specify limits.cpu for: c,d; requests.cpu for: c".into())
        );
        let only_pods: BTreeSet<String> = ["pods".to_owned()].into();
        assert_eq!(pod_constraints(&only_pods, &pod), Ok(()));
    }
}
