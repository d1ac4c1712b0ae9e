//! CustomResourceDefinitions as users use them, with the real kubectl and the `kube` crate: a
//! CRD is established and its resource appears in discovery; the schema refuses bad objects
//! in upstream's words, defaults and prunes; printer columns show in `kubectl get`; the status
//! subresource ignores spec changes and the scale subresource reaches the spec; watches and
//! selectors work; deleting the CRD deletes its objects.

use crate::common;

use common::Cluster;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

const CRD: &str = include_str!("crds/crontab-crd.yaml");

fn established(cluster: &Cluster) {
    cluster.ok_with(&["apply", "-f", "-"], Some(CRD));
    cluster.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=20s",
        "crd/crontabs.stable.example.com",
    ]);
}

#[test]
fn a_crd_is_established_served_validated_defaulted_pruned_and_printed() {
    let cluster = Cluster::start();
    established(&cluster);
    let conditions = cluster.ok(&[
        "get",
        "crd",
        "crontabs.stable.example.com",
        "-o",
        "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}",
    ]);
    assert_eq!(
        conditions.trim(),
        "NamesAccepted=True/NoConflicts Established=True/InitialNamesAccepted"
    );
    let resources = cluster.ok(&["api-resources", "--api-group=stable.example.com"]);
    assert!(
        resources.contains("crontabs   ct           stable.example.com/v1   true         CronTab"),
        "{resources}"
    );

    // `kubectl explain` reads the CRD's schema from the OpenAPI documents.
    let explained = cluster.ok(&["explain", "crontab.spec"]);
    assert!(
        explained.contains("KIND:       CronTab")
            && explained.contains("cronSpec\t<string> -required-")
            && explained.contains("enum: fast, slow"),
        "{explained}"
    );

    // Unknown fields: refused by kubectl's strict validation, pruned with a warning otherwise.
    let with_extra = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: nightly, labels: {tier: batch}}\nspec: {cronSpec: '* * * * */5', extra: dropped}\n";
    let strict = cluster.fails(&["apply", "-f", "-"], Some(with_extra));
    assert!(
        strict.contains("strict decoding error: unknown field \"spec.extra\""),
        "{strict}"
    );
    let warned = cluster.kubectl(
        &["apply", "--validate=warn", "-f", "-"],
        Some(with_extra),
        &[],
    );
    assert!(warned.status.success());
    assert!(
        String::from_utf8_lossy(&warned.stderr).contains("unknown field \"spec.extra\""),
        "{warned:?}"
    );
    let spec = cluster.ok(&["get", "ct", "nightly", "-o", "jsonpath={.spec}"]);
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(
        spec,
        json!({"cronSpec": "* * * * */5", "image": "busybox", "replicas": 1})
    );

    // The schema refuses a bad object in upstream's words.
    let bad = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: bad}\nspec: {cronSpec: nope, replicas: 50, mode: medium}\n";
    let refused = cluster.fails(&["apply", "-f", "-"], Some(bad));
    assert!(
        refused.contains("The CronTab \"bad\" is invalid: "),
        "{refused}"
    );
    for line in [
        r#"spec.cronSpec: Invalid value: "nope": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#,
        r#"spec.mode: Unsupported value: "medium": supported values: "fast", "slow""#,
        "spec.replicas: Invalid value: 50: spec.replicas in body should be less than or equal to 10",
    ] {
        assert!(refused.contains(line), "{line} not in {refused}");
    }
    let missing = cluster.fails(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: empty}\nspec: {}\n",
        ),
    );
    assert!(
        missing.contains("spec.cronSpec: Required value"),
        "{missing}"
    );

    // Printer columns.
    let table = cluster.ok(&["get", "ct"]);
    let rows = common::rows(&table);
    assert_eq!(rows[0], ["NAME", "SPEC", "REPLICAS", "AGE"]);
    assert_eq!(&rows[1][..3], ["nightly", "* * * * */5", "1"]);

    // The status subresource changes only status; the main resource never changes status.
    cluster.ok(&[
        "patch",
        "ct",
        "nightly",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":2,"phase":"Running"},"spec":{"replicas":7}}"#,
    ]);
    cluster.ok(&[
        "patch",
        "ct",
        "nightly",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Lost"}}"#,
    ]);
    let state = cluster.ok(&[
        "get",
        "ct",
        "nightly",
        "-o",
        "jsonpath={.spec.replicas} {.status.replicas} {.status.phase} {.metadata.generation}",
    ]);
    assert_eq!(state, "1 2 Running 1");

    // The scale subresource reaches the spec, and counts as a spec change.
    cluster.ok(&["scale", "ct", "nightly", "--replicas=3"]);
    let scaled = cluster.ok(&[
        "get",
        "ct",
        "nightly",
        "-o",
        "jsonpath={.spec.replicas} {.metadata.generation}",
    ]);
    assert_eq!(scaled, "3 2");
    let scale = cluster.ok(&[
        "get",
        "--raw",
        "/apis/stable.example.com/v1/namespaces/default/crontabs/nightly/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(
        (&scale["spec"]["replicas"], &scale["status"]["replicas"]),
        (&json!(3), &json!(2))
    );

    // Label and name selectors.
    cluster.ok_with(
        &["apply", "-f", "-"],
        Some("apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: hourly}\nspec: {cronSpec: '0 * * * *'}\n"),
    );
    let batch = cluster.ok(&["get", "ct", "-l", "tier=batch", "-o", "name"]);
    assert_eq!(batch.trim(), "crontab.stable.example.com/nightly");
    let named = cluster.ok(&[
        "get",
        "ct",
        "--field-selector",
        "metadata.name=hourly",
        "-o",
        "name",
    ]);
    assert_eq!(named.trim(), "crontab.stable.example.com/hourly");

    // Deleting the CRD deletes its objects; a CRD made again starts empty.
    cluster.ok(&[
        "delete",
        "crd",
        "crontabs.stable.example.com",
        "--timeout=30s",
    ]);
    let gone = cluster.fails(&["get", "crontabs.stable.example.com"], None);
    assert!(
        gone.contains("the server doesn't have a resource type"),
        "{gone}"
    );
    established(&cluster);
    let again = cluster.kubectl(&["get", "ct", "-A", "-o", "name"], None, &[]);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kube_crate_creates_watches_and_applies_custom_resources() {
    let cluster = Cluster::start();
    established(&cluster);
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let resource = ApiResource {
        group: "stable.example.com".into(),
        version: "v1".into(),
        api_version: "stable.example.com/v1".into(),
        kind: "CronTab".into(),
        plural: "crontabs".into(),
    };
    let crontabs: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource);
    let mut stream = Box::pin(watcher::watch_object(crontabs.clone(), "weekly"));
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "weekly"},
        "spec": {"cronSpec": "0 0 * * 0", "mode": "slow"},
    }))
    .unwrap();
    let created = crontabs
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["replicas"], 1);
    // The watch sees it.
    use futures::StreamExt;
    let seen = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            if let Some(Ok(Some(o))) = stream.next().await {
                return o;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(seen.data["spec"]["mode"], "slow");

    // Server-side apply owns the fields it sets.
    let applied = crontabs
        .patch(
            "weekly",
            &PatchParams::apply("tester").force(),
            &Patch::Apply(json!({
                "apiVersion": "stable.example.com/v1",
                "kind": "CronTab",
                "metadata": {"name": "weekly"},
                "spec": {"cronSpec": "0 0 * * 1"},
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["cronSpec"], "0 0 * * 1");
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"tester".to_owned()), "{managers:?}");
    let listed = crontabs.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
}

#[test]
fn a_second_crd_taking_a_name_is_not_accepted() {
    let cluster = Cluster::start();
    established(&cluster);
    let clash = CRD
        .replace(
            "name: crontabs.stable.example.com",
            "name: crontabs2.stable.example.com",
        )
        .replace("plural: crontabs", "plural: crontabs2")
        .replace("singular: crontab", "singular: crontab2")
        .replace("shortNames: [ct]", "shortNames: [ct2]");
    cluster.ok_with(&["apply", "-f", "-"], Some(&clash));
    let condition = cluster.eventually(
        &[
            "get",
            "crd",
            "crontabs2.stable.example.com",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"NamesAccepted\")].reason}",
        ],
        20,
        |out| !out.is_empty(),
    );
    assert_eq!(condition, "KindConflict");
    let message = cluster.ok(&[
        "get",
        "crd",
        "crontabs2.stable.example.com",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"NamesAccepted\")].message}",
    ]);
    assert_eq!(message, "\"CronTab\" is already in use");
}
