//! What every component shares about the Kubernetes API itself, as upstream's
//! `k8s.io/apimachinery` is shared: how query parameters convert ([`params`]), how Go decodes
//! `[]byte` fields ([`bytes`]), how cron schedules parse and fire ([`cron`]), the JSONPath subset printer columns use ([`jsonpath`]), a disruption budget's condition ([`disruption`]), which facts of the Go types decide what a client sees
//! ([`gotypes`]), and how objects are written on the wire as Go's `encoding/json` writes them
//! ([`wire`]), label selectors and the well-known labels ([`labels`]), resource quantities ([`quantity`]), quota accounting ([`quota`]), pod readiness and ownership as every controller reads them ([`pods`]), kubectl's printers for what more than one component prints, the pod's row and the ages ([`printers`]), readiness and load-balancer addresses as every Service reader reads them ([`services`]), the storage API's well-known annotations and finalizers ([`storage`]), CertificateSigningRequests' signer names, PEM and conditions ([`certificates`]), and the Kubernetes version Orrery is ([`KUBERNETES_VERSION`]). Nothing here knows of any component; every component may import it.

pub mod autoscaling;
pub mod bytes;
pub mod certificates;
pub mod cron;
pub mod disruption;
pub mod gotypes;
pub mod jsonpath;
pub mod labels;
pub mod params;
pub mod pods;
pub mod printers;
pub mod quantity;
pub mod quota;
pub mod services;
pub mod storage;
pub mod summary;
pub mod wire;

/// The Kubernetes version Orrery reports: the API server's `/version`, the kubelets'
/// `kubeletVersion`, the control plane's images (its types are `k8s-openapi`'s for this version).
pub const KUBERNETES_VERSION: &str = "v1.33.0";
