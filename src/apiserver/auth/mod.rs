//! Who is asking, and may they: the first steps of every request, as kube-apiserver's handler
//! chain takes them (`WithAuthentication`, `WithImpersonation`, `WithAuthorization`).
//!
//! - **Authentication** ([`authenticate`]): a client certificate the cluster's CA signed names
//!   the user (CN) and groups (O); an in-process component carries the identity it was given
//!   ([`component_user`]); a request with neither is `system:anonymous`, and one with bad
//!   credentials (a certificate the CA did not sign, an unknown bearer token) gets 401.
//! - **Impersonation** ([`impersonate`]): `Impersonate-User`/`-Group`/`-Uid`/`-Extra-*`
//!   headers, each checked as the `impersonate` verb first.
//! - **Authorization** ([`Authorizer::authorize`]): `system:masters` always; the Node authorizer
//!   for kubelets ([`node`]: Secrets, ConfigMaps, claims, volumes and service account tokens
//!   only as the [`graph`] of their node's pods relates them, their own Lease, and otherwise the
//!   `system:node` role's rules); then RBAC ([`rbac`]). Both follow their objects from the store
//!   ([`follow`]). A refusal reads as upstream's (`pods is forbidden: User "alice" cannot list
//!   resource "pods" in API group "" in the namespace "default"`, and the authorizers' reasons
//!   after a colon).
//!
//! The default roles and bindings ([`policy`]) are reconciled at every start, as the
//! `rbac/bootstrap-roles` post-start hook does; the access reviews ([`reviews`]) answer
//! `kubectl auth can-i` and `kubectl auth whoami`.

use super::follow;
pub(crate) mod graph;
mod node;
pub(crate) mod policy;
pub(crate) mod rbac;
pub(crate) mod reviews;
pub mod tokens;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::errors::ApiError;
use super::path::Route;

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group of requests without credentials.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The group whose members may do anything (kube-apiserver's `--authorization-mode` always puts
/// it first).
pub const MASTERS: &str = "system:masters";
/// The user of requests without credentials.
pub const ANONYMOUS: &str = "system:anonymous";
/// The group every kubelet is in.
pub const NODES: &str = "system:nodes";

/// Who made a request, as `user.Info` has it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// The user's name: `alice`, `system:node:node-1`, `system:serviceaccount:ns:sa`.
    pub name: String,
    /// A unique id, where the authenticator knows one (service accounts).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The groups, `system:authenticated` included once authenticated.
    pub groups: Vec<String>,
    /// Extra attributes (a service account token's pod, say).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with these groups (and `system:authenticated`, as the authenticator adds it).
    pub fn new(name: impl Into<String>, groups: &[&str]) -> UserInfo {
        let mut user = UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..UserInfo::default()
        };
        user.add_authenticated();
        user
    }

    /// A service account's user: `system:serviceaccount:<ns>:<name>` in
    /// `system:serviceaccounts` and `system:serviceaccounts:<ns>`.
    pub fn service_account(namespace: &str, name: &str) -> UserInfo {
        UserInfo::new(
            format!("system:serviceaccount:{namespace}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
            ],
        )
    }

    fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..UserInfo::default()
        }
    }

    fn add_authenticated(&mut self) {
        if self.name != ANONYMOUS && !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
    }

    pub(crate) fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node a kubelet's user names (`system:node:<name>` in `system:nodes`).
    pub(crate) fn node(&self) -> Option<&str> {
        self.name
            .strip_prefix("system:node:")
            .filter(|_| self.in_group(NODES))
    }
}

/// What the connection says about its client, put on each request by the server (or the
/// in-process client): the input of [`authenticate`].
#[derive(Clone, Debug)]
pub enum Peer {
    /// No credentials at all.
    Anonymous,
    /// A client certificate the cluster's CA did not sign (or one no longer valid).
    Untrusted,
    /// A certificate the CA signed, or an in-process component.
    User(Arc<UserInfo>),
}

/// Put on every request of an in-process component ([`crate::apiserver::ApiServer::client`]):
/// what no remote client can send.
#[derive(Clone, Copy, Debug)]
pub struct InProcess;

/// Who `request` comes from: its certificate's or component's user, a bearer token's, or
/// `system:anonymous`. Bad credentials are a 401.
pub(crate) async fn authenticate(
    api: &super::ApiServer,
    peer: Option<Peer>,
    bearer: Option<String>,
) -> Result<UserInfo, ApiError> {
    match peer {
        Some(Peer::User(user)) => Ok((*user).clone()),
        Some(Peer::Untrusted) => Err(ApiError::Unauthorized),
        // A request with no peer at all comes through the router directly (a test's), not
        // through a server or an in-process client: it has no credentials either.
        Some(Peer::Anonymous) | None => match bearer {
            // Service account tokens are the only kind of bearer token.
            Some(token) => match tokens::authenticate(api, &token, &[]).await {
                Ok((user, _)) => Ok(user),
                Err(why) => {
                    tracing::debug!("bearer token refused: {why}");
                    Err(ApiError::Unauthorized)
                }
            },
            None => Ok(UserInfo::anonymous()),
        },
    }
}

/// A request's bearer token, if it has one.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The identity of a client certificate the cluster's CA signed.
pub fn certificate_user(identity: &crate::pki::Identity) -> UserInfo {
    let groups: Vec<&str> = identity.groups.iter().map(String::as_str).collect();
    UserInfo::new(identity.user.clone(), &groups)
}

/// Who an in-process component is, as the real component's credentials say: the scheduler is
/// `system:kube-scheduler`, a kubelet `system:node:<node>`, each controller its service account
/// in `kube-system` (kube-controller-manager's `--use-service-account-credentials`), and the
/// add-ons the service accounts their manifests give them. Anything else in-process (the
/// dashboard `orrery up` opens, benchmarks, tests) is the cluster's administrator.
pub fn component_user(component: &str) -> UserInfo {
    if let Some(node) = component.strip_prefix("kubelet/") {
        return UserInfo::new(format!("system:node:{node}"), &[NODES]);
    }
    if component.starts_with("kube-proxy/") {
        return UserInfo::new("system:kube-proxy", &[]);
    }
    if let Some(controller) = component.strip_prefix("controller/") {
        return UserInfo::service_account("kube-system", policy::controller_account(controller));
    }
    // The scheduler and the controller manager, or one of their replicas (`scheduler-2`).
    use crate::complog::{Component, Instance};
    match Instance::from_supervised(component).map(|i| i.component) {
        Some(Component::Scheduler) => return UserInfo::new("system:kube-scheduler", &[]),
        Some(Component::ControllerManager) => {
            return UserInfo::new("system:kube-controller-manager", &[]);
        }
        _ => {}
    }
    match component {
        "kube-apiserver" => UserInfo::new("system:apiserver", &[MASTERS]),
        crate::dns::COMPONENT => UserInfo::service_account("kube-system", "coredns"),
        crate::metrics_server::COMPONENT
        | crate::servicelb::COMPONENT
        | crate::ingress::COMPONENT
        | crate::provisioner::COMPONENT => UserInfo::service_account("kube-system", component),
        _ => UserInfo::new("kubernetes-admin", &[MASTERS]),
    }
}

tokio::task_local! {
    /// The user a request is served for, while it is.
    static REQUESTER: Arc<UserInfo>;
}

/// Runs `serving` as `user`'s request: what [`requester`] answers inside it.
pub(crate) async fn serve_as<F: std::future::Future>(user: Arc<UserInfo>, serving: F) -> F::Output {
    REQUESTER.scope(user, serving).await
}

/// The user whose request is being served (`None`: the API server's own work, such as
/// creating the system namespaces).
pub(crate) fn requester() -> Option<Arc<UserInfo>> {
    REQUESTER.try_with(Arc::clone).ok()
}

/// What a request asks to do, as `authorizer.Attributes` has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, ... for resources; the lowercase method for paths.
    pub verb: String,
    /// Whether it is about a resource (else a path).
    pub resource_request: bool,
    /// The namespace (empty: cluster-scoped, or all namespaces).
    pub namespace: String,
    /// The API group (`""`: the core group).
    pub api_group: String,
    /// The resource's plural name.
    pub resource: String,
    /// The subresource, if any.
    pub subresource: String,
    /// The object's name, if the request names one.
    pub name: String,
    /// The path, for a non-resource request.
    pub path: String,
}

impl Attributes {
    /// A request on a resource.
    pub fn resource(verb: &str, api_group: &str, resource: &str, namespace: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            namespace: namespace.into(),
            api_group: api_group.into(),
            resource: resource.into(),
            ..Attributes::default()
        }
    }

    /// The same, naming an object.
    pub fn named(mut self, name: &str) -> Attributes {
        self.name = name.into();
        self
    }

    /// `pods/exec`, or `pods`.
    pub(crate) fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// The attributes of one HTTP request (`None`: nothing to authorize, such as a path that
    /// does not exist being a 404 to everyone allowed to ask).
    pub(crate) fn of(method: &http::Method, path: &str, query: &str, route: &Route) -> Attributes {
        let lower = method.as_str().to_ascii_lowercase();
        let resource_verb = |named: bool| -> String {
            match *method {
                http::Method::GET | http::Method::HEAD if named => "get".into(),
                http::Method::GET | http::Method::HEAD => {
                    let params = crate::apimachinery::params::parse(query);
                    if crate::apimachinery::params::flag(&params, "watch") {
                        "watch".into()
                    } else {
                        "list".into()
                    }
                }
                http::Method::POST => "create".into(),
                http::Method::PUT => "update".into(),
                http::Method::PATCH => "patch".into(),
                http::Method::DELETE if named => "delete".into(),
                http::Method::DELETE => "deletecollection".into(),
                _ => lower.clone(),
            }
        };
        match route {
            Route::Resource(target) => {
                let r = target.resource;
                let named = target.name.is_some();
                let subresource = target.subresource.clone().unwrap_or_default();
                let verb = resource_verb(named);
                // A list or watch of one object names it (`RequestInfoFactory`): a field selector
                // requiring `metadata.name`, if the name could be a path segment.
                let name = match &target.name {
                    Some(name) => name.clone(),
                    None if verb == "list" || verb == "watch" => selected_name(query),
                    None => String::new(),
                };
                Attributes {
                    verb,
                    resource_request: true,
                    // A namespace names itself: its objects' namespace is the namespace.
                    namespace: if r.kind == "Namespace" {
                        target.name.clone().unwrap_or_default()
                    } else {
                        target.namespace.clone().unwrap_or_default()
                    },
                    api_group: r.group.into(),
                    resource: r.plural.into(),
                    subresource,
                    name,
                    path: path.into(),
                }
            }
            Route::Metrics(target) => {
                use super::metrics::Target;
                let (resource, namespace, name) = match target {
                    Target::Nodes(name) => ("nodes", None, name.clone()),
                    Target::Pods(namespace, name) => ("pods", namespace.clone(), name.clone()),
                };
                Attributes {
                    verb: resource_verb(name.is_some()),
                    resource_request: true,
                    namespace: namespace.unwrap_or_default(),
                    api_group: "metrics.k8s.io".into(),
                    resource: resource.into(),
                    name: name.unwrap_or_default(),
                    path: path.into(),
                    ..Attributes::default()
                }
            }
            _ => Attributes {
                verb: lower,
                resource_request: false,
                path: path.into(),
                ..Attributes::default()
            },
        }
    }

    /// `responsewriters.forbiddenMessage`: whom, what verb, on what.
    pub(crate) fn forbidden_message(&self, user: &str) -> String {
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let resource = self.combined_resource();
        if self.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                self.verb, self.api_group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                self.verb, self.api_group, self.namespace
            )
        }
    }

    /// The 403 for a refusal, with the authorizer's reason after the message when it has one.
    pub(crate) fn forbidden(&self, user: &UserInfo, reason: &str) -> ApiError {
        let mut detail = self.forbidden_message(&user.name);
        if !reason.is_empty() {
            detail = format!("{detail}: {reason}");
        }
        let resource = if !self.resource_request {
            String::new()
        } else if self.api_group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.api_group)
        };
        ApiError::Forbidden {
            resource,
            name: self.name.clone(),
            detail,
        }
    }
}

/// The name a list's `fieldSelector` requires (`metadata.name=x` or `==x`, among any other
/// terms), if it is a valid path segment name; else empty.
fn selected_name(query: &str) -> String {
    let params = crate::apimachinery::params::parse(query);
    let Some(selector) = params.get("fieldSelector") else {
        return String::new();
    };
    let name = selector.split(',').find_map(|term| {
        let (field, value) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(field, _)| !field.ends_with('!'))?;
        (field.trim() == "metadata.name").then(|| value.trim())
    });
    match name {
        Some(name) if !matches!(name, "" | "." | "..") && !name.contains(['/', '%']) => {
            name.to_owned()
        }
        _ => String::new(),
    }
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Why: the binding and role that allowed it, or what was missing.
    pub reason: String,
}

/// The longest a kubelet's request for which the graph finds no relationship waits, before it
/// is refused, for the graph to have every pod and volume write this server made: a pod just
/// bound to the kubelet's node is then in it.
const GRAPH_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(3);

/// Authorization: kube-apiserver's `--authorization-mode=Node,RBAC`, after the always-allowed
/// `system:masters` group.
pub struct Authorizer {
    rbac: rbac::Rbac,
    graph: follow::Following<graph::NodeGraph>,
}

impl Authorizer {
    pub(crate) fn new() -> Authorizer {
        Authorizer {
            rbac: rbac::Rbac::default(),
            graph: follow::Following::default(),
        }
    }

    pub(crate) fn rbac(&self) -> &rbac::Rbac {
        &self.rbac
    }

    /// Notes that this API server wrote an object of `kind` at `revision`: the RBAC rules and
    /// the Node authorizer's graph may then wait until they have it.
    pub(crate) fn written(&self, kind: &str, revision: crate::store::Revision) {
        self.rbac.written(kind, revision);
        self.graph.written(kind, revision);
    }

    /// May `user` do `attributes`? Each authorizer in turn (upstream's union authorizer): the
    /// first to allow decides; a refusal gives every reason, one per line.
    pub async fn authorize(
        &self,
        store: &Arc<dyn crate::store::Store>,
        user: &UserInfo,
        attributes: &Attributes,
    ) -> Decision {
        if user.in_group(MASTERS) {
            return Decision {
                allowed: true,
                reason: format!("allowed as a member of {MASTERS:?}"),
            };
        }
        let rules = self.rbac.rules(store).await;
        let mut reasons = Vec::new();
        if let Some(node) = user.node() {
            let role = rules
                .cluster_role_rules(policy::NODE_ROLE)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let graph = self.graph.state(store).await;
            let mut verdict = node::authorize(role, &graph.read(), node, attributes);
            if let node::Verdict::NoOpinion {
                unrelated: true, ..
            } = verdict
            {
                self.graph.caught_up(store, GRAPH_CATCH_UP).await;
                verdict = node::authorize(role, &graph.read(), node, attributes);
            }
            match verdict {
                node::Verdict::Allow => {
                    return Decision {
                        allowed: true,
                        reason: format!("allowed by the Node authorizer to node {node:?}"),
                    };
                }
                node::Verdict::NoOpinion { reason, .. } => reasons.push(reason),
            }
        }
        let mut decision = rules.authorize(user, attributes);
        if !decision.allowed {
            reasons.push(std::mem::take(&mut decision.reason));
            reasons.retain(|r| !r.is_empty());
            decision.reason = reasons.join("\n");
        }
        decision
    }
}

/// Applies `Impersonate-*` headers: the requester must be allowed to `impersonate` each user,
/// group, uid and extra it names, and the request then runs as that user.
pub(crate) async fn impersonate(
    api: &super::ApiServer,
    requester: UserInfo,
    headers: &http::HeaderMap,
) -> Result<UserInfo, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    };
    let users = values("impersonate-user");
    let groups = values("impersonate-group");
    let uids = values("impersonate-uid");
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-")
            && let Ok(value) = value.to_str()
        {
            let key = percent_decode(key);
            extra.entry(key).or_default().push(value.to_owned());
        }
    }
    if users.is_empty() {
        if groups.is_empty() && uids.is_empty() && extra.is_empty() {
            return Ok(requester);
        }
        return Err(ApiError::BadRequest(
            "requested [] without impersonating a user".into(),
        ));
    }
    let store = api.store_arc();
    let check = async |attributes: Attributes| -> Result<(), ApiError> {
        let decision = api
            .authorizer()
            .authorize(&store, &requester, &attributes)
            .await;
        if decision.allowed {
            Ok(())
        } else {
            Err(attributes.forbidden(&requester, &decision.reason))
        }
    };
    let user_name = users[0].clone();
    let mut impersonated = match user_name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((namespace, name)) => {
            check(
                Attributes::resource("impersonate", "", "serviceaccounts", namespace).named(name),
            )
            .await?;
            let mut user = UserInfo::service_account(namespace, name);
            if !groups.is_empty() {
                user.groups.clear();
            }
            user
        }
        None => {
            check(Attributes::resource("impersonate", "", "users", "").named(&user_name)).await?;
            UserInfo {
                name: user_name.clone(),
                ..UserInfo::default()
            }
        }
    };
    for group in &groups {
        check(Attributes::resource("impersonate", "", "groups", "").named(group)).await?;
        if !impersonated.in_group(group) {
            impersonated.groups.push(group.clone());
        }
    }
    for uid in &uids {
        check(Attributes::resource("impersonate", "authentication.k8s.io", "uids", "").named(uid))
            .await?;
        impersonated.uid = uid.clone();
    }
    for (key, values) in &extra {
        for value in values {
            let mut attributes =
                Attributes::resource("impersonate", "authentication.k8s.io", "userextras", "")
                    .named(value);
            attributes.subresource = key.clone();
            check(attributes).await?;
        }
    }
    impersonated.extra = extra;
    if impersonated.name == ANONYMOUS {
        if !impersonated.in_group(UNAUTHENTICATED) {
            impersonated.groups.push(UNAUTHENTICATED.into());
        }
    } else {
        impersonated.add_authenticated();
    }
    Ok(impersonated)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_messages_read_as_upstream() {
        let a = Attributes::resource("list", "", "pods", "default");
        let alice = UserInfo::new("alice", &[]);
        assert_eq!(
            a.forbidden(&alice, "").to_string(),
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let mut a = Attributes::resource("create", "apps", "deployments", "").named("web");
        a.subresource = "scale".into();
        assert_eq!(
            a.forbidden(&alice, "").to_string(),
            "deployments.apps \"web\" is forbidden: User \"alice\" cannot create resource \"deployments/scale\" in API group \"apps\" at the cluster scope"
        );
        let path = Attributes {
            verb: "get".into(),
            path: "/api".into(),
            ..Attributes::default()
        };
        assert_eq!(
            path.forbidden(&alice, "").to_string(),
            "forbidden: User \"alice\" cannot get path \"/api\""
        );
    }

    #[test]
    fn a_list_of_one_object_names_it() {
        let of = |method: http::Method, path: &str, query: &str| {
            let a = Attributes::of(&method, path, query, &crate::apiserver::path::route(path));
            (a.verb, a.name)
        };
        let secrets = "/api/v1/namespaces/default/secrets";
        let named = |verb: &str, name: &str| (verb.to_owned(), name.to_owned());
        assert_eq!(
            of(
                http::Method::GET,
                secrets,
                "fieldSelector=metadata.name%3Ddb"
            ),
            named("list", "db")
        );
        assert_eq!(
            of(
                http::Method::GET,
                secrets,
                "watch=1&fieldSelector=type%3Dx,metadata.name%3D%3Ddb"
            ),
            named("watch", "db")
        );
        for query in [
            "",
            "fieldSelector=metadata.name%21%3Ddb",
            "fieldSelector=metadata.namespace%3Ddb",
            "fieldSelector=metadata.name%3D..",
        ] {
            assert_eq!(
                of(http::Method::GET, secrets, query),
                named("list", ""),
                "{query}"
            );
        }
        assert_eq!(
            of(http::Method::GET, &format!("{secrets}/db"), ""),
            named("get", "db")
        );
    }

    #[tokio::test]
    async fn a_kubelet_reads_what_a_pod_just_bound_to_its_node_uses_until_the_pod_goes() {
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::embedded::EmbeddedStore::open(&dir.path().join("store.redb")).unwrap(),
        );
        let authorizer = Authorizer::new();
        let kubelet = component_user("kubelet/node-1");
        let get = Attributes::resource("get", "", "secrets", "default").named("db");
        let refused = authorizer.authorize(&store, &kubelet, &get).await;
        assert!(!refused.allowed);
        assert_eq!(
            refused.reason,
            "no relationship found between node 'node-1' and this object"
        );

        let pod = serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": "node-1", "volumes": [{"name": "s", "secret": {"secretName": "db"}}]},
        });
        let key = "/registry/pods/default/web";
        let created = store
            .create(key, serde_json::to_vec(&pod).unwrap().into())
            .await
            .unwrap();
        // Asked at once: the decision waits for the graph to have the pod.
        authorizer.written("Pod", created);
        assert!(authorizer.authorize(&store, &kubelet, &get).await.allowed);
        let other = component_user("kubelet/node-2");
        assert!(!authorizer.authorize(&store, &other, &get).await.allowed);

        let deleted = store.delete(key, created).await.unwrap();
        authorizer.written("Pod", deleted);
        authorizer
            .graph
            .caught_up(&store, std::time::Duration::from_secs(60))
            .await;
        assert!(!authorizer.authorize(&store, &kubelet, &get).await.allowed);
    }

    #[test]
    fn users_of_components() {
        assert_eq!(component_user("kubelet/node-1").node(), Some("node-1"));
        assert_eq!(
            component_user("controller/deployment").name,
            "system:serviceaccount:kube-system:deployment-controller"
        );
        assert!(component_user("dashboard").in_group(MASTERS));
        assert_eq!(percent_decode("a%2Fb"), "a/b");
    }
}
