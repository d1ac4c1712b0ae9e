//! The OpenAPI documents as their users read them: `kubectl explain` (on OpenAPI v3, and on v2's
//! protobuf), kubectl's server-side field validation, and the documents fetched raw.

use crate::common;

use common::Cluster;

#[test]
fn kubectl_explain_reads_upstreams_schemas() {
    let c = Cluster::start();
    let spec = c.ok(&["explain", "pod.spec"]);
    for expected in [
        "KIND:       Pod",
        "VERSION:    v1",
        "FIELD: spec <PodSpec>",
        "PodSpec is a description of a pod.",
        "containers\t<[]Container> -required-",
        "List of containers belonging to the pod.",
        "restartPolicy\t<string>",
    ] {
        assert!(
            spec.contains(expected),
            "{expected:?} missing from:\n{spec}"
        );
    }
    let strategy = c.ok(&["explain", "deployment.spec.strategy", "--recursive"]);
    for expected in [
        "GROUP:      apps",
        "FIELD: strategy <DeploymentStrategy>",
        // An IntOrString is a string with format int-or-string, as upstream's schema says.
        "  rollingUpdate\t<RollingUpdateDeployment>\n    maxSurge\t<string>\n    maxUnavailable\t<string>\n  type\t<string>\n",
    ] {
        assert!(
            strategy.contains(expected),
            "{expected:?} missing from:\n{strategy}"
        );
    }
    let pods = c.ok(&["explain", "pods", "--api-version=v1"]);
    for expected in [
        "KIND:       Pod",
        "Pod is a collection of containers that can run on a host.",
        "metadata\t<ObjectMeta>",
        "status\t<PodStatus>",
    ] {
        assert!(
            pods.contains(expected),
            "{expected:?} missing from:\n{pods}"
        );
    }
    let unknown = c.fails(&["explain", "pod.spec.bogus"], None);
    assert!(
        unknown.contains("field \"bogus\" does not exist"),
        "{unknown}"
    );
}

#[test]
fn kubectl_explain_reads_the_protobuf_openapi_v2() {
    let c = Cluster::start();
    let pods = c.ok(&["explain", "pods", "--output=plaintext-openapiv2"]);
    for expected in [
        "KIND:     Pod",
        "VERSION:  v1",
        "Pod is a collection of containers that can run on a host.",
        "spec\t<Object>",
    ] {
        assert!(
            pods.contains(expected),
            "{expected:?} missing from:\n{pods}"
        );
    }
    let containers = c.ok(&[
        "explain",
        "pod.spec.containers",
        "--output=plaintext-openapiv2",
    ]);
    for expected in [
        "RESOURCE: containers <[]Object>",
        "List of containers belonging to the pod.",
        "image\t<string>",
    ] {
        assert!(
            containers.contains(expected),
            "{expected:?} missing from:\n{containers}"
        );
    }
}

#[test]
fn strict_validation_is_left_to_the_server() {
    let c = Cluster::start();
    let refused = c.fails(
        &["create", "--validate=strict", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  bogus: 1\n  containers: [{name: c, image: busybox}]\n",
        ),
    );
    assert_eq!(
        refused,
        "Error from server (BadRequest): error when creating \"STDIN\": Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.bogus\"\n"
    );
}

#[test]
fn the_documents_are_served_raw() {
    let c = Cluster::start();
    let v2: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/openapi/v2"])).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    let pod = &v2["definitions"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    assert!(
        v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"].is_object(),
        "no deployments path"
    );
    let index: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/openapi/v3"])).unwrap();
    let url = index["paths"]["apis/batch/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.starts_with("/openapi/v3/apis/batch/v1?hash="), "{url}");
    let batch: serde_json::Value = serde_json::from_str(&c.ok(&["get", "--raw", &url])).unwrap();
    assert!(
        batch["components"]["schemas"]["io.k8s.api.batch.v1.JobSpec"]["properties"]["template"]
            .is_object()
    );
}
