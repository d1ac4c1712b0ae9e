//! The built-in ingress controller, as k3s ships Traefik: an API client named
//! `ingress-controller` that ensures the IngressClass `orrery` (controller
//! `orrery.dev/ingress-controller`, the cluster's default class unless another class already
//! is), serves every Ingress of a class
//! of its controller (or of no class while one of its classes is the default), proxies HTTP and
//! HTTPS on host listeners to the Services' ready endpoints, and writes each served Ingress's
//! `status.loadBalancer.ingress` (`[{"ip": <listen address>}]`, without `ports`, as
//! ingress-nginx writes it).
//!
//! [`routes`] is the pure routing table (hosts, path types, precedence); `proxy` the data path;
//! `tls` the SNI certificate resolver. The controller's loop rebuilds the table from its caches
//! (Ingresses, IngressClasses, Services, EndpointSlices, Secrets) after every batch of changes
//! and swaps it in whole; in-flight requests keep the table they started with.
//!
//! On `--runtime sim` pod addresses are made up and unreachable, so proxying answers 502; the
//! routing, 404 and 503 still hold.

pub mod routes;

mod proxy;
mod tls;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::net::TcpListener;

use crate::flow::{Flow, FlowEvent};
use routes::RouteTable;

/// The controller's name as an API client and on the flow.
pub const COMPONENT: &str = "ingress-controller";
/// The IngressClass the controller ensures.
pub const CLASS_NAME: &str = "orrery";
/// The `spec.controller` of the classes the controller serves.
pub const CONTROLLER_NAME: &str = "orrery.dev/ingress-controller";
/// The annotation that makes an IngressClass the default.
pub const IS_DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
/// The annotation older Ingresses name their class with.
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Where the controller listens.
#[derive(Clone, Debug)]
pub struct IngressConfig {
    /// The plain HTTP listener (suggested: `127.0.0.1:8080`; port 0 picks one).
    pub http: SocketAddr,
    /// The HTTPS listener (suggested: `127.0.0.1:8443`), if any.
    pub https: Option<SocketAddr>,
    /// The address written to the Ingresses' status; by default the HTTP listener's address
    /// (`127.0.0.1` when it listens on every address).
    pub status_address: Option<IpAddr>,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https: Some(SocketAddr::from(([127, 0, 0, 1], 8443))),
            status_address: None,
        }
    }
}

/// What can go wrong starting the controller.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// A listener's address is taken or not ours.
    #[error("failed to listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate or key could not be read or made.
    #[error("bad certificate: {0}")]
    Certificate(String),
}

/// The ingress controller, its listeners bound; [`IngressController::run`] serves.
pub struct IngressController {
    client: kube::Client,
    shared: Arc<proxy::Shared>,
    http: TcpListener,
    https: Option<(TcpListener, Arc<tls::SniResolver>)>,
    status_address: IpAddr,
}

async fn bind(address: SocketAddr) -> Result<TcpListener, IngressError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| IngressError::Bind { address, source })
}

impl IngressController {
    /// Binds the listeners (so a caller learns the ports before serving), talking to the API
    /// server through `client` (name it [`COMPONENT`]).
    pub async fn bind(
        client: kube::Client,
        flow: Flow,
        config: &IngressConfig,
    ) -> Result<Self, IngressError> {
        let http = bind(config.http).await?;
        let https = match config.https {
            Some(address) => Some((bind(address).await?, Arc::new(tls::SniResolver::new()?))),
            None => None,
        };
        let status_address = config.status_address.unwrap_or(match config.http.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        });
        Ok(IngressController {
            client,
            shared: Arc::new(proxy::Shared::new(flow)),
            http,
            https,
            status_address,
        })
    }

    /// The HTTP listener's address.
    pub fn http_address(&self) -> SocketAddr {
        self.http.local_addr().expect("a bound listener")
    }

    /// The HTTPS listener's address, if there is one.
    pub fn https_address(&self) -> Option<SocketAddr> {
        self.https
            .as_ref()
            .map(|(l, _)| l.local_addr().expect("a bound listener"))
    }

    /// Serves, and follows the API, until the task is aborted.
    pub async fn run(self) {
        let IngressController {
            client,
            shared,
            http,
            https,
            status_address,
        } = self;
        let mut servers = vec![tokio::spawn(proxy::serve_http(http, shared.clone()))];
        let resolver = https.map(|(listener, resolver)| {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(resolver.clone()));
            servers.push(tokio::spawn(proxy::serve_https(
                listener,
                acceptor,
                shared.clone(),
            )));
            resolver
        });
        // The listeners end with this task.
        struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.iter().for_each(tokio::task::JoinHandle::abort);
            }
        }
        let _servers = AbortOnDrop(servers);
        Loop {
            client,
            shared,
            resolver,
            status_address,
            certificates: HashMap::new(),
            last_sync: None,
        }
        .run()
        .await;
    }
}

/// A TLS Secret's resourceVersion and its certificate, if it holds a usable one.
type ParsedSecret = (String, Option<Arc<rustls::sign::CertifiedKey>>);

/// The controller's loop and what it remembers between passes.
struct Loop {
    client: kube::Client,
    shared: Arc<proxy::Shared>,
    resolver: Option<Arc<tls::SniResolver>>,
    status_address: IpAddr,
    /// Parsed certificates by Secret (namespace, name) and resourceVersion.
    certificates: HashMap<(String, String), ParsedSecret>,
    /// The last table's description, to emit a SYNC hop only when routes change.
    last_sync: Option<String>,
}

/// The class of the orrery controller, default, as k3s ships Traefik's.
fn orrery_class() -> IngressClass {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": CLASS_NAME, "annotations": {IS_DEFAULT_CLASS: "true"}},
        "spec": {"controller": CONTROLLER_NAME},
    }))
    .expect("a valid IngressClass")
}

/// Whether the controller serves `ingress`, given the classes of its controller (`ours`) and
/// whether one of them is the default.
pub fn serves(ingress: &Ingress, ours: &BTreeSet<String>, ours_is_default: bool) -> bool {
    let class = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone())
        .or_else(|| {
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CLASS_ANNOTATION).cloned())
        });
    match class {
        Some(class) => ours.contains(&class),
        None => ours_is_default,
    }
}

impl Loop {
    /// Creates the `orrery` IngressClass if it is missing: the default class, unless another
    /// class already is (two defaults would make the API server refuse every Ingress without a
    /// class).
    async fn ensure_class(&self) {
        let api: Api<IngressClass> = Api::all(self.client.clone());
        if matches!(api.get_opt(CLASS_NAME).await, Ok(Some(_))) {
            return;
        }
        let other_default = api.list(&Default::default()).await.is_ok_and(|list| {
            list.items.iter().any(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(IS_DEFAULT_CLASS))
                    .is_some_and(|v| v == "true")
            })
        });
        let mut class = orrery_class();
        if other_default {
            class.metadata.annotations = None;
        }
        self.shared
            .flow
            .gate_emit(
                FlowEvent::new(COMPONENT, "apiserver", "CREATE")
                    .object("IngressClass", "", CLASS_NAME)
                    .detail(format!("the IngressClass {CLASS_NAME} ({CONTROLLER_NAME})")),
            )
            .await;
        if let Err(e) = api.create(&PostParams::default(), &class).await {
            tracing::debug!("creating IngressClass {CLASS_NAME}: {e}");
        }
    }

    async fn run(mut self) {
        self.ensure_class().await;
        let client = self.client.clone();
        let (ingresses, ingress_events) =
            crate::informers::cache::<Ingress>(&client, watcher::Config::default());
        let (classes, class_events) =
            crate::informers::cache::<IngressClass>(&client, watcher::Config::default());
        let (services, service_events) =
            crate::informers::cache::<Service>(&client, watcher::Config::default());
        let (slices, slice_events) =
            crate::informers::cache::<EndpointSlice>(&client, watcher::Config::default());
        let (secrets, secret_events) =
            crate::informers::cache::<Secret>(&client, watcher::Config::default());
        let mut changes = futures::stream::select_all([
            ingress_events,
            class_events,
            service_events,
            slice_events,
            secret_events,
        ])
        .boxed();
        crate::informers::prime(&mut changes, async {
            let _ = ingresses.wait_until_ready().await;
            let _ = classes.wait_until_ready().await;
            let _ = services.wait_until_ready().await;
            let _ = slices.wait_until_ready().await;
            let _ = secrets.wait_until_ready().await;
        })
        .await;
        let mut pace = crate::informers::Pace::default();
        loop {
            let all_classes = classes.state();
            let ours: BTreeSet<String> = all_classes
                .iter()
                .filter(|c| {
                    c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER_NAME)
                })
                .filter_map(|c| c.metadata.name.clone())
                .collect();
            let ours_is_default = all_classes.iter().any(|c| {
                c.metadata.name.as_ref().is_some_and(|n| ours.contains(n))
                    && c.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(IS_DEFAULT_CLASS))
                        .is_some_and(|v| v == "true")
            });
            let all_ingresses = ingresses.state();
            let served: Vec<&Ingress> = all_ingresses
                .iter()
                .map(|i| &**i)
                .filter(|i| i.metadata.deletion_timestamp.is_none())
                .filter(|i| serves(i, &ours, ours_is_default))
                .collect();
            let all_services = services.state();
            let all_slices = slices.state();
            let table = RouteTable::build(
                &served,
                &all_services.iter().map(|s| &**s).collect::<Vec<_>>(),
                &all_slices.iter().map(|s| &**s).collect::<Vec<_>>(),
            );
            let description = format!("{table:?}");
            if self.last_sync.as_ref() != Some(&description) {
                self.shared.flow.emit(
                    FlowEvent::new(COMPONENT, "ingress", "SYNC")
                        .detail(table.summary())
                        .data(table.routes()),
                );
                self.last_sync = Some(description);
            }
            self.shared.set_table(table);
            if let Some(resolver) = self.resolver.clone() {
                let all_secrets = secrets.state();
                resolver.set(self.certificates_for(&served, &all_secrets));
            }
            for ingress in &served {
                self.write_status(ingress).await;
            }
            crate::informers::next_batch(&mut changes, Duration::from_secs(30), &mut pace).await;
        }
    }

    /// The certificates of the served Ingresses' `spec.tls[]`, by host.
    fn certificates_for(
        &mut self,
        served: &[&Ingress],
        secrets: &[Arc<Secret>],
    ) -> HashMap<String, Arc<rustls::sign::CertifiedKey>> {
        let mut by_host = HashMap::new();
        for ingress in served {
            let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
            let tls = ingress.spec.as_ref().and_then(|s| s.tls.clone());
            for entry in tls.into_iter().flatten() {
                let Some(secret_name) = entry.secret_name.clone() else {
                    continue;
                };
                let Some(secret) = secrets.iter().find(|s| {
                    s.metadata.namespace.as_deref() == Some(&namespace)
                        && s.metadata.name.as_deref() == Some(&secret_name)
                }) else {
                    continue;
                };
                let key = (namespace.clone(), secret_name.clone());
                let version = secret.metadata.resource_version.clone().unwrap_or_default();
                let cached = self.certificates.get(&key).filter(|(v, _)| *v == version);
                let certified = match cached {
                    Some((_, certified)) => certified.clone(),
                    None => {
                        let data = secret.data.clone().unwrap_or_default();
                        let parsed = match (data.get("tls.crt"), data.get("tls.key")) {
                            (Some(crt), Some(key))
                                if secret.type_.as_deref() == Some("kubernetes.io/tls") =>
                            {
                                tls::certified_key(&crt.0, &key.0)
                                    .map_err(|e| {
                                        tracing::debug!("Secret {namespace}/{secret_name}: {e}")
                                    })
                                    .ok()
                                    .map(Arc::new)
                            }
                            _ => None,
                        };
                        self.certificates.insert(key, (version, parsed.clone()));
                        parsed
                    }
                };
                let Some(certified) = certified else { continue };
                for host in entry.hosts.iter().flatten() {
                    by_host
                        .entry(host.to_ascii_lowercase())
                        .or_insert_with(|| certified.clone());
                }
            }
        }
        by_host
    }

    /// Writes `status.loadBalancer.ingress` when it is not already the listen address.
    async fn write_status(&self, ingress: &Ingress) {
        let want = json!([{"ip": self.status_address.to_string()}]);
        let have = ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|points| serde_json::to_value(points).unwrap_or_default())
            .unwrap_or(json!([]));
        if have == want {
            return;
        }
        let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
        let name = ingress.metadata.name.clone().unwrap_or_default();
        self.shared
            .flow
            .gate_emit(
                FlowEvent::new(COMPONENT, "apiserver", "STATUS")
                    .object("Ingress", &namespace, &name)
                    .detail(format!("address {}", self.status_address)),
            )
            .await;
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &namespace);
        let patch = json!({"status": {"loadBalancer": {"ingress": want}}});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!("Ingress {namespace}/{name} status: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_decides_who_serves() {
        let ours = BTreeSet::from([CLASS_NAME.to_owned()]);
        let with = |spec: serde_json::Value, annotations: serde_json::Value| -> Ingress {
            serde_json::from_value(
                json!({"metadata": {"name": "i", "annotations": annotations}, "spec": spec}),
            )
            .unwrap()
        };
        let named = with(json!({"ingressClassName": "orrery"}), json!({}));
        let other = with(json!({"ingressClassName": "nginx"}), json!({}));
        let unset = with(json!({}), json!({}));
        let annotated = with(json!({}), json!({CLASS_ANNOTATION: "orrery"}));
        assert!(serves(&named, &ours, false));
        assert!(!serves(&other, &ours, true));
        assert!(serves(&unset, &ours, true));
        assert!(!serves(&unset, &ours, false));
        assert!(serves(&annotated, &ours, false));
        assert_eq!(
            orrery_class().spec.unwrap().controller.as_deref(),
            Some(CONTROLLER_NAME)
        );
    }
}
