//! What the kubelet hands the runtime for one container, from the pod spec: the
//! `securityContext` (the container's over the pod's) as [`Security`], `resources` as
//! [`Resources`], its declared TCP ports, upstream's `runAsNonRoot` check, and the termination message read back after
//! the container ends (`terminationMessagePath`, `FallbackToLogsOnError`).

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::apimachinery::quantity;
use crate::runtime::{LogLine, Resources, SeccompProfile, Security};

/// Why the container's config cannot be made (a `CreateContainerConfigError`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ConfigError {
    /// `runAsNonRoot` with `runAsUser: 0`.
    #[error(
        "container's runAsUser breaks non-root policy (pod: \"{pod}\", container: {container})"
    )]
    RunAsRoot {
        /// The pod, as `name_namespace(uid)`.
        pod: String,
        /// The container.
        container: String,
    },
    /// `runAsNonRoot` without a `runAsUser`: the image's user is not known to be non-root.
    #[error(
        "container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {container})"
    )]
    ImageRoot {
        /// The pod, as `name_namespace(uid)`.
        pod: String,
        /// The container.
        container: String,
    },
    /// `seccompProfile.type: Localhost` without a `localhostProfile`.
    #[error("localhostProfile must be set when seccomp profile type is Localhost")]
    LocalhostProfile,
    /// A `seccompProfile.type` Kubernetes does not have.
    #[error("unsupported seccomp profile type {0:?}")]
    SeccompType(String),
    /// `hostNetwork`, `hostPID` or `hostIPC`: refused, as a virtual node has no host
    /// namespaces of its own (every node shares the one machine's kernel).
    #[error(
        "{0} is not supported: Orrery's nodes are virtual and share one machine, so a pod cannot have its node's own host namespaces"
    )]
    HostNamespace(&'static str),
    /// A quantity in `resources` that cannot be read.
    #[error("invalid resource quantity {0:?}")]
    Quantity(String),
}

/// The container's security settings, the container's `securityContext` over the pod's.
/// `runAsNonRoot` is checked against the user the container will run as; an image's own user
/// is not known to the kubelet, so without `runAsUser` it is taken to be root, as upstream does
/// for an image that names no user.
///
/// `seccompProfile` (the container's over the pod's) is unconfined when unset, as in
/// Kubernetes; a `Localhost` profile names a file under `seccomp_root` (the kubelet's
/// `<root>/seccomp`).
pub(crate) fn security(
    pod: &Pod,
    c: &Container,
    seccomp_root: &Path,
) -> Result<Security, ConfigError> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|s| s.run_as_group));
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_sc.and_then(|s| s.run_as_non_root))
        == Some(true);
    if non_root {
        let who = || {
            (
                format!(
                    "{}_{}({})",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.uid.as_deref().unwrap_or_default()
                ),
                c.name.clone(),
            )
        };
        match run_as_user {
            Some(0) => {
                let (pod, container) = who();
                return Err(ConfigError::RunAsRoot { pod, container });
            }
            None => {
                let (pod, container) = who();
                return Err(ConfigError::ImageRoot { pod, container });
            }
            Some(_) => {}
        }
    }
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let profile = sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod_sc.and_then(|s| s.seccomp_profile.as_ref()));
    let seccomp = match profile {
        None => SeccompProfile::Unconfined,
        Some(p) => match p.type_.as_str() {
            "Unconfined" => SeccompProfile::Unconfined,
            "RuntimeDefault" => SeccompProfile::RuntimeDefault,
            "Localhost" => match p.localhost_profile.as_deref().filter(|l| !l.is_empty()) {
                Some(name) => SeccompProfile::Localhost(seccomp_root.join(name)),
                None => return Err(ConfigError::LocalhostProfile),
            },
            other => return Err(ConfigError::SeccompType(other.to_owned())),
        },
    };
    Ok(Security {
        run_as_user: run_as_user.and_then(|u| u32::try_from(u).ok()),
        run_as_group: run_as_group.and_then(|g| u32::try_from(g).ok()),
        read_only_root: sc.and_then(|s| s.read_only_root_filesystem) == Some(true),
        privileged: sc.and_then(|s| s.privileged) == Some(true),
        add_capabilities: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        drop_capabilities: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        allow_privilege_escalation: sc.and_then(|s| s.allow_privilege_escalation),
        seccomp,
    })
}

/// Refuses a pod that asks for its node's namespaces (`hostNetwork`, `hostPID`, `hostIPC`):
/// all of Orrery's nodes share one machine, so the "host" would be the machine itself, shared
/// by every node, and its network the one the nodes' pods are routed through. Refused openly
/// (a `CreateContainerConfigError` with this message) rather than run in the pod's own
/// namespaces as if granted.
pub(crate) fn host_namespaces(pod: &Pod) -> Result<(), ConfigError> {
    let spec = pod.spec.as_ref();
    for (asked, name) in [
        (spec.and_then(|s| s.host_network), "hostNetwork"),
        (spec.and_then(|s| s.host_pid), "hostPID"),
        (spec.and_then(|s| s.host_ipc), "hostIPC"),
    ] {
        if asked == Some(true) {
            return Err(ConfigError::HostNamespace(name));
        }
    }
    Ok(())
}

/// The container's cgroup limits: `limits.memory` in bytes, `limits.cpu` and `requests.cpu`
/// in millicores, and the node's pids limit.
pub(crate) fn resources(c: &Container, pids_limit: Option<i64>) -> Result<Resources, ConfigError> {
    let r = c.resources.as_ref();
    let get = |limits: bool, name: &str| {
        let list = if limits {
            r.and_then(|r| r.limits.as_ref())
        } else {
            r.and_then(|r| r.requests.as_ref())
        };
        list.and_then(|l| l.get(name)).map(|q| q.0.clone())
    };
    let read = |text: Option<String>, cpu: bool| -> Result<Option<i64>, ConfigError> {
        text.map(|t| {
            if cpu {
                quantity::cpu_millis(&t)
            } else {
                quantity::bytes(&t)
            }
            .map_err(|_| ConfigError::Quantity(t))
        })
        .transpose()
    };
    Ok(Resources {
        memory_limit: read(get(true, "memory"), false)?,
        cpu_limit_millis: read(get(true, "cpu"), true)?,
        cpu_request_millis: read(get(false, "cpu"), true)?,
        pids_limit,
    })
}

/// The most of a termination message file the kubelet reads, as upstream.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4096;
/// The most log lines and bytes `FallbackToLogsOnError` takes.
const FALLBACK_LINES: usize = 80;
const FALLBACK_BYTES: usize = 2048;

/// A terminated container's message: the file's first 4096 bytes; or, with
/// `FallbackToLogsOnError`, an empty file and a failed exit, the last 80 lines (at most 2048
/// bytes) of its logs.
pub(crate) fn termination_message(
    file: &[u8],
    policy: Option<&str>,
    exit_code: i32,
    logs: &[LogLine],
) -> Option<String> {
    let file = &file[..file.len().min(MAX_MESSAGE_BYTES)];
    if !file.is_empty() {
        return Some(String::from_utf8_lossy(file).into_owned());
    }
    if policy != Some("FallbackToLogsOnError") || exit_code == 0 || logs.is_empty() {
        return None;
    }
    let start = logs.len().saturating_sub(FALLBACK_LINES);
    let mut text: String = logs[start..]
        .iter()
        .map(|l| format!("{}\n", l.text))
        .collect();
    if text.len() > FALLBACK_BYTES {
        let mut cut = text.len() - FALLBACK_BYTES;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text = text[cut..].to_owned();
    }
    Some(text)
}

/// The TCP `containerPort`s a container declares (`protocol` TCP, the default), in order,
/// each once.
pub(crate) fn tcp_ports(c: &Container) -> Vec<u16> {
    let mut ports = Vec::new();
    for p in c.ports.iter().flatten() {
        if p.protocol.as_deref().is_none_or(|proto| proto == "TCP")
            && let Ok(port) = u16::try_from(p.container_port)
            && port > 0
            && !ports.contains(&port)
        {
            ports.push(port);
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(
        pod_sc: serde_json::Value,
        sc: serde_json::Value,
        resources: serde_json::Value,
    ) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"securityContext": pod_sc, "containers": [{"name": "c", "securityContext": sc, "resources": resources}]},
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    #[test]
    fn security_merges_pod_and_container() {
        let (p, c) = pod(
            json!({"runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": true}),
            json!({"runAsUser": 2000, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                   "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}),
            json!({}),
        );
        assert_eq!(
            security(&p, &c, Path::new("/k/seccomp")).unwrap(),
            Security {
                run_as_user: Some(2000),
                run_as_group: Some(3000),
                read_only_root: true,
                privileged: false,
                add_capabilities: vec!["NET_ADMIN".into()],
                drop_capabilities: vec!["ALL".into()],
                allow_privilege_escalation: Some(false),
                seccomp: SeccompProfile::Unconfined,
            }
        );
        let (p, c) = pod(json!({}), json!({"privileged": true}), json!({}));
        assert!(
            security(&p, &c, Path::new("/k/seccomp"))
                .unwrap()
                .privileged
        );
    }

    #[test]
    fn seccomp_profile_container_over_pod_unconfined_by_default() {
        let root = Path::new("/k/seccomp");
        let seccomp = |pod_sc: serde_json::Value, sc: serde_json::Value| {
            let (p, c) = pod(pod_sc, sc, json!({}));
            security(&p, &c, root).map(|s| s.seccomp)
        };
        assert_eq!(
            seccomp(json!({}), json!({})),
            Ok(SeccompProfile::Unconfined)
        );
        assert_eq!(
            seccomp(
                json!({"seccompProfile": {"type": "RuntimeDefault"}}),
                json!({})
            ),
            Ok(SeccompProfile::RuntimeDefault)
        );
        assert_eq!(
            seccomp(
                json!({"seccompProfile": {"type": "RuntimeDefault"}}),
                json!({"seccompProfile": {"type": "Unconfined"}})
            ),
            Ok(SeccompProfile::Unconfined)
        );
        assert_eq!(
            seccomp(
                json!({}),
                json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"}})
            ),
            Ok(SeccompProfile::Localhost(root.join("profiles/audit.json")))
        );
        assert_eq!(
            seccomp(json!({}), json!({"seccompProfile": {"type": "Localhost"}})),
            Err(ConfigError::LocalhostProfile)
        );
    }

    #[test]
    fn host_namespaces_are_refused() {
        let with = |spec: serde_json::Value| {
            let pod: Pod = serde_json::from_value(json!({"spec": spec})).unwrap();
            host_namespaces(&pod).map_err(|e| e.to_string())
        };
        assert_eq!(with(json!({"containers": []})), Ok(()));
        assert_eq!(
            with(json!({"containers": [], "hostNetwork": false})),
            Ok(())
        );
        for field in ["hostNetwork", "hostPID", "hostIPC"] {
            let error = with(json!({"containers": [], field: true})).unwrap_err();
            assert!(
                error.starts_with(&format!("{field} is not supported: ")),
                "{error}"
            );
        }
    }

    #[test]
    fn run_as_non_root_refuses_root() {
        let (p, c) = pod(
            json!({"runAsNonRoot": true}),
            json!({"runAsUser": 0}),
            json!({}),
        );
        assert_eq!(
            security(&p, &c, Path::new("/k/seccomp"))
                .unwrap_err()
                .to_string(),
            "container's runAsUser breaks non-root policy (pod: \"p_ns(u)\", container: c)"
        );
        let (p, c) = pod(json!({}), json!({"runAsNonRoot": true}), json!({}));
        assert_eq!(
            security(&p, &c, Path::new("/k/seccomp"))
                .unwrap_err()
                .to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u)\", container: c)"
        );
        let (p, c) = pod(
            json!({"runAsNonRoot": true}),
            json!({"runAsNonRoot": false}),
            json!({}),
        );
        assert!(security(&p, &c, Path::new("/k/seccomp")).is_ok());
    }

    #[test]
    fn quantities_become_limits() {
        let (_, c) = pod(
            json!({}),
            json!({}),
            json!({"limits": {"cpu": "1500m", "memory": "128Mi"}, "requests": {"cpu": "0.25"}}),
        );
        assert_eq!(
            resources(&c, Some(4096)).unwrap(),
            Resources {
                memory_limit: Some(128 * 1024 * 1024),
                cpu_limit_millis: Some(1500),
                cpu_request_millis: Some(250),
                pids_limit: Some(4096),
            }
        );
        let (_, c) = pod(json!({}), json!({}), json!({}));
        assert_eq!(resources(&c, None).unwrap(), Resources::default());
        let (_, c) = pod(json!({}), json!({}), json!({"limits": {"memory": "1G"}}));
        assert_eq!(
            resources(&c, None).unwrap().memory_limit,
            Some(1_000_000_000)
        );
    }

    #[test]
    fn termination_messages() {
        let line = |t: &str| LogLine {
            time: jiff::Timestamp::UNIX_EPOCH,
            stream: "stdout",
            text: t.into(),
        };
        let logs: Vec<LogLine> = (0..100).map(|i| line(&format!("line {i}"))).collect();
        assert_eq!(
            termination_message(b"bye", None, 1, &logs),
            Some("bye".into())
        );
        let big = vec![b'x'; 5000];
        assert_eq!(
            termination_message(&big, Some("File"), 0, &[])
                .unwrap()
                .len(),
            4096
        );
        assert_eq!(termination_message(b"", Some("File"), 1, &logs), None);
        assert_eq!(
            termination_message(b"", Some("FallbackToLogsOnError"), 0, &logs),
            None
        );
        let fallback = termination_message(b"", Some("FallbackToLogsOnError"), 2, &logs).unwrap();
        assert!(fallback.starts_with("line 20\n"), "{fallback}");
        assert!(fallback.ends_with("line 99\n"));
        let long: Vec<LogLine> = (0..80).map(|_| line(&"y".repeat(100))).collect();
        let cut = termination_message(b"", Some("FallbackToLogsOnError"), 2, &long).unwrap();
        assert_eq!(cut.len(), 2048);
    }
}
