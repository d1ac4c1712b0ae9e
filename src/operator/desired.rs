//! What a `Website` should have, as pure functions: its three children (the ConfigMap holding
//! the page, the Deployment of `orrery/hello` serving it, the Service in front) and the status
//! the operator writes from what the Deployment reports. No I/O: the reconcile applies what
//! these return, and the tests read them directly.
//!
//! Every child is named after the website (the ConfigMap `<name>-page`), carries the labels
//! `app.kubernetes.io/name: website` and `app.kubernetes.io/instance: <name>` (the pods'
//! selector), and is owned by the website through a controller owner reference, so the
//! garbage collector deletes it with the website and the controller is told when it changes.
//! The pod template carries the page's SHA-256 (`samples.orrery.dev/page-sha256`): a new page
//! is a new template, so the Deployment rolls its pods onto it, as a ConfigMap's files are
//! otherwise only refreshed by each kubelet in its own time.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec,
    PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use sha2::{Digest, Sha256};

use super::website::{Website, WebsiteStatus};

/// The image every replica runs: Orrery's built-in web server, which answers with the file
/// `$HELLO_FILE` before its greeting.
pub const IMAGE: &str = "orrery/hello";
/// The annotation on the pod template holding the page's SHA-256 (its first 16 hex digits).
pub const PAGE_HASH_ANNOTATION: &str = "samples.orrery.dev/page-sha256";
/// Where the page is mounted in each pod, and the file `HELLO_FILE` names.
const PAGE_DIR: &str = "/site";
const PAGE_KEY: &str = "page.txt";
/// The condition type the operator sets.
pub const READY: &str = "Ready";

/// Why a website's children cannot be made: it lacks what the API server always gives a stored
/// object.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DesiredError {
    /// The website has no name, namespace or uid (it was not read from the API server).
    #[error("website has no {0}: children are made only for a stored website")]
    Missing(&'static str),
}

/// The three objects a website should have.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// `<name>-page`: the page, under the key `page.txt`.
    pub config_map: ConfigMap,
    /// `<name>`: `spec.replicas` pods of `orrery/hello` answering with the page.
    pub deployment: Deployment,
    /// `<name>`: port 80 to the pods' `http` port, of the website's exposure type.
    pub service: Service,
}

/// The name of a website's ConfigMap.
pub fn config_map_name(website: &str) -> String {
    format!("{website}-page")
}

/// The labels of a website's children and pods; the pods' selector.
pub fn labels(website: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "website".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), website.to_owned()),
    ])
}

/// [`labels`] as a selector string (`k=v,k=v`), what the scale subresource reports.
pub fn selector(website: &str) -> String {
    labels(website)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The first 16 hex digits of the page's SHA-256.
pub fn page_hash(page: &str) -> String {
    let digest = Sha256::digest(page.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The children `website` should have.
pub fn children(website: &Website) -> Result<Children, DesiredError> {
    let name = website
        .metadata
        .name
        .as_deref()
        .ok_or(DesiredError::Missing("name"))?;
    let namespace = website
        .metadata
        .namespace
        .as_deref()
        .ok_or(DesiredError::Missing("namespace"))?;
    let owner = website
        .controller_owner_ref(&())
        .ok_or(DesiredError::Missing("uid"))?;
    let meta = |child: String| ObjectMeta {
        name: Some(child),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels(name)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let config_map = ConfigMap {
        metadata: meta(config_map_name(name)),
        data: Some(BTreeMap::from([(
            PAGE_KEY.to_owned(),
            website.spec.page.clone(),
        )])),
        ..ConfigMap::default()
    };
    let deployment = Deployment {
        metadata: meta(name.to_owned()),
        spec: Some(DeploymentSpec {
            replicas: Some(website.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels(name)),
                ..LabelSelector::default()
            },
            template: pod_template(name, &website.spec.page),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    let service = Service {
        metadata: meta(name.to_owned()),
        spec: Some(ServiceSpec {
            type_: Some(website.spec.exposure.service_type().to_owned()),
            selector: Some(labels(name)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: 80,
                target_port: Some(IntOrString::String("http".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Ok(Children {
        config_map,
        deployment,
        service,
    })
}

fn website_name(website: &Website) -> &str {
    website.metadata.name.as_deref().unwrap_or_default()
}

/// The pods: `orrery/hello` on port 8080 (`http`), ready once it answers `/`, with the page
/// mounted read-only and named by `HELLO_FILE`.
fn pod_template(name: &str, page: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(name)),
            annotations: Some(BTreeMap::from([(
                PAGE_HASH_ANNOTATION.to_owned(),
                page_hash(page),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "hello".to_owned(),
                image: Some(IMAGE.to_owned()),
                env: Some(vec![EnvVar {
                    name: "HELLO_FILE".to_owned(),
                    value: Some(format!("{PAGE_DIR}/{PAGE_KEY}")),
                    ..EnvVar::default()
                }]),
                ports: Some(vec![ContainerPort {
                    name: Some("http".to_owned()),
                    container_port: 8080,
                    ..ContainerPort::default()
                }]),
                readiness_probe: Some(Probe {
                    http_get: Some(HTTPGetAction {
                        path: Some("/".to_owned()),
                        port: IntOrString::String("http".to_owned()),
                        ..HTTPGetAction::default()
                    }),
                    period_seconds: Some(2),
                    ..Probe::default()
                }),
                volume_mounts: Some(vec![VolumeMount {
                    name: "page".to_owned(),
                    mount_path: PAGE_DIR.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                }]),
                ..Container::default()
            }],
            volumes: Some(vec![Volume {
                name: "page".to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: config_map_name(name),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
    }
}

/// The status of `website` given its Deployment as the API server last returned it, at `now`.
///
/// Ready is True once the deployment controller has seen the current Deployment (its
/// `observedGeneration`) and exactly `spec.replicas` pods run the current template and are
/// ready; otherwise False, `RollingOut` while pods of an older page (or too few of the current
/// one) exist, `ReplicasNotReady` while they wait for their readiness probe. The condition's
/// `lastTransitionTime` moves only when its status changes, as `meta.SetStatusCondition` keeps
/// it.
pub fn status(website: &Website, deployment: &Deployment, now: Timestamp) -> WebsiteStatus {
    let want = website.spec.replicas;
    let generation = website.metadata.generation;
    let seen = deployment.status.as_ref();
    let replicas = seen.and_then(|s| s.replicas).unwrap_or(0);
    let ready = seen.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = seen.and_then(|s| s.updated_replicas).unwrap_or(0);
    let caught_up = match (
        deployment.metadata.generation,
        seen.and_then(|s| s.observed_generation),
    ) {
        (Some(generation), Some(observed)) => observed >= generation,
        _ => false,
    };
    let (is_ready, reason, message) = if caught_up && updated == want && replicas == want {
        if ready == want {
            (
                true,
                "AllReplicasReady",
                format!("{ready} of {want} replicas ready"),
            )
        } else {
            (
                false,
                "ReplicasNotReady",
                format!("{ready} of {want} replicas ready"),
            )
        }
    } else {
        (
            false,
            "RollingOut",
            format!("{updated} of {want} replicas serve the current page, {replicas} in all"),
        )
    };
    let status = if is_ready { "True" } else { "False" };
    let previous = website
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    WebsiteStatus {
        observed_generation: generation,
        replicas,
        ready_replicas: ready,
        selector: selector(website_name(website)),
        conditions: vec![Condition {
            type_: READY.to_owned(),
            status: status.to_owned(),
            observed_generation: generation,
            last_transition_time,
            reason: reason.to_owned(),
            message,
        }],
    }
}

/// Whether the website's Ready condition is True in `status`.
pub fn is_ready(status: &WebsiteStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::website::{Exposure, WebsiteSpec};
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use serde_json::json;

    fn website(replicas: i32, page: &str, exposure: Exposure) -> Website {
        let mut website = Website::new(
            "shop",
            WebsiteSpec {
                page: page.to_owned(),
                replicas,
                exposure,
            },
        );
        website.metadata.namespace = Some("team".to_owned());
        website.metadata.uid = Some("uid-1".to_owned());
        website.metadata.generation = Some(3);
        website
    }

    #[test]
    fn children_are_named_labelled_and_owned_by_the_website() {
        let site = website(2, "Welcome!", Exposure::NodePort);
        let children = children(&site).unwrap();
        let owner = json!([{
            "apiVersion": "samples.orrery.dev/v1", "kind": "Website", "name": "shop",
            "uid": "uid-1", "controller": true,
        }]);
        let labels =
            json!({"app.kubernetes.io/instance": "shop", "app.kubernetes.io/name": "website"});
        for (meta, name) in [
            (&children.config_map.metadata, "shop-page"),
            (&children.deployment.metadata, "shop"),
            (&children.service.metadata, "shop"),
        ] {
            let meta = serde_json::to_value(meta).unwrap();
            assert_eq!(meta["name"], name);
            assert_eq!(meta["namespace"], "team");
            assert_eq!(meta["ownerReferences"], owner, "{name}");
            assert_eq!(meta["labels"], labels, "{name}");
        }
        assert_eq!(
            serde_json::to_value(&children.config_map).unwrap()["data"],
            json!({"page.txt": "Welcome!"})
        );
    }

    #[test]
    fn the_deployment_serves_the_page_from_the_config_map() {
        let children = children(&website(2, "Welcome!", Exposure::ClusterIP)).unwrap();
        let spec = serde_json::to_value(children.deployment.spec.unwrap()).unwrap();
        assert_eq!(spec["replicas"], 2);
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {"app.kubernetes.io/instance": "shop", "app.kubernetes.io/name": "website"}})
        );
        let pod = &spec["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(container["image"], "orrery/hello");
        assert_eq!(
            container["env"],
            json!([{"name": "HELLO_FILE", "value": "/site/page.txt"}])
        );
        assert_eq!(
            container["volumeMounts"],
            json!([{"name": "page", "mountPath": "/site", "readOnly": true}])
        );
        assert_eq!(
            pod["volumes"],
            json!([{"name": "page", "configMap": {"name": "shop-page"}}])
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"],
            json!({"path": "/", "port": "http"})
        );
        assert_eq!(
            spec["template"]["metadata"]["annotations"][PAGE_HASH_ANNOTATION],
            page_hash("Welcome!")
        );
    }

    #[test]
    fn a_new_page_is_a_new_pod_template_and_a_scale_is_not() {
        let template = |site: &Website| children(site).unwrap().deployment.spec.unwrap().template;
        let first = template(&website(2, "Welcome!", Exposure::ClusterIP));
        assert_eq!(
            first,
            template(&website(5, "Welcome!", Exposure::ClusterIP))
        );
        assert_ne!(first, template(&website(2, "Closed.", Exposure::ClusterIP)));
        assert_eq!(page_hash("Welcome!").len(), 16);
        assert_eq!(
            page_hash(""),
            "e3b0c44298fc1c14",
            "the SHA-256 of nothing starts so"
        );
    }

    #[test]
    fn the_service_has_the_exposure_type_and_port_80_to_http() {
        for (exposure, kind) in [
            (Exposure::ClusterIP, "ClusterIP"),
            (Exposure::NodePort, "NodePort"),
        ] {
            let service = children(&website(1, "x", exposure)).unwrap().service;
            let spec = serde_json::to_value(service.spec.unwrap()).unwrap();
            assert_eq!(spec["type"], kind);
            assert_eq!(
                spec["ports"],
                json!([{"name": "http", "port": 80, "targetPort": "http"}])
            );
            assert_eq!(spec["selector"]["app.kubernetes.io/instance"], "shop");
        }
    }

    #[test]
    fn a_website_never_stored_has_no_children() {
        let mut site = website(1, "x", Exposure::ClusterIP);
        site.metadata.uid = None;
        assert_eq!(children(&site), Err(DesiredError::Missing("uid")));
        site.metadata.namespace = None;
        assert_eq!(children(&site), Err(DesiredError::Missing("namespace")));
    }

    fn deployment(
        generation: i64,
        observed: i64,
        replicas: i32,
        updated: i32,
        ready: i32,
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(replicas),
                updated_replicas: Some(updated),
                ready_replicas: Some(ready),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn status_follows_the_deployment() {
        let site = website(2, "x", Exposure::ClusterIP);
        // (generation, observed, replicas, updated, ready) -> (ready?, reason, message)
        let cases = [
            (
                (1, 0, 0, 0, 0),
                (
                    false,
                    "RollingOut",
                    "0 of 2 replicas serve the current page, 0 in all",
                ),
            ),
            (
                (1, 1, 2, 2, 1),
                (false, "ReplicasNotReady", "1 of 2 replicas ready"),
            ),
            (
                (1, 1, 2, 2, 2),
                (true, "AllReplicasReady", "2 of 2 replicas ready"),
            ),
            // A new page rolling out: three pods, two of the new template.
            (
                (2, 2, 3, 2, 3),
                (
                    false,
                    "RollingOut",
                    "2 of 2 replicas serve the current page, 3 in all",
                ),
            ),
            // The deployment controller has not seen the latest spec yet.
            (
                (3, 2, 2, 2, 2),
                (
                    false,
                    "RollingOut",
                    "2 of 2 replicas serve the current page, 2 in all",
                ),
            ),
        ];
        for ((g, o, r, u, rr), (ready, reason, message)) in cases {
            let status = status(&site, &deployment(g, o, r, u, rr), at(100));
            let condition = &status.conditions[0];
            assert_eq!(is_ready(&status), ready, "{reason}");
            assert_eq!(condition.type_, "Ready");
            assert_eq!(condition.reason, reason);
            assert_eq!(condition.message, message);
            assert_eq!(condition.observed_generation, Some(3));
            assert_eq!(status.observed_generation, Some(3));
            assert_eq!((status.replicas, status.ready_replicas), (r, rr));
            assert_eq!(
                status.selector,
                "app.kubernetes.io/instance=shop,app.kubernetes.io/name=website"
            );
        }
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_changes() {
        let mut site = website(1, "x", Exposure::ClusterIP);
        let not_ready = status(&site, &deployment(1, 1, 1, 1, 0), at(100));
        site.status = Some(not_ready.clone());
        let still = status(&site, &deployment(1, 1, 1, 1, 0), at(200));
        assert_eq!(still.conditions[0].last_transition_time, Time(at(100)));
        let ready = status(&site, &deployment(1, 1, 1, 1, 1), at(300));
        assert_eq!(ready.conditions[0].last_transition_time, Time(at(300)));
        assert!(is_ready(&ready) && !is_ready(&not_ready));
    }

    #[test]
    fn no_replicas_is_ready_at_once() {
        let site = website(0, "x", Exposure::ClusterIP);
        let status = status(&site, &deployment(2, 2, 0, 0, 0), at(1));
        assert!(is_ready(&status));
        assert_eq!(status.conditions[0].message, "0 of 0 replicas ready");
    }
}
