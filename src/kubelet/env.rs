//! A container's environment as the real kubelet builds it (`makeEnvironmentVariables`): the
//! Service links (`KUBERNETES_SERVICE_HOST`, ...), then `envFrom` (ConfigMaps and Secrets, with
//! `prefix` and `optional`), then `env` (`value` with `$(VAR)` expansion, or `valueFrom`:
//! `configMapKeyRef`, `secretKeyRef`, `fieldRef`, `resourceFieldRef`); and the `$(VAR)`
//! expansion of `command` and `args` against the result.
//!
//! [`Sources::fetch`] reads what a pod's containers refer to from the API server; [`resolve`]
//! is pure, so the rules are tested without a cluster.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::{Api, ListParams};

/// Why a container's environment cannot be built: the kubelet reports it as
/// `CreateContainerConfigError` and tries again on its next sync.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum EnvError {
    /// A ConfigMap that is not optional does not exist.
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    /// A Secret that is not optional does not exist.
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    /// A key that is not optional is missing from a ConfigMap.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        /// The key.
        key: String,
        /// The ConfigMap's namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A key that is not optional is missing from a Secret.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        /// The key.
        key: String,
        /// The Secret's namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A `fieldRef` the kubelet does not know.
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    /// A `resourceFieldRef` the kubelet does not know, or an unreadable quantity.
    #[error("unsupported container resource : {0}")]
    Resource(String),
    /// The API server could not be asked.
    #[error("{0}")]
    Api(String),
}

/// What a pod's environments may refer to, read once per start attempt.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    /// ConfigMaps by name; `None` when the API server has none by that name.
    pub(crate) config_maps: HashMap<String, Option<ConfigMap>>,
    /// Secrets by name; `None` when absent.
    pub(crate) secrets: HashMap<String, Option<Secret>>,
    /// The Service link variables (`KUBERNETES_SERVICE_HOST`, ...), in order.
    pub(crate) services: Vec<(String, String)>,
    /// The volumes of the claims the pod's volumes name, by claim name (see
    /// [`super::volumes::resolve_claims`]).
    pub(crate) claims: HashMap<String, super::volumes::ClaimVolume>,
    /// Service account tokens of projected volumes, by `<volume>/<path>` (see
    /// [`super::volumes::tokens`]).
    pub(crate) tokens: HashMap<String, Vec<u8>>,
}

impl Sources {
    /// Reads every ConfigMap and Secret the pod's containers and volumes refer to; with
    /// `services`, also the Services whose links the pod gets: the `kubernetes` Service in
    /// `default` always, the pod's namespace's Services when `enableServiceLinks` is unset or
    /// true, as upstream.
    pub(crate) async fn fetch(
        client: &kube::Client,
        pod: &Pod,
        services: bool,
    ) -> Result<Sources, EnvError> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api = |e: kube::Error| EnvError::Api(e.to_string());
        let (mut maps, mut secrets) = (Vec::new(), Vec::new());
        let spec = pod.spec.as_ref();
        let containers = spec
            .into_iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers));
        for c in containers {
            for from in c.env_from.iter().flatten() {
                if let Some(r) = &from.config_map_ref {
                    maps.push(r.name.clone());
                }
                if let Some(r) = &from.secret_ref {
                    secrets.push(r.name.clone());
                }
            }
            for e in c.env.iter().flatten() {
                let Some(from) = &e.value_from else { continue };
                if let Some(r) = &from.config_map_key_ref {
                    maps.push(r.name.clone());
                }
                if let Some(r) = &from.secret_key_ref {
                    secrets.push(r.name.clone());
                }
            }
        }
        for v in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
            if let Some(c) = &v.config_map {
                maps.push(c.name.clone());
            }
            if let Some(s) = &v.secret {
                secrets.push(s.secret_name.clone().unwrap_or_default());
            }
            for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
                if let Some(c) = &source.config_map {
                    maps.push(c.name.clone());
                }
                if let Some(s) = &source.secret {
                    secrets.push(s.name.clone());
                }
            }
        }
        let mut sources = Sources::default();
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        for name in maps {
            if let std::collections::hash_map::Entry::Vacant(slot) = sources.config_maps.entry(name)
            {
                let found = config_maps.get_opt(slot.key()).await.map_err(api)?;
                slot.insert(found);
            }
        }
        let secret_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for name in secrets {
            if let std::collections::hash_map::Entry::Vacant(slot) = sources.secrets.entry(name) {
                let found = secret_api.get_opt(slot.key()).await.map_err(api)?;
                slot.insert(found);
            }
        }
        if !services {
            return Ok(sources);
        }
        let mut services = Vec::new();
        let master: Api<Service> = Api::namespaced(client.clone(), "default");
        if let Some(kubernetes) = master.get_opt("kubernetes").await.map_err(api)? {
            services.push(kubernetes);
        }
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        if links {
            let here: Api<Service> = Api::namespaced(client.clone(), namespace);
            let listed = here.list(&ListParams::default()).await.map_err(api)?;
            services.extend(listed.items.into_iter().filter(|s| {
                !(namespace == "default" && s.metadata.name.as_deref() == Some("kubernetes"))
            }));
        }
        sources.services = service_links(&services);
        Ok(sources)
    }
}

/// Docker-link style variables for each Service with a cluster IP (upstream's
/// `envvars.FromServices`).
pub(crate) fn service_links(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let Some(ip) = spec.cluster_ip.as_deref() else {
            continue;
        };
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = service
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .to_uppercase()
            .replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.push((format!("{name}_SERVICE_HOST"), ip.to_owned()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in ports {
            if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{name}_SERVICE_PORT_{}",
                        port_name.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.as_deref().unwrap_or("TCP").to_owned()
        };
        out.push((
            format!("{name}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in ports {
            let prefix = format!("{name}_PORT_{}_{}", p.port, proto(p).to_uppercase());
            out.push((
                prefix.clone(),
                format!("{}://{ip}:{}", proto(p).to_lowercase(), p.port),
            ));
            out.push((format!("{prefix}_PROTO"), proto(p).to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_owned()));
        }
    }
    out
}

/// What the node knows that `fieldRef` and `resourceFieldRef` may read.
#[derive(Clone, Debug)]
pub(crate) struct NodeFacts {
    /// The node's IP (`status.hostIP`).
    pub(crate) host_ip: String,
    /// The pod's IP, once its sandbox has one.
    pub(crate) pod_ip: String,
    /// The node's allocatable CPU, for limits the container does not set.
    pub(crate) cpu: String,
    /// The node's allocatable memory.
    pub(crate) memory: String,
}

/// An ordered set of variables, the later value of a name replacing the earlier in place.
#[derive(Default)]
struct Vars {
    order: Vec<String>,
    values: HashMap<String, String>,
}

impl Vars {
    fn set(&mut self, name: String, value: String) {
        if !self.values.contains_key(&name) {
            self.order.push(name.clone());
        }
        self.values.insert(name, value);
    }
}

/// The container's environment, in the order the container sees it: `envFrom`, then `env`,
/// then the Service links the pod's own variables do not shadow.
pub(crate) fn resolve(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    node: &NodeFacts,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let service: HashMap<&str, &str> = sources
        .services
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut vars = Vars::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name).and_then(Option::as_ref) {
                Some(map) => {
                    for (k, v) in map.data.iter().flatten() {
                        vars.set(format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name).and_then(Option::as_ref) {
                Some(secret) => {
                    for (k, v) in secret.data.iter().flatten() {
                        vars.set(
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) if !v.is_empty() => {
                let lookup = |name: &str| {
                    vars.values
                        .get(name)
                        .map(String::as_str)
                        .or_else(|| service.get(name).copied())
                        .map(str::to_owned)
                };
                expand(v, lookup)
            }
            (_, Some(from)) => {
                if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    match sources.config_maps.get(&r.name).and_then(Option::as_ref) {
                        None if optional => continue,
                        None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
                        Some(map) => match map.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => v.clone(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError::ConfigMapKey {
                                    key: r.key.clone(),
                                    namespace: namespace.to_owned(),
                                    name: r.name.clone(),
                                });
                            }
                        },
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    match sources.secrets.get(&r.name).and_then(Option::as_ref) {
                        None if optional => continue,
                        None => return Err(EnvError::SecretNotFound(r.name.clone())),
                        Some(secret) => match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError::SecretKey {
                                    key: r.key.clone(),
                                    namespace: namespace.to_owned(),
                                    name: r.name.clone(),
                                });
                            }
                        },
                    }
                } else if let Some(r) = &from.field_ref {
                    field_value(pod, &r.field_path, node)?
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                        Some(other) => pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.containers.iter().find(|c| c.name == other))
                            .unwrap_or(container),
                        None => container,
                    };
                    let divisor = r.divisor.as_ref().map_or("1", |d| d.0.as_str());
                    resource_value(target, &r.resource, divisor, node)?
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        vars.set(e.name.clone(), value);
    }
    let mut out: Vec<(String, String)> = vars
        .order
        .iter()
        .map(|k| (k.clone(), vars.values[k].clone()))
        .collect();
    for (k, v) in &sources.services {
        if !vars.values.contains_key(k) {
            out.push((k.clone(), v.clone()));
        }
    }
    Ok(out)
}

/// A `fieldRef` as the kubelet reads it (`podFieldSelectorRuntimeValue` and
/// `ExtractFieldPathAsString`).
pub(crate) fn field_value(pod: &Pod, path: &str, node: &NodeFacts) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
        Some(rest.strip_suffix("']")?.to_owned())
    };
    let map_text = |m: Option<&BTreeMap<String, String>>| {
        m.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_text(meta.labels.as_ref()),
        "metadata.annotations" => map_text(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => node.host_ip.clone(),
        "status.podIP" | "status.podIPs" => node.pod_ip.clone(),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else {
                return Err(EnvError::FieldPath(path.to_owned()));
            }
        }
    })
}

/// A `resourceFieldRef` (`limits.cpu`, `requests.memory`, ...) divided by `divisor` and rounded
/// up, as upstream; an unset limit reads as the node's allocatable.
pub(crate) fn resource_value(
    container: &Container,
    resource: &str,
    divisor: &str,
    node: &NodeFacts,
) -> Result<String, EnvError> {
    use crate::apimachinery::quantity;
    let bad = || EnvError::Resource(resource.to_owned());
    let resources = container.resources.as_ref();
    let get = |which: &str, name: &str| -> Option<String> {
        let list = match which {
            "limits" => resources.and_then(|r| r.limits.as_ref()),
            _ => resources.and_then(|r| r.requests.as_ref()),
        };
        list.and_then(|l| l.get(name)).map(|q| q.0.clone())
    };
    let (which, name) = resource.split_once('.').ok_or_else(bad)?;
    let text = match (which, name) {
        ("limits", "cpu") => get("limits", "cpu").unwrap_or_else(|| node.cpu.clone()),
        ("limits", "memory") => get("limits", "memory").unwrap_or_else(|| node.memory.clone()),
        ("requests", "cpu" | "memory") => get("requests", name).unwrap_or_else(|| "0".into()),
        _ => return Err(bad()),
    };
    let value = quantity::parse_milli(&text).map_err(|_| bad())?;
    let divisor = quantity::parse_milli(divisor).map_err(|_| bad())?;
    if divisor <= 0 {
        return Err(bad());
    }
    // Memory is counted in whole bytes before dividing; CPU in millicores.
    let (value, divisor) = if name == "memory" {
        ((value + 999) / 1000 * 1000, (divisor + 999) / 1000 * 1000)
    } else {
        (value, divisor)
    };
    Ok(((value + divisor - 1) / divisor).to_string())
}

/// Upstream's `$(VAR)` expansion: `$(NAME)` becomes the variable's value, or stays as written
/// when there is none; `$$` is a literal `$`; any other `$` is kept.
pub(crate) fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let (mut cursor, mut checkpoint) = (0, 0);
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(end) => {
                        let name = &rest[1..end];
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        end + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // Keep `$` and the character after it (which may be several bytes).
                    let ch = rest.chars().next().expect("not empty");
                    out.push('$');
                    out.push(ch);
                    ch.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

/// `command` and `args` with `$(VAR)` expanded against the container's environment.
pub(crate) fn expand_all(words: &[String], env: &[(String, String)]) -> Vec<String> {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    words
        .iter()
        .map(|w| expand(w, |name| map.get(name).map(|v| (*v).to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"}, "annotations": {"note": "hi"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "default",
                "containers": [{"name": "c", "image": "busybox",
                    "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}}]},
        }))
        .unwrap()
    }

    fn node() -> NodeFacts {
        NodeFacts {
            host_ip: "127.0.0.1".into(),
            pod_ip: "10.244.1.7".into(),
            cpu: "4".into(),
            memory: "8Gi".into(),
        }
    }

    fn sources() -> Sources {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "settings"}, "data": {"mode": "fast", "level": "3"}}),
        )
        .unwrap();
        let secret: Secret = serde_json::from_value(
            json!({"metadata": {"name": "creds"}, "data": {"password": "c2VjcmV0"}}),
        )
        .unwrap();
        Sources {
            config_maps: [("settings".into(), Some(cm)), ("gone".into(), None)].into(),
            secrets: [("creds".into(), Some(secret)), ("nosecret".into(), None)].into(),
            services: vec![("KUBERNETES_SERVICE_HOST".into(), "10.96.0.1".into())],
            claims: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    fn check(env: serde_json::Value) -> Result<Vec<(String, String)>, EnvError> {
        let mut c = pod().spec.unwrap().containers[0].clone();
        let extra: Container = serde_json::from_value(
            json!({"name": "c", "env": env["env"], "envFrom": env["envFrom"]}),
        )
        .unwrap();
        c.env = extra.env;
        c.env_from = extra.env_from;
        resolve(&pod(), &c, &sources(), &node())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn field_paths() {
        let cases = [
            ("metadata.name", "web"),
            ("metadata.namespace", "shop"),
            ("metadata.uid", "u-1"),
            ("metadata.labels['tier']", "front"),
            ("metadata.labels['missing']", ""),
            ("metadata.annotations['note']", "hi"),
            ("metadata.labels", "app=\"web\"\ntier=\"front\""),
            ("spec.nodeName", "node-1"),
            ("spec.serviceAccountName", "default"),
            ("status.hostIP", "127.0.0.1"),
            ("status.podIP", "10.244.1.7"),
            ("status.podIPs", "10.244.1.7"),
        ];
        for (path, want) in cases {
            assert_eq!(field_value(&pod(), path, &node()).unwrap(), want, "{path}");
        }
        assert_eq!(
            field_value(&pod(), "spec.hostname", &node()),
            Err(EnvError::FieldPath("spec.hostname".into()))
        );
    }

    #[test]
    fn resource_fields_divide_and_round_up() {
        let c = pod().spec.unwrap().containers[0].clone();
        let cases = [
            ("limits.cpu", "1", "1"),
            ("limits.cpu", "1m", "500"),
            ("requests.cpu", "100m", "3"),
            ("limits.memory", "1Mi", "64"),
            ("limits.memory", "1", "67108864"),
            ("requests.memory", "1", "0"),
        ];
        for (resource, divisor, want) in cases {
            assert_eq!(
                resource_value(&c, resource, divisor, &node()).unwrap(),
                want,
                "{resource}/{divisor}"
            );
        }
        let bare = Container {
            name: "b".into(),
            ..Default::default()
        };
        assert_eq!(
            resource_value(&bare, "limits.cpu", "1m", &node()).unwrap(),
            "4000"
        );
        assert!(resource_value(&c, "limits.gpu", "1", &node()).is_err());
    }

    #[test]
    fn expansion_follows_upstream() {
        let vars: HashMap<&str, &str> = [("A", "x"), ("B", "y")].into();
        let look = |n: &str| vars.get(n).map(|v| (*v).to_owned());
        let cases = [
            ("$(A)-$(B)", "x-y"),
            ("$(C)", "$(C)"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$x"),
            ("a$b", "a$b"),
            ("end$", "end$"),
            ("$(A", "$(A"),
            ("$()", "$()"),
            ("plain", "plain"),
            ("€$(A)€", "€x€"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, look), want, "{input}");
        }
    }

    #[test]
    fn env_values_and_references() {
        let got = check(json!({"env": [
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "GREETING", "value": "$(POD) in $(MODE) via $(KUBERNETES_SERVICE_HOST) $(NOPE)"},
            {"name": "EMPTY"},
        ]}))
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("MODE", "fast"),
                ("PW", "secret"),
                ("POD", "web"),
                ("GREETING", "web in fast via 10.96.0.1 $(NOPE)"),
                ("EMPTY", ""),
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ])
        );
    }

    #[test]
    fn env_from_with_prefix_and_override() {
        let got = check(json!({
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                        {"secretRef": {"name": "nosecret", "optional": true}}],
            "env": [{"name": "CFG_mode", "value": "slow"},
                    {"name": "KUBERNETES_SERVICE_HOST", "value": "mine"}],
        }))
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("CFG_level", "3"),
                ("CFG_mode", "slow"),
                ("KUBERNETES_SERVICE_HOST", "mine")
            ])
        );
    }

    #[test]
    fn missing_references() {
        let cases = [
            (
                json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]}),
                Err(EnvError::ConfigMapNotFound("gone".into())),
            ),
            (
                json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}}]}),
                Ok(1),
            ),
            (
                json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]}),
                Err(EnvError::ConfigMapKey {
                    key: "k".into(),
                    namespace: "shop".into(),
                    name: "settings".into(),
                }),
            ),
            (
                json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k", "optional": true}}}]}),
                Ok(1),
            ),
            (
                json!({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nosecret", "key": "k"}}}]}),
                Err(EnvError::SecretNotFound("nosecret".into())),
            ),
            (
                json!({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]}),
                Err(EnvError::SecretKey {
                    key: "k".into(),
                    namespace: "shop".into(),
                    name: "creds".into(),
                }),
            ),
            (
                json!({"envFrom": [{"configMapRef": {"name": "gone"}}]}),
                Err(EnvError::ConfigMapNotFound("gone".into())),
            ),
        ];
        for (env, want) in cases {
            let got = check(env.clone()).map(|v| v.len());
            assert_eq!(got, want, "{env}");
        }
        assert_eq!(
            EnvError::ConfigMapKey {
                key: "k".into(),
                namespace: "ns".into(),
                name: "x".into()
            }
            .to_string(),
            "couldn't find key k in ConfigMap ns/x"
        );
    }

    #[test]
    fn command_expansion_and_service_links() {
        let env = pairs(&[("NAME", "web")]);
        assert_eq!(
            expand_all(&["echo".into(), "$(NAME) $$(NAME)".into()], &env),
            vec!["echo", "web $(NAME)"]
        );
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "my-db"},
            "spec": {"clusterIP": "10.96.3.4", "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}]},
        }))
        .unwrap();
        let links = service_links(&[svc]);
        let find = |k: &str| links.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(find("MY_DB_SERVICE_HOST"), Some("10.96.3.4"));
        assert_eq!(find("MY_DB_SERVICE_PORT"), Some("5432"));
        assert_eq!(find("MY_DB_SERVICE_PORT_SQL"), Some("5432"));
        assert_eq!(find("MY_DB_PORT"), Some("tcp://10.96.3.4:5432"));
        assert_eq!(find("MY_DB_PORT_5432_TCP_PROTO"), Some("tcp"));
        assert_eq!(find("MY_DB_PORT_5432_TCP_ADDR"), Some("10.96.3.4"));
    }
}
