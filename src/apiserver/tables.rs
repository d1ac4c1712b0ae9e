//! Server-side printing: the `meta.k8s.io/v1 Table` that `kubectl get` asks for, with the real
//! API server's columns for each kind (priority-1 columns show only with `-o wide`).

use serde_json::{Value, json};

use super::resources::Resource;
use crate::apimachinery::labels;
use crate::apimachinery::printers::{self, human_duration};

/// Whether the client asked for a Table (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
pub(crate) fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// `translateTimestampSince` of a timestamp field, now.
fn age(field: &Value) -> String {
    let time = field.as_str().and_then(|t| t.parse().ok());
    printers::since(time, jiff::Timestamp::now())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or_none(text: String) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text
    }
}

/// `<unset>` for an optional field without a value, as kubectl's volume columns say.
fn or_unset(v: &Value) -> String {
    match v.as_str() {
        Some(text) => text.to_owned(),
        None => "<unset>".into(),
    }
}

/// Access modes as kubectl abbreviates them (`GetAccessModesAsString`): each once, in the order
/// RWO, ROX, RWX, RWOP, whatever order the object lists them in.
fn access_modes(modes: &Value) -> String {
    let listed: Vec<&str> = modes
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| listed.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A claim that names its volume (kubectl shows its capacity and access modes only then).
fn bound_claim(claim: &Value) -> bool {
    claim["spec"]["volumeName"]
        .as_str()
        .is_some_and(|v| !v.is_empty())
}

/// The class of a claim or volume: the beta annotation first, then `spec.storageClassName`
/// (upstream's `GetPersistentVolumeClaimClass` and `GetPersistentVolumeClass`).
fn storage_class_of(o: &Value) -> String {
    match o["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"].as_str() {
        Some(class) => class.to_owned(),
        None => s(&o["spec"]["storageClassName"]),
    }
}

/// Whether a StorageClass is marked default (`storageclass.kubernetes.io/is-default-class`, or
/// its beta form, `"true"`).
fn is_default_storage_class(class: &Value) -> bool {
    let annotations = &class["metadata"]["annotations"];
    [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|key| annotations[*key].as_str() == Some("true"))
}

fn count(v: &Value) -> i64 {
    v.as_object().map_or(0, |m| m.len() as i64)
}

/// kubectl's lists of endpoints and ports: three entries, then `+ N more...`.
fn at_most_three(list: Vec<String>, empty: &str) -> String {
    match list.len() {
        0 => empty.to_owned(),
        n if n > 3 => format!("{} + {} more...", list[..3].join(","), n - 3),
        _ => list.join(","),
    }
}

/// An `IntOrString` as its `String()` prints it, `N/A` when unset (printPodDisruptionBudget).
fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        _ => "N/A".into(),
    }
}

/// An HPA as autoscaling/v2 has it, whichever version it is served in.
fn as_hpa_v2(o: &Value) -> Value {
    if o["apiVersion"] == "autoscaling/v1" {
        crate::apimachinery::autoscaling::v1_to_v2(o.clone())
    } else {
        o.clone()
    }
}

/// `formatHPAMetrics`: each metric as `<name>: <current>/<target>` (`cpu: 45%/50%`,
/// `<unknown>` before the first measurement), at most two, then `+ N more...`.
fn hpa_targets(hpa: &Value) -> String {
    let specs = hpa["spec"]["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = hpa["status"]["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let (source, current_of) = match spec["type"].as_str().unwrap_or_default() {
            "Resource" => ("resource", "resource"),
            "ContainerResource" => ("containerResource", "containerResource"),
            "Pods" => ("pods", "pods"),
            "Object" => ("object", "object"),
            "External" => ("external", "external"),
            _ => ("", ""),
        };
        let source_spec = &spec[source];
        let current = status.map(|s| &s[current_of]["current"]);
        let name = if source == "resource" || source == "containerResource" {
            s(&source_spec["name"])
        } else {
            s(&source_spec["metric"]["name"])
        };
        let target = &source_spec["target"];
        let entry = if let Some(value) = target["averageValue"].as_str() {
            let now = current
                .and_then(|c| c["averageValue"].as_str())
                .unwrap_or("<unknown>");
            let avg = if source == "resource" { "" } else { " (avg)" };
            format!("{name}: {now}/{value}{avg}")
        } else if let Some(value) = target["value"].as_str() {
            let now = current
                .and_then(|c| c["value"].as_str())
                .unwrap_or("<unknown>");
            format!("{name}: {now}/{value}")
        } else {
            let now = current
                .and_then(|c| c["averageUtilization"].as_i64())
                .map_or_else(|| "<unknown>".to_owned(), |u| format!("{u}%"));
            let target = target["averageUtilization"]
                .as_i64()
                .map_or_else(|| "<auto>".to_owned(), |u| format!("{u}%"));
            format!("{name}: {now}/{target}")
        };
        list.push(entry);
        if list.len() > 2 {
            list.truncate(2);
            return format!("{} + {} more...", list.join(", "), specs.len() - 2);
        }
    }
    list.join(", ")
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// A `LabelSelector` as kubectl prints it (`metav1.FormatLabelSelector`).
fn labels_selector(selector: &Value) -> String {
    or_none(labels::selector_string(selector))
}

/// A label set as kubectl prints it (`labels.FormatLabels`).
fn map_selector(selector: &Value) -> String {
    or_none(labels::set_string(selector))
}

fn containers_and_images(template_spec: &Value) -> (String, String) {
    let containers = template_spec["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = containers.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<String> = containers.iter().map(|c| s(&c["image"])).collect();
    (names.join(","), images.join(","))
}

/// The pod's row through kubectl's pod printer, read straight from the stored JSON
/// ([`printers::PodView::from_json`]: a typed copy of every pod would cost more than printing).
fn pod_row(o: &Value) -> Vec<Value> {
    printers::PodView::from_json(o)
        .cells(jiff::Timestamp::now())
        .into_iter()
        .map(Value::String)
        .collect()
}

/// The conditions of a row: a finished pod's `Completed` ([`printers::pod_row_condition`]).
fn row_conditions(resource: &Resource, o: &Value) -> Option<Value> {
    if (resource.group, resource.kind) != ("", "Pod") {
        return None;
    }
    let c = printers::pod_row_condition(o["status"]["phase"].as_str()?)?;
    Some(json!([{"type": c.type_, "status": c.status, "reason": c.reason, "message": c.message}]))
}

fn service_ports(ports: &Value) -> String {
    let ports = ports.as_array().cloned().unwrap_or_default();
    let parts: Vec<String> = ports
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) if np != 0 => format!("{}:{np}/{proto}", int(&p["port"])),
                _ => format!("{}/{proto}", int(&p["port"])),
            }
        })
        .collect();
    or_none(parts.join(","))
}

fn node_status(node: &Value) -> String {
    let conditions = node["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = conditions.iter().find(|c| c["type"] == "Ready");
    let mut status = match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => "Ready".to_owned(),
        _ => "NotReady".to_owned(),
    };
    if conditions.is_empty() {
        status = "Unknown".into();
    }
    if node["spec"]["unschedulable"].as_bool() == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = node["metadata"]["labels"]
        .as_object()
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    or_none(roles.join(","))
}

fn node_address(node: &Value, kind: &str) -> String {
    or_none(
        node["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["type"] == kind))
            .map(|a| s(&a["address"]))
            .unwrap_or_default(),
    )
}

fn source_of(event: &Value) -> String {
    let component = s(&event["source"]["component"]);
    let host = s(&event["source"]["host"]);
    if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    }
}

/// printers.go's `formatHosts`: up to three hosts, `+ N more...`, `*` when no rule names one.
fn ingress_hosts(rules: &Value) -> String {
    let rules = rules.as_array().map(Vec::as_slice).unwrap_or_default();
    let max = 3;
    let mut list = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == max {
            more = true;
        }
        let host = s(&rule["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".into();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - max)
    } else {
        joined
    }
}

/// printers.go's `ingressLoadBalancerStatusStringer` (not wide): the sorted set of IPs (or
/// hostnames), cut at 16 characters.
fn ingress_address(load_balancer: &Value) -> String {
    let mut set = std::collections::BTreeSet::new();
    for point in load_balancer["ingress"].as_array().into_iter().flatten() {
        let (ip, hostname) = (s(&point["ip"]), s(&point["hostname"]));
        if !ip.is_empty() {
            set.insert(ip);
        } else if !hostname.is_empty() {
            set.insert(hostname);
        }
    }
    let joined = set.into_iter().collect::<Vec<_>>().join(",");
    if joined.len() > 16 {
        format!("{}...", &joined[..13])
    } else {
        joined
    }
}

/// printers.go's `printIngressClass` parameters: `Kind[.apiGroup]/name`, or `<none>`.
fn ingress_class_parameters(parameters: &Value) -> String {
    if !parameters.is_object() {
        return "<none>".into();
    }
    let mut text = s(&parameters["kind"]);
    if let Some(group) = parameters["apiGroup"].as_str() {
        text = format!("{text}.{group}");
    }
    format!("{text}/{}", s(&parameters["name"]))
}

/// kubectl's `printResourceQuota`: `used/hard` of every resource in `status.hard`, by name;
/// `limits.*` in the LIMIT column, the rest in REQUEST.
fn quota_column(quota: &Value, limits: bool) -> String {
    use crate::apimachinery::quantity::Quantity;
    use crate::apimachinery::quota::resource_list;
    let hard = resource_list(&quota["status"]["hard"]);
    let used = resource_list(&quota["status"]["used"]);
    hard.iter()
        .filter(|(name, _)| {
            let mut pieces = name.split('.');
            let first = pieces.next();
            (pieces.next().is_some() && first == Some("limits")) == limits
        })
        .map(|(name, hard)| {
            let used = used.get(name).copied().unwrap_or(Quantity::count(0));
            format!("{name}: {used}/{hard}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn col(name: &str, ty: &str, priority: i64, description: &str) -> Value {
    let mut c = json!({"name": name, "type": ty, "format": "", "description": description, "priority": priority});
    if name == "Name" {
        c["format"] = json!("name");
    }
    c
}

/// The columns of a kind and the cells of one object.
/// The cells of one row.
type Cells = fn(&Value) -> Vec<Value>;

fn printer(kind: &str, group: &str) -> (Vec<Value>, Cells) {
    let name_desc = "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
    let age_desc = "CreationTimestamp is a timestamp representing the server time when this object was created.";
    let name = || col("Name", "string", 0, name_desc);
    let age_col = || col("Age", "string", 0, age_desc);
    let containers_col = || {
        col(
            "Containers",
            "string",
            1,
            "Names of each container in the template.",
        )
    };
    let images_col = || {
        col(
            "Images",
            "string",
            1,
            "Images referenced by each container in the template.",
        )
    };
    macro_rules! cells {
        ($($e:expr),* $(,)?) => { |o: &Value| vec![json!(s(&o["metadata"]["name"])), $(json!($e(o))),*] };
    }
    fn created(o: &Value) -> String {
        age(&o["metadata"]["creationTimestamp"])
    }
    match (group, kind) {
        ("", "Pod") => (
            vec![
                name(),
                col(
                    "Ready",
                    "string",
                    0,
                    "The aggregate readiness state of this pod for accepting traffic.",
                ),
                col(
                    "Status",
                    "string",
                    0,
                    "The aggregate status of the containers in this pod.",
                ),
                col(
                    "Restarts",
                    "string",
                    0,
                    "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                ),
                age_col(),
                col(
                    "IP",
                    "string",
                    1,
                    "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                ),
                col(
                    "Node",
                    "string",
                    1,
                    "NodeName indicates in which node this pod is scheduled.",
                ),
                col(
                    "Nominated Node",
                    "string",
                    1,
                    "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
                ),
                col(
                    "Readiness Gates",
                    "string",
                    1,
                    "If specified, all readiness gates will be evaluated for pod readiness.",
                ),
            ],
            pod_row,
        ),
        ("", "Namespace") => (
            vec![
                name(),
                col("Status", "string", 0, "The status of the namespace"),
                age_col(),
            ],
            cells!(|o: &Value| s(&o["status"]["phase"]), created),
        ),
        ("", "Node") => (
            vec![
                name(),
                col("Status", "string", 0, "The status of the node"),
                col("Roles", "string", 0, "The roles of the node"),
                age_col(),
                col(
                    "Version",
                    "string",
                    0,
                    "Kubelet Version reported by the node.",
                ),
                col("Internal-IP", "string", 1, "List of internal IPs."),
                col("External-IP", "string", 1, "List of external IPs."),
                col(
                    "OS-Image",
                    "string",
                    1,
                    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                ),
                col(
                    "Kernel-Version",
                    "string",
                    1,
                    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                ),
                col(
                    "Container-Runtime",
                    "string",
                    1,
                    "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                ),
            ],
            cells!(
                node_status,
                node_roles,
                created,
                |o: &Value| s(&o["status"]["nodeInfo"]["kubeletVersion"]),
                |o: &Value| node_address(o, "InternalIP"),
                |o: &Value| node_address(o, "ExternalIP"),
                |o: &Value| or_none(s(&o["status"]["nodeInfo"]["osImage"])),
                |o: &Value| or_none(s(&o["status"]["nodeInfo"]["kernelVersion"])),
                |o: &Value| or_none(s(&o["status"]["nodeInfo"]["containerRuntimeVersion"])),
            ),
        ),
        ("", "Service") => (
            vec![
                name(),
                col(
                    "Type",
                    "string",
                    0,
                    "type determines how the Service is exposed.",
                ),
                col(
                    "Cluster-IP",
                    "string",
                    0,
                    "clusterIP is the IP address of the service and is usually assigned randomly.",
                ),
                col(
                    "External-IP",
                    "string",
                    0,
                    "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
                ),
                col(
                    "Port(s)",
                    "string",
                    0,
                    "The list of ports that are exposed by this service.",
                ),
                age_col(),
                col(
                    "Selector",
                    "string",
                    1,
                    "Route service traffic to pods with label keys and values matching this selector.",
                ),
            ],
            cells!(
                |o: &Value| s(&o["spec"]["type"]),
                |o: &Value| or_none(s(&o["spec"]["clusterIP"])),
                |o: &Value| {
                    let mut ips: Vec<String> = o["spec"]["externalIPs"]
                        .as_array()
                        .map(|a| a.iter().map(s).collect())
                        .unwrap_or_default();
                    if let Some(ingress) = o["status"]["loadBalancer"]["ingress"].as_array() {
                        ips.extend(ingress.iter().map(|i| s(&i["ip"])));
                    }
                    if ips.is_empty() && o["spec"]["type"] == "LoadBalancer" {
                        "<pending>".to_owned()
                    } else {
                        or_none(ips.join(","))
                    }
                },
                |o: &Value| service_ports(&o["spec"]["ports"]),
                created,
                |o: &Value| map_selector(&o["spec"]["selector"]),
            ),
        ),
        ("", "Endpoints") => (
            vec![
                name(),
                col(
                    "Endpoints",
                    "string",
                    0,
                    "Endpoints is the list of endpoints",
                ),
                age_col(),
            ],
            cells!(
                |o: &Value| {
                    // kubectl's formatEndpoints: per port, each ready address; three at most.
                    let mut eps = Vec::new();
                    for subset in o["subsets"].as_array().cloned().unwrap_or_default() {
                        let addresses = subset["addresses"].as_array().cloned().unwrap_or_default();
                        let ports = subset["ports"].as_array().cloned().unwrap_or_default();
                        if ports.is_empty() {
                            eps.extend(addresses.iter().map(|a| s(&a["ip"])));
                        }
                        for p in &ports {
                            eps.extend(
                                addresses
                                    .iter()
                                    .map(|a| format!("{}:{}", s(&a["ip"]), int(&p["port"]))),
                            );
                        }
                    }
                    at_most_three(eps, "<none>")
                },
                created
            ),
        ),
        ("", "ConfigMap") => (
            vec![
                name(),
                col("Data", "string", 0, "Data contains the configuration data."),
                age_col(),
            ],
            cells!(
                |o: &Value| count(&o["data"]) + count(&o["binaryData"]),
                created
            ),
        ),
        ("", "Secret") => (
            vec![
                name(),
                col("Type", "string", 0, "The type of the secret"),
                col("Data", "string", 0, "The number of data entries"),
                age_col(),
            ],
            cells!(
                |o: &Value| s(&o["type"]),
                |o: &Value| count(&o["data"]),
                created
            ),
        ),
        ("", "ServiceAccount") => (
            vec![
                name(),
                col(
                    "Secrets",
                    "string",
                    0,
                    "Secrets is the list of secrets allowed to be used by pods running using this ServiceAccount.",
                ),
                age_col(),
            ],
            cells!(
                |o: &Value| o["secrets"].as_array().map_or(0, Vec::len),
                created
            ),
        ),
        ("", "PersistentVolumeClaim") => (
            vec![
                name(),
                col(
                    "Status",
                    "string",
                    0,
                    "phase represents the current phase of PersistentVolumeClaim.",
                ),
                col(
                    "Volume",
                    "string",
                    0,
                    "volumeName is the binding reference to the PersistentVolume backing this claim.",
                ),
                col(
                    "Capacity",
                    "string",
                    0,
                    "capacity represents the actual resources of the underlying volume.",
                ),
                col(
                    "Access Modes",
                    "string",
                    0,
                    "accessModes contains the actual access modes the volume backing the PVC has.",
                ),
                col("StorageClass", "string", 0, "StorageClass of the pvc"),
                col(
                    "VolumeAttributesClass",
                    "string",
                    0,
                    "VolumeAttributesClass of the pvc",
                ),
                age_col(),
                col(
                    "VolumeMode",
                    "string",
                    1,
                    "volumeMode defines what type of volume is required by the claim.",
                ),
            ],
            cells!(
                |o: &Value| if o["metadata"]["deletionTimestamp"].is_string() {
                    "Terminating".to_owned()
                } else {
                    s(&o["status"]["phase"])
                },
                |o: &Value| s(&o["spec"]["volumeName"]),
                // Capacity and access modes only once the claim names its volume.
                |o: &Value| if bound_claim(o) {
                    s(&o["status"]["capacity"]["storage"])
                } else {
                    String::new()
                },
                |o: &Value| if bound_claim(o) {
                    access_modes(&o["status"]["accessModes"])
                } else {
                    String::new()
                },
                |o: &Value| storage_class_of(o),
                |o: &Value| or_unset(&o["spec"]["volumeAttributesClassName"]),
                created,
                |o: &Value| or_unset(&o["spec"]["volumeMode"]),
            ),
        ),
        ("", "PersistentVolume") => (
            vec![
                name(),
                col(
                    "Capacity",
                    "string",
                    0,
                    "capacity is the description of the persistent volume's resources and capacity.",
                ),
                col(
                    "Access Modes",
                    "string",
                    0,
                    "accessModes contains all ways the volume can be mounted.",
                ),
                col(
                    "Reclaim Policy",
                    "string",
                    0,
                    "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
                ),
                col(
                    "Status",
                    "string",
                    0,
                    "phase indicates if a volume is available, bound to a claim, or released by a claim.",
                ),
                col(
                    "Claim",
                    "string",
                    0,
                    "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
                ),
                col("StorageClass", "string", 0, "StorageClass of the pv"),
                col(
                    "VolumeAttributesClass",
                    "string",
                    0,
                    "VolumeAttributesClass of the pv",
                ),
                col(
                    "Reason",
                    "string",
                    0,
                    "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
                ),
                age_col(),
                col(
                    "VolumeMode",
                    "string",
                    1,
                    "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
                ),
            ],
            cells!(
                |o: &Value| s(&o["spec"]["capacity"]["storage"]),
                |o: &Value| access_modes(&o["spec"]["accessModes"]),
                |o: &Value| s(&o["spec"]["persistentVolumeReclaimPolicy"]),
                |o: &Value| if o["metadata"]["deletionTimestamp"].is_string() {
                    "Terminating".to_owned()
                } else {
                    s(&o["status"]["phase"])
                },
                |o: &Value| match &o["spec"]["claimRef"] {
                    Value::Object(r) => format!(
                        "{}/{}",
                        s(r.get("namespace").unwrap_or(&Value::Null)),
                        s(r.get("name").unwrap_or(&Value::Null))
                    ),
                    _ => String::new(),
                },
                |o: &Value| storage_class_of(o),
                |o: &Value| or_unset(&o["spec"]["volumeAttributesClassName"]),
                |o: &Value| s(&o["status"]["reason"]),
                created,
                |o: &Value| or_unset(&o["spec"]["volumeMode"]),
            ),
        ),
        ("", "Event") => (
            vec![
                col("Last Seen", "string", 0, "The last time the event was seen"),
                col("Type", "string", 0, "The type of the event"),
                col("Reason", "string", 0, "The reason of the event"),
                col("Object", "string", 0, "The object the event is about"),
                col("Subobject", "string", 1, "The subobject the event is about"),
                col("Source", "string", 1, "The source of the event"),
                col("Message", "string", 0, "The message of the event"),
                col(
                    "First Seen",
                    "string",
                    1,
                    "The first time the event was seen",
                ),
                col(
                    "Count",
                    "string",
                    1,
                    "The number of times the event was seen",
                ),
                name(),
            ],
            |o: &Value| {
                let last = if o["lastTimestamp"].is_string() {
                    &o["lastTimestamp"]
                } else if o["eventTime"].is_string() {
                    &o["eventTime"]
                } else {
                    &o["metadata"]["creationTimestamp"]
                };
                let first = if o["firstTimestamp"].is_string() {
                    &o["firstTimestamp"]
                } else {
                    last
                };
                let involved = &o["involvedObject"];
                vec![
                    json!(age(last)),
                    json!(s(&o["type"])),
                    json!(s(&o["reason"])),
                    json!(format!(
                        "{}/{}",
                        s(&involved["kind"]).to_lowercase(),
                        s(&involved["name"])
                    )),
                    json!(s(&involved["fieldPath"])),
                    json!(source_of(o)),
                    json!(s(&o["message"])),
                    json!(age(first)),
                    json!(o["count"].as_i64().unwrap_or(1)),
                    json!(s(&o["metadata"]["name"])),
                ]
            },
        ),
        ("apps", "Deployment") => (
            vec![
                name(),
                col("Ready", "string", 0, "Number of the pod with ready state"),
                col(
                    "Up-to-date",
                    "string",
                    0,
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                ),
                col(
                    "Available",
                    "string",
                    0,
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                ),
                age_col(),
                containers_col(),
                images_col(),
                col(
                    "Selector",
                    "string",
                    1,
                    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
                ),
            ],
            cells!(
                |o: &Value| format!(
                    "{}/{}",
                    int(&o["status"]["readyReplicas"]),
                    int(&o["spec"]["replicas"])
                ),
                |o: &Value| int(&o["status"]["updatedReplicas"]),
                |o: &Value| int(&o["status"]["availableReplicas"]),
                created,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).0,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).1,
                |o: &Value| labels_selector(&o["spec"]["selector"]),
            ),
        ),
        ("apps", "ReplicaSet") => (
            vec![
                name(),
                col(
                    "Desired",
                    "integer",
                    0,
                    "Replicas is the number of desired replicas.",
                ),
                col(
                    "Current",
                    "integer",
                    0,
                    "Replicas is the most recently observed number of replicas.",
                ),
                col(
                    "Ready",
                    "integer",
                    0,
                    "The number of ready replicas for this replica set.",
                ),
                age_col(),
                containers_col(),
                images_col(),
                col(
                    "Selector",
                    "string",
                    1,
                    "Selector is a label query over pods that should match the replica count.",
                ),
            ],
            cells!(
                |o: &Value| int(&o["spec"]["replicas"]),
                |o: &Value| int(&o["status"]["replicas"]),
                |o: &Value| int(&o["status"]["readyReplicas"]),
                created,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).0,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).1,
                |o: &Value| labels_selector(&o["spec"]["selector"]),
            ),
        ),
        ("", "ReplicationController") => (
            vec![
                name(),
                col(
                    "Desired",
                    "integer",
                    0,
                    "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller",
                ),
                col(
                    "Current",
                    "integer",
                    0,
                    "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller",
                ),
                col(
                    "Ready",
                    "integer",
                    0,
                    "The number of ready replicas for this replication controller.",
                ),
                age_col(),
                containers_col(),
                images_col(),
                col(
                    "Selector",
                    "string",
                    1,
                    "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
                ),
            ],
            cells!(
                |o: &Value| int(&o["spec"]["replicas"]),
                |o: &Value| int(&o["status"]["replicas"]),
                |o: &Value| int(&o["status"]["readyReplicas"]),
                created,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).0,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).1,
                |o: &Value| map_selector(&o["spec"]["selector"]),
            ),
        ),
        ("", "PodTemplate") => (
            vec![
                name(),
                col(
                    "Containers",
                    "string",
                    0,
                    "Names of each container in the template.",
                ),
                col(
                    "Images",
                    "string",
                    0,
                    "Images referenced by each container in the template.",
                ),
                col(
                    "Pod Labels",
                    "string",
                    0,
                    "The labels for the pod template.",
                ),
            ],
            cells!(
                |o: &Value| containers_and_images(&o["template"]["spec"]).0,
                |o: &Value| containers_and_images(&o["template"]["spec"]).1,
                |o: &Value| map_selector(&o["template"]["metadata"]["labels"]),
            ),
        ),
        ("apps", "DaemonSet") => (
            vec![
                name(),
                col(
                    "Desired",
                    "integer",
                    0,
                    "The total number of nodes that should be running the daemon pod.",
                ),
                col(
                    "Current",
                    "integer",
                    0,
                    "The number of nodes that are running at least 1 daemon pod.",
                ),
                col(
                    "Ready",
                    "integer",
                    0,
                    "The number of nodes that should be running the daemon pod and have one or more running and ready.",
                ),
                col(
                    "Up-to-date",
                    "integer",
                    0,
                    "The total number of nodes that are running updated daemon pod",
                ),
                col(
                    "Available",
                    "integer",
                    0,
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
                ),
                col(
                    "Node Selector",
                    "string",
                    0,
                    "NodeSelector is a selector which must be true for the pod to fit on a node.",
                ),
                age_col(),
                containers_col(),
                images_col(),
                col(
                    "Selector",
                    "string",
                    1,
                    "A label query over pods that are managed by the daemon set.",
                ),
            ],
            cells!(
                |o: &Value| int(&o["status"]["desiredNumberScheduled"]),
                |o: &Value| int(&o["status"]["currentNumberScheduled"]),
                |o: &Value| int(&o["status"]["numberReady"]),
                |o: &Value| int(&o["status"]["updatedNumberScheduled"]),
                |o: &Value| int(&o["status"]["numberAvailable"]),
                |o: &Value| map_selector(&o["spec"]["template"]["spec"]["nodeSelector"]),
                created,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).0,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).1,
                |o: &Value| labels_selector(&o["spec"]["selector"]),
            ),
        ),
        ("apps", "StatefulSet") => (
            vec![
                name(),
                col("Ready", "string", 0, "Number of the pod with ready state"),
                age_col(),
                containers_col(),
                images_col(),
            ],
            cells!(
                |o: &Value| format!(
                    "{}/{}",
                    int(&o["status"]["readyReplicas"]),
                    int(&o["spec"]["replicas"])
                ),
                created,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).0,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).1,
            ),
        ),
        ("apps", "ControllerRevision") => (
            vec![
                name(),
                col("Controller", "string", 0, "Controller of the object"),
                col(
                    "Revision",
                    "string",
                    0,
                    "Revision indicates the revision of the state represented by Data.",
                ),
                age_col(),
            ],
            cells!(
                |o: &Value| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
                        .map(|r| {
                            let group = s(&r["apiVersion"])
                                .split('/')
                                .next()
                                .map(str::to_owned)
                                .unwrap_or_default();
                            let kind = s(&r["kind"]).to_lowercase();
                            if s(&r["apiVersion"]).contains('/') {
                                format!("{kind}.{group}/{}", s(&r["name"]))
                            } else {
                                format!("{kind}/{}", s(&r["name"]))
                            }
                        })
                        .unwrap_or_else(|| "<none>".into())
                },
                |o: &Value| int(&o["revision"]),
                created
            ),
        ),
        ("batch", "Job") => (
            vec![
                name(),
                col("Status", "string", 0, "Status of the job."),
                col(
                    "Completions",
                    "string",
                    0,
                    "The completion status of the job.",
                ),
                col(
                    "Duration",
                    "string",
                    0,
                    "Time required to complete the job.",
                ),
                age_col(),
                containers_col(),
                images_col(),
                col(
                    "Selector",
                    "string",
                    1,
                    "Selector is a label query over pods that should match the pod count.",
                ),
            ],
            cells!(
                |o: &Value| {
                    let conditions = o["status"]["conditions"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let has = |t: &str| {
                        conditions
                            .iter()
                            .any(|c| c["type"] == t && c["status"] == "True")
                    };
                    if has("Complete") {
                        "Complete"
                    } else if has("Failed") {
                        "Failed"
                    } else if has("Suspended") {
                        "Suspended"
                    } else if o["metadata"]["deletionTimestamp"].is_string() {
                        "Terminating"
                    } else {
                        "Running"
                    }
                    .to_owned()
                },
                |o: &Value| match o["spec"]["completions"].as_i64() {
                    Some(c) => format!("{}/{c}", int(&o["status"]["succeeded"])),
                    None => format!(
                        "{}/1 of {}",
                        int(&o["status"]["succeeded"]),
                        o["spec"]["parallelism"].as_i64().unwrap_or(1)
                    ),
                },
                |o: &Value| {
                    let start = o["status"]["startTime"]
                        .as_str()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
                    let end = o["status"]["completionTime"]
                        .as_str()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
                    match (start, end) {
                        (Some(a), Some(b)) => human_duration(b.as_second() - a.as_second()),
                        (Some(a), None) => {
                            human_duration(jiff::Timestamp::now().as_second() - a.as_second())
                        }
                        _ => String::new(),
                    }
                },
                created,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).0,
                |o: &Value| containers_and_images(&o["spec"]["template"]["spec"]).1,
                |o: &Value| labels_selector(&o["spec"]["selector"]),
            ),
        ),
        ("batch", "CronJob") => (
            vec![
                name(),
                col("Schedule", "string", 0, "The schedule in Cron format"),
                col(
                    "Timezone",
                    "string",
                    0,
                    "The time zone name for the given schedule",
                ),
                col(
                    "Suspend",
                    "boolean",
                    0,
                    "This flag tells the controller to suspend subsequent executions.",
                ),
                col(
                    "Active",
                    "integer",
                    0,
                    "A list of pointers to currently running jobs.",
                ),
                col(
                    "Last Schedule",
                    "date",
                    0,
                    "Information when was the last time the job was successfully scheduled.",
                ),
                age_col(),
                containers_col(),
                images_col(),
                col(
                    "Selector",
                    "string",
                    1,
                    "Selector is a label query over pods that should match the pod count.",
                ),
            ],
            cells!(
                |o: &Value| s(&o["spec"]["schedule"]),
                |o: &Value| or_none(s(&o["spec"]["timeZone"])),
                |o: &Value| o["spec"]["suspend"]
                    .as_bool()
                    .unwrap_or(false)
                    .to_string()
                    .replace("true", "True")
                    .replace("false", "False"),
                |o: &Value| o["status"]["active"].as_array().map_or(0, Vec::len),
                |o: &Value| if o["status"]["lastScheduleTime"].is_string() {
                    age(&o["status"]["lastScheduleTime"])
                } else {
                    "<none>".into()
                },
                created,
                |o: &Value| containers_and_images(
                    &o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                )
                .0,
                |o: &Value| containers_and_images(
                    &o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                )
                .1,
                |o: &Value| labels_selector(&o["spec"]["jobTemplate"]["spec"]["selector"]),
            ),
        ),
        ("policy", "PodDisruptionBudget") => (
            vec![
                name(),
                col(
                    "Min Available",
                    "string",
                    0,
                    "The minimum number of pods that must be available.",
                ),
                col(
                    "Max Unavailable",
                    "string",
                    0,
                    "The maximum number of pods that may be unavailable.",
                ),
                col(
                    "Allowed Disruptions",
                    "integer",
                    0,
                    "Calculated number of pods that may be disrupted at this time.",
                ),
                age_col(),
            ],
            cells!(
                |o: &Value| int_or_string(&o["spec"]["minAvailable"]),
                |o: &Value| int_or_string(&o["spec"]["maxUnavailable"]),
                |o: &Value| int(&o["status"]["disruptionsAllowed"]),
                created
            ),
        ),
        ("autoscaling", "HorizontalPodAutoscaler") => (
            vec![
                name(),
                col(
                    "Reference",
                    "string",
                    0,
                    "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.",
                ),
                col(
                    "Targets",
                    "string",
                    0,
                    "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).",
                ),
                col(
                    "MinPods",
                    "string",
                    0,
                    "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
                ),
                col(
                    "MaxPods",
                    "integer",
                    0,
                    "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
                ),
                col(
                    "Replicas",
                    "integer",
                    0,
                    "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
                ),
                age_col(),
            ],
            cells!(
                |o: &Value| {
                    let target = &o["spec"]["scaleTargetRef"];
                    format!("{}/{}", s(&target["kind"]), s(&target["name"]))
                },
                |o: &Value| hpa_targets(&as_hpa_v2(o)),
                |o: &Value| match o["spec"]["minReplicas"].as_i64() {
                    Some(n) => n.to_string(),
                    None => "<unset>".into(),
                },
                |o: &Value| int(&o["spec"]["maxReplicas"]),
                |o: &Value| int(&o["status"]["currentReplicas"]),
                created
            ),
        ),
        ("coordination.k8s.io", "Lease") => (
            vec![
                name(),
                col("Holder", "string", 0, "The holder of the lease"),
                age_col(),
            ],
            cells!(|o: &Value| s(&o["spec"]["holderIdentity"]), created),
        ),
        ("networking.k8s.io", "Ingress") => (
            vec![
                name(),
                col(
                    "Class",
                    "string",
                    0,
                    "The name of the IngressClass resource that should be used for the Ingress.",
                ),
                col(
                    "Hosts",
                    "string",
                    0,
                    "Hosts that incoming requests are matched against before the ingress rule",
                ),
                col(
                    "Address",
                    "string",
                    0,
                    "Address is a list containing ingress points for the load-balancer",
                ),
                col(
                    "Ports",
                    "string",
                    0,
                    "Ports of TLS configurations that open",
                ),
                age_col(),
            ],
            cells!(
                |o: &Value| or_none(s(&o["spec"]["ingressClassName"])),
                |o: &Value| ingress_hosts(&o["spec"]["rules"]),
                |o: &Value| ingress_address(&o["status"]["loadBalancer"]),
                |o: &Value| if o["spec"]["tls"].as_array().is_some_and(|t| !t.is_empty()) {
                    "80, 443"
                } else {
                    "80"
                },
                created,
            ),
        ),
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration",
        ) => (
            vec![
                name(),
                col(
                    "Webhooks",
                    "integer",
                    0,
                    "Webhooks indicates the number of webhooks registered in this configuration",
                ),
                age_col(),
            ],
            |o: &Value| {
                vec![
                    json!(s(&o["metadata"]["name"])),
                    json!(o["webhooks"].as_array().map_or(0, Vec::len)),
                    json!(created(o)),
                ]
            },
        ),
        ("networking.k8s.io", "IngressClass") => (
            vec![
                name(),
                col(
                    "Controller",
                    "string",
                    0,
                    "Controller that is responsible for handling this class",
                ),
                col(
                    "Parameters",
                    "string",
                    0,
                    "A reference to a resource with additional parameters",
                ),
                age_col(),
            ],
            cells!(
                |o: &Value| s(&o["spec"]["controller"]),
                |o: &Value| ingress_class_parameters(&o["spec"]["parameters"]),
                created,
            ),
        ),
        ("discovery.k8s.io", "EndpointSlice") => (
            vec![
                name(),
                col(
                    "AddressType",
                    "string",
                    0,
                    "The type of addresses in this slice",
                ),
                col("Ports", "string", 0, "The ports of the endpoints"),
                col("Endpoints", "string", 0, "The addresses of the endpoints"),
                age_col(),
            ],
            cells!(
                |o: &Value| s(&o["addressType"]),
                |o: &Value| at_most_three(
                    o["ports"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|p| match (&p["port"], &p["name"]) {
                            (Value::Number(n), _) => n.to_string(),
                            (_, Value::String(name)) => name.clone(),
                            _ => "*".into(),
                        })
                        .collect(),
                    "<unset>"
                ),
                |o: &Value| at_most_three(
                    o["endpoints"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                        .map(|a| s(&a))
                        .collect(),
                    "<unset>"
                ),
                created,
            ),
        ),
        ("certificates.k8s.io", "CertificateSigningRequest") => (
            vec![
                name(),
                age_col(),
                col(
                    "SignerName",
                    "string",
                    0,
                    "signerName indicates the requested signer, and is a qualified name.",
                ),
                col(
                    "Requestor",
                    "string",
                    0,
                    "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block. When serialized as JSON or YAML, the data is additionally base64-encoded.",
                ),
                col(
                    "RequestedDuration",
                    "string",
                    0,
                    "expirationSeconds is the requested duration of validity of the issued certificate.",
                ),
                col(
                    "Condition",
                    "string",
                    0,
                    "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\".",
                ),
            ],
            cells!(
                created,
                |o: &Value| or_none(s(&o["spec"]["signerName"])),
                |o: &Value| s(&o["spec"]["username"]),
                |o: &Value| match o["spec"]["expirationSeconds"].as_i64() {
                    Some(seconds) => human_duration(seconds),
                    None => "<none>".into(),
                },
                |o: &Value| {
                    let types: Vec<String> = o["status"]["conditions"]
                        .as_array()
                        .map(|a| a.iter().map(|c| s(&c["type"])).collect())
                        .unwrap_or_default();
                    let issued = o["status"]["certificate"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty());
                    crate::apimachinery::certificates::Standing::column(&types, issued)
                },
            ),
        ),
        ("", "ResourceQuota") => (
            vec![
                name(),
                age_col(),
                col(
                    "Request",
                    "string",
                    0,
                    "Request represents a minimum amount of cpu/memory that a container may consume.",
                ),
                col(
                    "Limit",
                    "string",
                    0,
                    "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
                ),
            ],
            cells!(created, |o: &Value| quota_column(o, false), |o: &Value| {
                quota_column(o, true)
            }),
        ),
        ("storage.k8s.io", "StorageClass") => (
            vec![
                name(),
                col(
                    "Provisioner",
                    "string",
                    0,
                    "provisioner indicates the type of the provisioner.",
                ),
                col(
                    "ReclaimPolicy",
                    "string",
                    0,
                    "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.",
                ),
                col(
                    "VolumeBindingMode",
                    "string",
                    0,
                    "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.",
                ),
                col(
                    "AllowVolumeExpansion",
                    "string",
                    0,
                    "allowVolumeExpansion shows whether the storage class allow volume expand.",
                ),
                age_col(),
            ],
            |o: &Value| {
                // `(default)` after the default class's name, as kubectl shows it.
                let mut name = s(&o["metadata"]["name"]);
                if is_default_storage_class(o) {
                    name.push_str(" (default)");
                }
                let or = |v: &Value, default: &str| match v.as_str() {
                    Some(text) => text.to_owned(),
                    None => default.to_owned(),
                };
                vec![
                    json!(name),
                    json!(s(&o["provisioner"])),
                    json!(or(&o["reclaimPolicy"], "Delete")),
                    json!(or(&o["volumeBindingMode"], "Immediate")),
                    json!(o["allowVolumeExpansion"].as_bool().unwrap_or(false)),
                    json!(created(o)),
                ]
            },
        ),
        _ => (
            vec![name(), col("Created At", "date", 0, age_desc)],
            cells!(|o: &Value| s(&o["metadata"]["creationTimestamp"])),
        ),
    }
}

/// One row of a Table: its cells, and the object's `metadata` (moved in, not copied: `json!`
/// would serialize it again) as a `PartialObjectMetadata`.
pub(crate) fn table_row(cells: Vec<Value>, metadata: Value) -> serde_json::Map<String, Value> {
    let mut object = serde_json::Map::new();
    object.insert("kind".into(), Value::from("PartialObjectMetadata"));
    object.insert("apiVersion".into(), Value::from("meta.k8s.io/v1"));
    object.insert("metadata".into(), metadata);
    let mut row = serde_json::Map::new();
    row.insert("cells".into(), Value::Array(cells));
    row.insert("object".into(), Value::Object(object));
    row
}

/// The Table for `objects` of `resource`. Each row carries the object's metadata as a
/// `PartialObjectMetadata`, which is where `kubectl get -A` finds the NAMESPACE column.
pub(crate) fn table(resource: &Resource, objects: Vec<Value>, list_metadata: Value) -> Value {
    let (columns, cells) = printer(resource.kind, resource.group);
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|mut o| {
            let cells = cells(&o);
            let conditions = row_conditions(resource, &o);
            let mut row = table_row(cells, o["metadata"].take());
            if let Some(conditions) = conditions {
                row.insert("conditions".into(), conditions);
            }
            Value::Object(row)
        })
        .collect();
    table_of(list_metadata, columns, rows)
}

/// A `meta.k8s.io/v1` Table of `rows` (moved in: `json!` would serialize them again).
pub(crate) fn table_of(list_metadata: Value, columns: Vec<Value>, rows: Vec<Value>) -> Value {
    let mut table = serde_json::Map::new();
    table.insert("kind".into(), Value::from("Table"));
    table.insert("apiVersion".into(), Value::from("meta.k8s.io/v1"));
    table.insert("metadata".into(), list_metadata);
    table.insert("columnDefinitions".into(), Value::Array(columns));
    table.insert("rows".into(), Value::Array(rows));
    Value::Object(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources;

    #[test]
    fn pod_rows_are_printed_by_kubectls_pod_printer() {
        let pods = resources::find("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}], "nodeName": "node-1"},
            "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}], "containerStatuses": [
                {"name": "a", "image": "i", "imageID": "", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "image": "i", "imageID": "", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            ]},
        });
        let done = json!({
            "metadata": {"name": "job-1", "namespace": "default"},
            "spec": {"containers": [{"name": "a", "image": "i"}]},
            "status": {"phase": "Succeeded"},
        });
        let t = table(pods, vec![pod, done], json!({"resourceVersion": "5"}));
        let cells: Vec<&str> = t["rows"][0]["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(cells[..4], ["web", "1/2", "CrashLoopBackOff", "3"]);
        assert_eq!(cells[5..], ["10.244.1.5", "node-1", "<none>", "<none>"]);
        assert_eq!(
            t["columnDefinitions"].as_array().unwrap().len(),
            cells.len()
        );
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "default");
        assert_eq!(t["rows"][0].get("conditions"), None);
        // A finished pod's row says so, as upstream's `podSuccessConditions`.
        assert_eq!(
            t["rows"][1]["conditions"],
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                    "message": "The pod has completed successfully."}])
        );
        assert_eq!(t["rows"][1]["cells"][4], "<unknown>");
    }

    #[test]
    fn every_kind_has_as_many_cells_as_columns() {
        for r in resources::RESOURCES {
            let (columns, cells) = printer(r.kind, r.group);
            assert_eq!(
                columns.len(),
                cells(&json!({"metadata": {"name": "x"}})).len(),
                "{}",
                r.plural
            );
        }
    }

    #[test]
    fn certificate_signing_request_columns_are_kubectls() {
        let csrs =
            resources::find("certificates.k8s.io", "v1", "certificatesigningrequests").unwrap();
        let cells = |o: Value| table(csrs, vec![o], json!({}))["rows"][0]["cells"].clone();
        let names: Vec<Value> = table(csrs, vec![], json!({}))["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Age",
                "SignerName",
                "Requestor",
                "RequestedDuration",
                "Condition"
            ]
        );
        let pending = json!({"metadata": {"name": "carol"}, "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "kubernetes-admin", "expirationSeconds": 86400}});
        let row = cells(pending);
        assert_eq!(row[2], "kubernetes.io/kube-apiserver-client");
        assert_eq!(row[3], "kubernetes-admin");
        assert_eq!(row[4], "24h");
        assert_eq!(row[5], "Pending");
        let issued = json!({"metadata": {"name": "carol"}, "spec": {"signerName": "x.io/y"}, "status": {"certificate": "eA==", "conditions": [{"type": "Approved", "status": "True"}]}});
        let row = cells(issued);
        assert_eq!(row[4], "<none>");
        assert_eq!(row[5], "Approved,Issued");
    }

    #[test]
    fn storage_columns_are_kubectls() {
        let find = |g: &str, p: &str| resources::find(g, "v1", p).unwrap();
        let cells = |r, o: Value| table(r, vec![o], json!({}))["rows"][0]["cells"].clone();
        let pending = json!({"metadata": {"name": "data"}, "spec": {"volumeMode": "Filesystem", "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}});
        assert_eq!(
            cells(find("", "persistentvolumeclaims"), pending),
            json!([
                "data",
                "Pending",
                "",
                "",
                "",
                "standard",
                "<unset>",
                "<unknown>",
                "Filesystem"
            ])
        );
        let bound = json!({"metadata": {"name": "data", "deletionTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"volumeName": "pvc-1", "storageClassName": "standard"}, "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"]}});
        assert_eq!(
            cells(find("", "persistentvolumeclaims"), bound),
            json!([
                "data",
                "Terminating",
                "pvc-1",
                "2Gi",
                "RWO,RWX",
                "standard",
                "<unset>",
                "<unknown>",
                "<unset>"
            ])
        );
        let pv = json!({"metadata": {"name": "pvc-1"}, "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete", "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "standard", "volumeMode": "Filesystem"}, "status": {"phase": "Bound"}});
        assert_eq!(
            cells(find("", "persistentvolumes"), pv),
            json!([
                "pvc-1",
                "2Gi",
                "RWO",
                "Delete",
                "Bound",
                "default/data",
                "standard",
                "<unset>",
                "",
                "<unknown>",
                "Filesystem"
            ])
        );
        let class = json!({"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            cells(find("storage.k8s.io", "storageclasses"), class),
            json!([
                "standard (default)",
                "rancher.io/local-path",
                "Delete",
                "WaitForFirstConsumer",
                false,
                "<unknown>"
            ])
        );
    }

    #[test]
    fn ingress_columns_are_kubectls() {
        assert_eq!(ingress_hosts(&json!(null)), "*");
        assert_eq!(ingress_hosts(&json!([{"http": {}}])), "*");
        assert_eq!(
            ingress_hosts(&json!([{"host": "a"}, {"host": "b"}, {"host": "c"}, {"host": "d"}, {}])),
            "a,b,c + 2 more..."
        );
        assert_eq!(
            ingress_address(&json!({"ingress": [{"ip": "127.0.0.1"}, {"hostname": "lb"}]})),
            "127.0.0.1,lb"
        );
        assert_eq!(
            ingress_address(&json!({"ingress": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]})),
            "10.0.0.1,10.0..."
        );
        assert_eq!(ingress_class_parameters(&json!(null)), "<none>");
        assert_eq!(
            ingress_class_parameters(
                &json!({"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"})
            ),
            "IngressParameters.k8s.example.com/p"
        );
        let ingresses = resources::find("networking.k8s.io", "v1", "ingresses").unwrap();
        let t = table(
            ingresses,
            vec![
                json!({"metadata": {"name": "web"}, "spec": {"tls": [{}], "rules": [{"host": "foo.com"}]}}),
            ],
            json!({}),
        );
        assert_eq!(t["rows"][0]["cells"][1], "<none>");
        assert_eq!(t["rows"][0]["cells"][2], "foo.com");
        assert_eq!(t["rows"][0]["cells"][4], "80, 443");
    }
}
