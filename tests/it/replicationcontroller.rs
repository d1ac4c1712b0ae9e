//! ReplicationControllers as users and client suites see them: the real `kubectl` (create,
//! `get rc` with kubectl's columns, `scale rc`, cascading delete, a refused RC in upstream's
//! words) against `orrery up` on the simulated runtime, the RC's story on the flow, the
//! official Python client's e2e `test_replication_controller_apis` (and its other core-kind
//! tests that need no image), and PodTemplates, which are only stored.

use crate::common;

use common::{Cluster, rows};
use serde_json::Value;

const RC: &str = r#"
apiVersion: v1
kind: ReplicationController
metadata:
  name: web
spec:
  replicas: 3
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: hello
        image: orrery/hello:1
"#;

/// The RC's pods that are not terminating, as JSON.
fn live_pods(c: &Cluster) -> Vec<Value> {
    let out = c.ok(&["get", "pods", "-l", "app=web", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .cloned()
        .collect()
}

/// The messages of the RC's Events with `reason`, sorted, and the components that wrote them.
fn events(c: &Cluster, reason: &str) -> (Vec<String>, Vec<String>) {
    let out = c.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!(
            "involvedObject.kind=ReplicationController,involvedObject.name=web,reason={reason}"
        ),
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let items = list["items"].as_array().unwrap();
    let mut messages: Vec<String> = items
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    messages.sort();
    let mut sources: Vec<String> = items
        .iter()
        .map(|e| e["source"]["component"].as_str().unwrap().to_owned())
        .collect();
    sources.dedup();
    (messages, sources)
}

#[test]
fn a_replication_controller_keeps_scales_and_cascades_its_pods() {
    let c = Cluster::with_nodes(1);
    let created = c.ok_with(&["create", "-f", "-"], Some(RC));
    assert_eq!(created.trim(), "replicationcontroller/web created");
    // Defaulted as upstream: the selector and the RC's labels from the template's.
    let rc: Value = serde_json::from_str(&c.ok(&["get", "rc", "web", "-o", "json"])).unwrap();
    assert_eq!(rc["spec"]["selector"], serde_json::json!({"app": "web"}));
    assert_eq!(rc["metadata"]["labels"], serde_json::json!({"app": "web"}));
    assert_eq!(rc["metadata"]["generation"], 1);
    let uid = rc["metadata"]["uid"].as_str().unwrap().to_owned();

    // Three ready pods, each owned by the RC as kube-controller-manager owns them.
    c.eventually(
        &["get", "rc", "web", "-o", "jsonpath={.status.readyReplicas}"],
        60,
        |ready| ready == "3",
    );
    let pods = live_pods(&c);
    assert_eq!(pods.len(), 3, "{pods:?}");
    for pod in &pods {
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["apiVersion"], "v1");
        assert_eq!(owner["kind"], "ReplicationController");
        assert_eq!(owner["name"], "web");
        assert_eq!(owner["uid"], uid.as_str());
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["blockOwnerDeletion"], true);
        assert!(
            pod["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("web-")
        );
    }
    let status = c.eventually(&["get", "rc", "web", "-o", "jsonpath={.status}"], 30, |s| {
        s.contains("\"availableReplicas\":3")
    });
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status,
        serde_json::json!({"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3,
            "availableReplicas": 3, "observedGeneration": 1})
    );

    // kubectl's columns, the server's table.
    let table = rows(&c.ok(&["get", "rc"]));
    assert_eq!(table[0], ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(table[1][..4], ["web", "3", "3", "3"]);
    let wide = rows(&c.ok(&["get", "rc", "-o", "wide"]));
    assert_eq!(
        wide[0],
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(wide[1][5..], ["hello", "orrery/hello:1", "app=web"]);

    // `kubectl describe rc` reads the RC, its pods and its Events.
    let described = c.ok(&["describe", "rc", "web"]);
    let field = |name: &str| {
        described
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {described}"))
            .to_owned()
    };
    assert_eq!(field("Replicas:"), "3 current / 3 desired");
    assert_eq!(
        field("Pods Status:"),
        "3 Running / 0 Waiting / 0 Succeeded / 0 Failed"
    );
    assert_eq!(field("Selector:"), "app=web");
    assert!(
        described.contains("replication-controller  Created pod: web-"),
        "{described}"
    );

    // Events in upstream's words, from `replication-controller`.
    let (created, sources) = events(&c, "SuccessfulCreate");
    assert_eq!(created.len(), 3, "{created:?}");
    assert!(created.iter().all(|m| m.starts_with("Created pod: web-")));
    assert_eq!(sources, ["replication-controller"]);
    // The RC's story on the flow: the controller's decision, gated like the ReplicaSet's.
    let flow = c.ok(&["get", "--raw", "/orrery/v1/flow?since=0&follow=false"]);
    let scale_up: Vec<Value> = flow
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["from"] == "controller/replicationcontroller" && e["verb"] == "SCALE UP")
        .collect();
    assert!(!scale_up.is_empty(), "no SCALE UP hop");
    assert_eq!(scale_up[0]["kind"], "ReplicationController");
    assert_eq!(scale_up[0]["name"], "web");
    assert_eq!(scale_up[0]["detail"], "0 of 3 pods exist: creating 3");

    // `kubectl scale rc` goes through the scale subresource; the extras go.
    let scaled = c.ok(&["scale", "rc", "web", "--replicas=1"]);
    assert_eq!(scaled.trim(), "replicationcontroller/web scaled");
    c.eventually(
        &[
            "get",
            "rc",
            "web",
            "-o",
            "jsonpath={.status.replicas} {.status.observedGeneration}",
        ],
        30,
        |s| s == "1 2",
    );
    assert_eq!(live_pods(&c).len(), 1);
    let (deleted, _) = events(&c, "SuccessfulDelete");
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(deleted.iter().all(|m| m.starts_with("Deleted pod: web-")));
    let scale: Value = serde_json::from_str(&c.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/replicationcontrollers/web/scale",
    ]))
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(
        scale["status"],
        serde_json::json!({"replicas": 1, "selector": "app=web"})
    );

    // Deleting it deletes its pods (kubectl asks for background propagation).
    let gone = c.ok(&["delete", "rc", "web"]);
    assert_eq!(gone.trim(), "replicationcontroller \"web\" deleted");
    c.eventually(&["get", "pods", "-l", "app=web", "-o", "name"], 30, |out| {
        out.trim().is_empty()
    });
}

#[test]
fn a_bad_replication_controller_is_refused_and_pod_templates_are_stored() {
    let c = Cluster::start();
    let bad = r#"
apiVersion: v1
kind: ReplicationController
metadata:
  name: bad
spec:
  selector: {app: web}
  template:
    metadata: {labels: {app: other}}
    spec:
      containers: [{name: c, image: orrery/hello:1}]
"#;
    let refused = c.fails(&["create", "-f", "-"], Some(bad));
    assert_eq!(
        refused.trim(),
        r#"The ReplicationController "bad" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`"#
    );
    let no_template = "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: bare}\nspec: {replicas: -1}\n";
    let refused = c.fails(&["create", "-f", "-"], Some(no_template));
    assert_eq!(
        refused.trim(),
        r#"The ReplicationController "bare" is invalid: 
* spec.selector: Required value
* spec.replicas: Invalid value: -1: must be greater than or equal to 0
* spec.template: Required value"#
    );
    // Discovery: short name and category, as kubectl finds them.
    let resources = c.ok(&["api-resources", "--api-group="]);
    let rc_row = rows(&resources)
        .into_iter()
        .find(|r| r[0] == "replicationcontrollers")
        .unwrap();
    assert_eq!(
        rc_row,
        [
            "replicationcontrollers",
            "rc",
            "v1",
            "true",
            "ReplicationController"
        ]
    );
    assert!(
        c.ok(&["api-resources", "--categories=all", "--api-group="])
            .contains("replicationcontrollers")
    );

    // PodTemplates: stored with the pod spec's defaults, listed with kubectl's columns.
    let template = r#"
apiVersion: v1
kind: PodTemplate
metadata:
  name: nightly
template:
  metadata: {labels: {app: batch, tier: back}}
  spec:
    restartPolicy: Never
    containers: [{name: run, image: orrery/hello:1}, {name: side, image: busybox}]
"#;
    c.ok_with(&["create", "-f", "-"], Some(template));
    let table = rows(&c.ok(&["get", "podtemplates"]));
    assert_eq!(table[0], ["NAME", "CONTAINERS", "IMAGES", "POD LABELS"]);
    assert_eq!(
        table[1],
        [
            "nightly",
            "run,side",
            "orrery/hello:1,busybox",
            "app=batch,tier=back"
        ]
    );
    let stored: Value =
        serde_json::from_str(&c.ok(&["get", "podtemplate", "nightly", "-o", "json"])).unwrap();
    assert_eq!(stored["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(stored["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(stored["metadata"]["generation"], 1);
    // A change to the template is a new generation; a label is not.
    c.ok(&["label", "podtemplate", "nightly", "x=y"]);
    c.ok(&[
        "patch",
        "podtemplate",
        "nightly",
        "--type=merge",
        "-p",
        r#"{"template":{"spec":{"activeDeadlineSeconds":60}}}"#,
    ]);
    let generation = c.ok(&[
        "get",
        "podtemplate",
        "nightly",
        "-o",
        "jsonpath={.metadata.generation}",
    ]);
    assert_eq!(generation, "2");
    let empty = c.fails(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: PodTemplate\nmetadata: {name: empty}\n"),
    );
    assert_eq!(
        empty.trim(),
        r#"The PodTemplate "empty" is invalid: template.spec.containers: Required value"#
    );
}

/// The bodies of the official Python client's e2e tests for core kinds
/// (`kubernetes/e2e_test/test_client.py`) that need no registry image, as they are upstream:
/// replication controllers, services, config maps and nodes.
#[test]
fn the_python_clients_core_e2e_tests_pass() {
    let c = Cluster::with_nodes(1);
    let out = c.python(
        r#"
import uuid
def short_uuid():
    return str(uuid.uuid4())[-12:]

# test_replication_controller_apis
name = 'frontend-' + short_uuid()
rc_manifest = {
    'apiVersion': 'v1',
    'kind': 'ReplicationController',
    'metadata': {'labels': {'name': name},
                 'name': name},
    'spec': {'replicas': 2,
             'selector': {'name': name},
             'template': {'metadata': {
                 'labels': {'name': name}},
                 'spec': {'containers': [{
                     'image': 'nginx',
                     'name': 'nginx',
                     'ports': [{'containerPort': 80,
                                'protocol': 'TCP'}]}]}}}}
resp = api.create_namespaced_replication_controller(body=rc_manifest, namespace='default')
assert name == resp.metadata.name
assert 2 == resp.spec.replicas
resp = api.read_namespaced_replication_controller(name=name, namespace='default')
assert name == resp.metadata.name
assert 2 == resp.spec.replicas
resp = api.delete_namespaced_replication_controller(name=name, namespace='default', propagation_policy='Background')
print("rc ok")

# test_service_apis
name = 'frontend-' + short_uuid()
service_manifest = {'apiVersion': 'v1',
                    'kind': 'Service',
                    'metadata': {'labels': {'name': name},
                                 'name': name},
                    'spec': {'ports': [{'name': 'port',
                                        'port': 80,
                                        'protocol': 'TCP',
                                        'targetPort': 80}],
                             'selector': {'name': name}}}
resp = api.create_namespaced_service(body=service_manifest, namespace='default')
assert name == resp.metadata.name
assert resp.status
resp = api.read_namespaced_service(name=name, namespace='default')
assert name == resp.metadata.name
assert resp.status
service_manifest['spec']['ports'] = [{'name': 'new',
                                      'port': 8080,
                                      'protocol': 'TCP',
                                      'targetPort': 8080}]
resp = api.patch_namespaced_service(body=service_manifest, name=name, namespace='default')
assert 2 == len(resp.spec.ports)
assert resp.status
resp = api.delete_namespaced_service(name=name, body={}, namespace='default')
print("service ok")

# test_configmap_apis
name = 'test-configmap-' + short_uuid()
test_configmap = {
    "kind": "ConfigMap",
    "apiVersion": "v1",
    "metadata": {
        "name": name,
        "labels": {"e2e-tests": "true"},
    },
    "data": {
        "config.json": "{\"command\":\"/usr/bin/mysqld_safe\"}",
        "frontend.cnf": "[mysqld]\nbind-address = 10.0.0.3\nport = 3306\n"
    }
}
resp = api.create_namespaced_config_map(body=test_configmap, namespace='default')
assert name == resp.metadata.name
resp = api.read_namespaced_config_map(name=name, namespace='default')
assert name == resp.metadata.name
json_patch_name = "json_patch_name"
json_patch_body = [{"op": "replace", "path": "/data", "value": {"new_value": json_patch_name}}]
resp = api.patch_namespaced_config_map(name=name, namespace='default', body=json_patch_body)
assert json_patch_name == resp.data["new_value"]
assert None == resp.data.get("config.json")
assert None == resp.data.get("frontend.cnf")
merge_patch_name = "merge_patch_name"
merge_patch_body = {"data": {"new_value": merge_patch_name}}
resp = api.patch_namespaced_config_map(name=name, namespace='default', body=merge_patch_body)
assert merge_patch_name == resp.data["new_value"]
assert None == resp.data.get("config.json")
assert None == resp.data.get("frontend.cnf")
resp = api.delete_namespaced_config_map(name=name, body={}, namespace='default')
resp = api.list_namespaced_config_map('default', label_selector="e2e-tests=true")
assert [] == resp.items
print("configmap ok")

# test_node_apis
nodes = api.list_node().items
assert nodes
for item in nodes:
    node = api.read_node(name=item.metadata.name)
    assert len(node.metadata.labels) > 0
    assert isinstance(node.metadata.labels, dict)
print("node ok")
"#,
    );
    assert_eq!(out, "rc ok\nservice ok\nconfigmap ok\nnode ok\n");
}

/// Deleting an RC through the API without a propagation policy orphans its pods, as core/v1
/// RCs always have (kubectl and the test above ask for `Background`).
#[test]
fn an_rc_deleted_without_a_policy_orphans_its_pods() {
    let c = Cluster::start();
    c.ok_with(&["create", "-f", "-"], Some(RC));
    c.eventually(&["get", "pods", "-l", "app=web", "-o", "name"], 30, |out| {
        out.lines().count() == 3
    });
    let out = c.python(
        r#"
import json
resp = api.delete_namespaced_replication_controller(name="web", namespace="default", _preload_content=False)
print(json.loads(resp.data)["metadata"]["finalizers"])
"#,
    );
    assert_eq!(out.trim(), "['orphan']");
    c.eventually(&["get", "rc", "-o", "name"], 30, |out| {
        out.trim().is_empty()
    });
    let pods = live_pods(&c);
    assert_eq!(pods.len(), 3, "the pods stay");
    assert!(
        pods.iter()
            .all(|p| p["metadata"]["ownerReferences"].is_null()),
        "{pods:?}"
    );
}
