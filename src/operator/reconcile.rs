//! The website operator's control loop: kube-runtime's `Controller` on Websites, told too when
//! a child it owns changes or goes, and a reconcile that makes the world match one Website.
//!
//! Each reconcile server-side applies the three children [`desired::children`] describes (field
//! manager `website-operator`, forced: the Website is the one source of their spec, so a hand
//! edit of a field it sets is put back, and a deleted child is made again), then writes the
//! Website's `status` from the Deployment the apply returned, only when it changed (a merge
//! patch of the `status` subresource). Events (`events.k8s.io/v1`, through kube's `Recorder`)
//! mark what a user would want to see: a new generation applied, Ready turning True or False,
//! and a child the API server refused.
//!
//! No finalizer: every child is owned through an owner reference, so the garbage collector
//! deletes them with the Website, and nothing outside the cluster needs cleaning up. A Website
//! already being deleted is not reconciled (a foreground deletion waits for the collector to
//! delete its children, which a reconcile would make again).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::OperatorError;
use super::desired::{self, DesiredError};
use super::website::{Website, WebsiteStatus};

/// The operator's name: its field manager, the reporting controller of its Events, and its
/// requests' user agent (`super::named`).
pub const MANAGER: &str = "website-operator";

/// How long a reconciled Website waits before it is looked at again with nothing changed (the
/// periodic resync kube-rs recommends, which catches anything a watch missed).
const RESYNC: Duration = Duration::from_secs(300);
/// How long a Website whose reconcile failed waits before the next try.
const RETRY: Duration = Duration::from_secs(5);

/// Why one reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The Website lacks what a stored object has.
    #[error(transparent)]
    Desired(#[from] DesiredError),
    /// The API server refused a child.
    #[error("applying {kind} {namespace}/{name}: {source}")]
    Apply {
        /// The child's kind.
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What the API server said.
        source: kube::Error,
    },
    /// The API server refused the status.
    #[error("writing the status of website {namespace}/{name}: {source}")]
    Status {
        /// The Website's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What the API server said.
        source: kube::Error,
    },
}

/// What every reconcile shares.
struct Context {
    client: Client,
    recorder: Recorder,
}

/// Runs the operator on `client` until SIGINT or SIGTERM: checks that the API server serves
/// Websites, then reconciles every Website of every namespace, printing one line per
/// reconcile to stdout (and each failure to stderr).
pub async fn run(client: Client) -> Result<(), OperatorError> {
    let websites: Api<Website> = Api::all(client.clone());
    // A clear word before the watch starts retrying: without the definition there is nothing
    // to watch.
    websites
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|e| match e {
            kube::Error::Api(status) if status.code == 404 => OperatorError::NotInstalled,
            other => OperatorError::List(other),
        })?;
    let reporter = Reporter {
        controller: MANAGER.to_owned(),
        // The Deployment of manifests/website-operator.yaml names its pod here.
        instance: std::env::var("CONTROLLER_POD_NAME").ok(),
    };
    let context = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
    });
    // The children are watched only where they carry the websites' label: the operator's caches
    // hold its own objects, not every ConfigMap and Service of the cluster.
    let children = watcher::Config::default().labels("app.kubernetes.io/name=website");
    println!("{MANAGER}: watching websites in all namespaces");
    Controller::new(websites, watcher::Config::default())
        .owns(Api::<ConfigMap>::all(client.clone()), children.clone())
        .owns(Api::<Deployment>::all(client.clone()), children.clone())
        .owns(Api::<Service>::all(client), children)
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((website, _)) => println!(
                    "{MANAGER}: reconciled website {}/{}",
                    website.namespace.as_deref().unwrap_or_default(),
                    website.name
                ),
                Err(error) => eprintln!("{MANAGER}: {error}"),
            }
        })
        .await;
    println!("{MANAGER}: stopped");
    Ok(())
}

/// Makes the cluster match one Website.
async fn reconcile(website: Arc<Website>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    // A Website being deleted (in the foreground, its children first) is left to the garbage
    // collector: applying its children again would undo the collector's work.
    if website.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let children = desired::children(&website)?;
    let namespace = website.namespace().unwrap_or_default();
    let name = website.name_any();
    let deployment = Applier {
        context: &context,
        website: &website,
        namespace: &namespace,
    }
    .all(&children)
    .await?;

    let status = desired::status(&website, &deployment, Timestamp::now());
    let before = website.status.clone().unwrap_or_default();
    if website.status.as_ref() != Some(&status) {
        let websites: Api<Website> = Api::namespaced(context.client.clone(), &namespace);
        websites
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": status })),
            )
            .await
            .map_err(|source| ReconcileError::Status {
                namespace: namespace.clone(),
                name: name.clone(),
                source,
            })?;
    }
    for event in events(&website, &before, &status) {
        publish(&context, &website, event).await;
    }
    Ok(Action::requeue(RESYNC))
}

/// A failed reconcile is tried again after [`RETRY`].
fn error_policy(_: Arc<Website>, _: &ReconcileError, _: Arc<Context>) -> Action {
    Action::requeue(RETRY)
}

/// Applies one Website's children.
struct Applier<'a> {
    context: &'a Context,
    website: &'a Website,
    namespace: &'a str,
}

impl Applier<'_> {
    /// Server-side applies `child` and returns the object the API server now holds; a refusal
    /// is a Warning event on the Website too.
    async fn child<K>(&self, child: &K) -> Result<K, ReconcileError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + Serialize
            + DeserializeOwned,
    {
        let api: Api<K> = Api::namespaced(self.context.client.clone(), self.namespace);
        let kind = K::kind(&()).into_owned();
        let name = child.meta().name.clone().unwrap_or_default();
        // An apply body names its apiVersion and kind, which k8s-openapi's types leave out.
        let applied = match serde_json::to_value(child) {
            Ok(mut body) => {
                body["apiVersion"] = K::api_version(&()).into();
                body["kind"] = kind.clone().into();
                let params = PatchParams::apply(MANAGER).force();
                api.patch(&name, &params, &Patch::Apply(body)).await
            }
            Err(error) => Err(kube::Error::SerdeError(error)),
        };
        applied.map_err(|source| ReconcileError::Apply {
            kind,
            namespace: self.namespace.to_owned(),
            name,
            source,
        })
    }

    /// Applies the three children in order (the ConfigMap before the pods that mount it),
    /// returning the Deployment as the API server holds it; a refusal is a Warning event on
    /// the Website too.
    async fn all(&self, children: &desired::Children) -> Result<Deployment, ReconcileError> {
        let applied = async {
            self.child(&children.config_map).await?;
            let deployment = self.child(&children.deployment).await?;
            self.child(&children.service).await?;
            Ok(deployment)
        }
        .await;
        if let Err(ReconcileError::Apply {
            kind, name, source, ..
        }) = &applied
        {
            let notice = Notice {
                type_: EventType::Warning,
                reason: "ApplyFailed",
                note: format!("{kind} {name}: {}", api_message(source)),
            };
            publish(self.context, self.website, notice).await;
        }
        applied
    }
}

/// What the API server said, without kube's wrapping: a refusal's `Status` message.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// An Event the operator records on a Website.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Notice {
    type_: EventType,
    reason: &'static str,
    note: String,
}

/// The Events one reconcile records, from the Website's status before and after it: `Applied`
/// when the operator acts on a generation of the spec it had not (a new Website, a scale, a
/// new page), `Ready` and `NotReady` when the Ready condition turns.
fn events(website: &Website, before: &WebsiteStatus, after: &WebsiteStatus) -> Vec<Notice> {
    let mut notices = Vec::new();
    let name = website.name_any();
    if before.observed_generation != website.metadata.generation {
        notices.push(Notice {
            type_: EventType::Normal,
            reason: "Applied",
            note: format!(
                "Generation {}: ConfigMap {}, Deployment {name} of {} replicas, {} Service {name}",
                website.metadata.generation.unwrap_or_default(),
                desired::config_map_name(&name),
                website.spec.replicas,
                website.spec.exposure.service_type(),
            ),
        });
    }
    let message = |status: &WebsiteStatus| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == desired::READY)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    match (desired::is_ready(before), desired::is_ready(after)) {
        (false, true) => notices.push(Notice {
            type_: EventType::Normal,
            reason: "Ready",
            note: message(after),
        }),
        (true, false) => notices.push(Notice {
            type_: EventType::Normal,
            reason: "NotReady",
            note: message(after),
        }),
        _ => {}
    }
    notices
}

/// Records `notice` on `website`. An Event the API server refuses is reported on stderr and
/// does not fail the reconcile: Events are for people, not part of the desired state.
async fn publish(context: &Context, website: &Website, notice: Notice) {
    let event = Event {
        type_: notice.type_,
        reason: notice.reason.to_owned(),
        note: Some(notice.note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = context
        .recorder
        .publish(&event, &website.object_ref(&()))
        .await
    {
        eprintln!(
            "{MANAGER}: recording event {} on website {}/{}: {error}",
            notice.reason,
            website.namespace().unwrap_or_default(),
            website.name_any()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::website::{Exposure, WebsiteSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn website(generation: i64) -> Website {
        let mut website = Website::new(
            "shop",
            WebsiteSpec {
                page: "Welcome!".to_owned(),
                replicas: 2,
                exposure: Exposure::NodePort,
            },
        );
        website.metadata.generation = Some(generation);
        website
    }

    fn status(observed: Option<i64>, ready: Option<&str>) -> WebsiteStatus {
        WebsiteStatus {
            observed_generation: observed,
            conditions: ready
                .map(|status| Condition {
                    type_: "Ready".to_owned(),
                    status: status.to_owned(),
                    observed_generation: observed,
                    last_transition_time: Time(Timestamp::UNIX_EPOCH),
                    reason: "R".to_owned(),
                    message: format!("ready is {status}"),
                })
                .into_iter()
                .collect(),
            ..WebsiteStatus::default()
        }
    }

    fn reasons(notices: &[Notice]) -> Vec<&str> {
        notices.iter().map(|n| n.reason).collect()
    }

    #[test]
    fn a_new_generation_is_announced_once() {
        let site = website(2);
        let notices = events(
            &site,
            &status(Some(1), Some("False")),
            &status(Some(2), Some("False")),
        );
        assert_eq!(
            notices,
            [Notice {
                type_: EventType::Normal,
                reason: "Applied",
                note: "Generation 2: ConfigMap shop-page, Deployment shop of 2 replicas, NodePort Service shop".to_owned(),
            }]
        );
        // The next reconcile of the same generation says nothing.
        assert!(
            events(
                &site,
                &status(Some(2), Some("False")),
                &status(Some(2), Some("False"))
            )
            .is_empty()
        );
        // A brand-new website has no status yet.
        assert_eq!(
            reasons(&events(
                &site,
                &WebsiteStatus::default(),
                &status(Some(2), Some("False"))
            )),
            ["Applied"]
        );
    }

    #[test]
    fn ready_turning_is_an_event_each_way() {
        let site = website(1);
        let (no, yes) = (
            status(Some(1), Some("False")),
            status(Some(1), Some("True")),
        );
        let up = events(&site, &no, &yes);
        assert_eq!(reasons(&up), ["Ready"]);
        assert_eq!(up[0].note, "ready is True");
        assert_eq!(reasons(&events(&site, &yes, &no)), ["NotReady"]);
        assert!(events(&site, &yes, &yes).is_empty());
    }
}
