//! The control plane as kubeadm lays it out: a control-plane node (`<cluster>-control-plane`, as
//! kind names it) whose kubelet runs the control plane as static pods, read from manifests that
//! `kubeadm init` writes into `/etc/kubernetes/manifests`. `orrery up` plays kubeadm's part: it
//! writes one manifest per component into `<state-dir>/kubernetes/manifests` ([`write_manifests`]), and the
//! control-plane node's kubelet ([`crate::kubelet`]'s static pods) shows each as a mirror pod in
//! `kube-system`.
//!
//! The manifests are kubeadm's (labels, image, command-line flags, ports, resources, priority,
//! host network), carrying Orrery's real settings where Orrery has the setting (the API server's
//! port, the certificates under `<state-dir>/pki`, the store, the pod network, the node
//! monitor's grace period) and leaving out the flags Orrery does not honour. But no container
//! runs them: Orrery's components run inside the `orrery up` process. Each manifest says so in
//! its [`PICTURE`] annotation, and has no probes: the kubelet learns each component's state from
//! the API server's `/orrery/v1/components` instead of probing its port.
//!
//! The store's pod says what runs: `orrery-store` for the embedded store, `etcd` for an etcd
//! elsewhere (`--store etcd=URL`), and for `--store etcd-cluster=N` one `etcd-<n>` pod per
//! member, with the member's real command line: those members are real `etcd` processes (children
//! of `orrery up`, not containers), and each pod names the supervised component it follows
//! ([`MEMBER`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::apimachinery::KUBERNETES_VERSION;
use crate::complog::{Component, Instance};
use crate::store::StoreUrl;

/// The annotation that says a static pod is a picture of an in-process component.
pub const PICTURE: &str = "orrery.dev/in-process";

/// The annotation of an etcd member's static pod: the member (a supervised component, such as
/// `etcd-2`) whose state its container shows.
pub const MEMBER: &str = "orrery.dev/etcd-member";

/// The annotation of an etcd member's static pod that names the member's log file, which its
/// container's log is.
pub const MEMBER_LOG: &str = "orrery.dev/etcd-member-log";

/// One member of `--store etcd-cluster=N`, as its static pod shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdMember {
    /// `etcd-1`: the supervised component and the pod's name.
    pub name: String,
    /// Its client URL.
    pub client_url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// Its command line, `etcd` first.
    pub command: Vec<String>,
}

/// The image kubeadm 1.33 runs etcd from.
const ETCD_IMAGE: &str = "registry.k8s.io/etcd:3.5.21-0";

/// The control-plane node's name: `<cluster>-control-plane`, as kind names it.
pub fn node_name(cluster: &str) -> String {
    format!("{cluster}-control-plane")
}

/// Where `orrery up` writes the static pod manifests: `<state-dir>/kubernetes/manifests`, as
/// kubeadm's `/etc/kubernetes/manifests` (and not a bare `manifests/`, which in a project
/// directory holds the project's own manifests).
pub fn manifests_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("kubernetes").join("manifests")
}

/// Where the components' logs are kept ([`crate::complog`]).
pub fn logs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("logs")
}

/// What the manifests say about this cluster.
#[derive(Clone, Debug)]
pub struct Layout<'a> {
    /// The state directory (certificates under `pki/`, the embedded store's file).
    pub state_dir: &'a Path,
    /// The API server's advertise address (`--advertise-address`): where pods reach it.
    pub advertise: std::net::Ipv4Addr,
    /// The API server's port, on 127.0.0.1 and on the advertise address.
    pub port: u16,
    /// The store.
    pub store: &'a StoreUrl,
    /// With `--store etcd-cluster=N`, its members.
    pub etcd_members: &'a [EtcdMember],
    /// The pod network (`--cluster-cidr`).
    pub cluster_cidr: String,
    /// The node lifecycle controller's grace period.
    pub node_monitor_grace_period: Duration,
    /// The API server's default not-ready and unreachable toleration seconds.
    pub toleration_seconds: (u32, u32),
    /// How many schedulers and controller managers run (`--schedulers`,
    /// `--controller-managers`): one static pod each, as an HA control plane has one per
    /// control-plane node.
    pub replicas: (u16, u16),
    /// Their leader election's timings.
    pub leader_election: crate::leaderelection::Timings,
}

/// Whether manifest file `name` is one of a store's (`orrery-store.yaml`, `etcd.yaml`,
/// `etcd-<n>.yaml`): those not written for the store in use are removed.
fn is_store_file(name: &str) -> bool {
    name == "orrery-store.yaml"
        || name == "etcd.yaml"
        || name
            .strip_prefix("etcd-")
            .and_then(|n| n.strip_suffix(".yaml"))
            .is_some_and(|n| n.parse::<u8>().is_ok())
}

/// The flags kubeadm's manifests give a component that elects a leader: `--leader-elect=true`
/// (kubeadm writes it though it is the default), and the timings where they are not upstream's
/// defaults, in Go's duration words.
fn leader_election_flags(timings: &crate::leaderelection::Timings) -> Vec<String> {
    use crate::apimachinery::gotypes::go_duration;
    let defaults = crate::leaderelection::Timings::default();
    let mut flags = Vec::new();
    for (flag, value, default) in [
        (
            "lease-duration",
            timings.lease_duration,
            defaults.lease_duration,
        ),
        (
            "renew-deadline",
            timings.renew_deadline,
            defaults.renew_deadline,
        ),
        ("retry-period", timings.retry_period, defaults.retry_period),
    ] {
        if value != default {
            flags.push(format!("--leader-elect-{flag}={}", go_duration(value)));
        }
    }
    flags.insert(0, "--leader-elect=true".to_owned());
    flags
}

/// Replica `instance`'s static pod from its component's: named `kube-scheduler-2` (its file
/// `kube-scheduler-2.yaml`), with the `component` label every replica shares.
fn replica_of(pod: &Value, instance: Instance) -> (String, Value) {
    let mut pod = pod.clone();
    pod["metadata"]["name"] = json!(instance.log_name());
    pod["metadata"]["annotations"][PICTURE] =
        json!(picture(&instance.log_name(), instance.supervised_as()));
    (format!("{}.yaml", instance.log_name()), pod)
}

/// The static pods, by file name: kube-apiserver, the store, kube-scheduler and
/// kube-controller-manager (one of each replica, `kube-scheduler-1.yaml` .. with several).
pub fn manifests(layout: &Layout<'_>) -> Vec<(String, Value)> {
    let pki = layout.state_dir.join("pki");
    let pki = pki.display();
    let (not_ready, unreachable) = layout.toleration_seconds;
    let mut apiserver_command = vec![
        "kube-apiserver".to_owned(),
        format!("--advertise-address={}", layout.advertise),
        format!("--client-ca-file={pki}/ca.crt"),
        format!("--default-not-ready-toleration-seconds={not_ready}"),
        format!("--default-unreachable-toleration-seconds={unreachable}"),
    ];
    match layout.store {
        StoreUrl::Etcd(endpoints) => {
            apiserver_command.push(format!("--etcd-servers={}", endpoints.join(",")));
        }
        StoreUrl::EtcdCluster(_) => {
            let servers: Vec<&str> = layout
                .etcd_members
                .iter()
                .map(|m| m.client_url.as_str())
                .collect();
            apiserver_command.push(format!("--etcd-servers={}", servers.join(",")));
        }
        StoreUrl::Embedded => {}
    }
    apiserver_command.extend([
        format!("--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt"),
        format!("--kubelet-client-key={pki}/apiserver-kubelet-client.key"),
        format!("--secure-port={}", layout.port),
        format!("--tls-cert-file={pki}/apiserver.crt"),
        format!("--tls-private-key-file={pki}/apiserver.key"),
        "--v=3".to_owned(),
    ]);
    let apiserver = pod(
        "kube-apiserver",
        &format!("registry.k8s.io/kube-apiserver:{KUBERNETES_VERSION}"),
        apiserver_command,
        "250m",
        Some(layout.port),
        json!({"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": format!("{}:{}", layout.advertise, layout.port)}),
        Some(("k8s-certs", layout.state_dir.join("pki"))),
    );
    let stores = match layout.store {
        StoreUrl::EtcdCluster(_) => layout.etcd_members.iter().map(member_pod).collect(),
        StoreUrl::Etcd(endpoints) => vec![(
            "etcd.yaml".to_owned(),
            pod(
                "etcd",
                ETCD_IMAGE,
                vec![
                    "etcd".to_owned(),
                    format!("--advertise-client-urls={}", endpoints.join(",")),
                ],
                "100m",
                None,
                json!({"kubeadm.kubernetes.io/etcd.advertise-client-urls": endpoints.join(",")}),
                None,
            ),
        )],
        StoreUrl::Embedded => {
            let file = crate::store::embedded_path(layout.state_dir);
            vec![(
                "orrery-store.yaml".to_owned(),
                pod(
                    "orrery-store",
                    &format!("orrery/store:{}", env!("CARGO_PKG_VERSION")),
                    vec![
                        "orrery-store".to_owned(),
                        format!("--data-file={}", file.display()),
                    ],
                    "100m",
                    None,
                    json!({}),
                    file.parent().map(|dir| ("store-data", dir.to_owned())),
                ),
            )]
        }
    };
    let grace = layout.node_monitor_grace_period.as_secs();
    let election = leader_election_flags(&layout.leader_election);
    let mut controller_manager_command = vec![
        "kube-controller-manager".to_owned(),
        format!("--cluster-cidr={}", layout.cluster_cidr),
        "--controllers=cronjob,daemonset,deployment,disruption,endpoint,endpointslice,garbagecollector,job,namespace,nodelifecycle,persistentvolume-binder,pv-protection,pvc-protection,replicaset,serviceaccount,statefulset".to_owned(),
    ];
    controller_manager_command.extend(election.iter().cloned());
    controller_manager_command.extend([
        format!("--node-monitor-grace-period={grace}s"),
        "--v=2".to_owned(),
    ]);
    let controller_manager = pod(
        "kube-controller-manager",
        &format!("registry.k8s.io/kube-controller-manager:{KUBERNETES_VERSION}"),
        controller_manager_command,
        "200m",
        None,
        json!({}),
        None,
    );
    let mut scheduler_command = vec!["kube-scheduler".to_owned()];
    scheduler_command.extend(election);
    scheduler_command.push("--v=2".to_owned());
    let scheduler = pod(
        "kube-scheduler",
        &format!("registry.k8s.io/kube-scheduler:{KUBERNETES_VERSION}"),
        scheduler_command,
        "100m",
        None,
        json!({}),
        None,
    );
    let mut all = vec![("kube-apiserver.yaml".to_owned(), apiserver)];
    all.extend(stores);
    let (schedulers, controller_managers) = layout.replicas;
    for instance in crate::cluster::replicas(Component::ControllerManager, controller_managers) {
        all.push(replica_of(&controller_manager, instance));
    }
    for instance in crate::cluster::replicas(Component::Scheduler, schedulers) {
        all.push(replica_of(&scheduler, instance));
    }
    all
}

/// What a static pod's [`PICTURE`] annotation says of component `name`, which the supervisor
/// knows as `supervised` (if it can be stopped).
fn picture(name: &str, supervised: Option<String>) -> String {
    format!(
        "{name} runs inside the `orrery up` process as one of its components, not in a \
         container. This static pod is kubeadm's manifest for it with Orrery's settings; its \
         status follows the component (orrery component stop|start {}), its log is the \
         component's own lines.",
        supervised.unwrap_or_else(|| "- the store cannot be stopped".to_owned())
    )
}

/// An etcd member's static pod, as kubeadm writes `etcd.yaml` on each control-plane node: its
/// real command line, its data directory mounted, named after the member.
fn member_pod(member: &EtcdMember) -> (String, Value) {
    let mut pod = pod(
        &member.name,
        ETCD_IMAGE,
        member.command.clone(),
        "100m",
        None,
        json!({
            "kubeadm.kubernetes.io/etcd.advertise-client-urls": member.client_url,
            MEMBER: member.name,
            MEMBER_LOG: member.log.display().to_string(),
        }),
        Some(("etcd-data", member.data_dir.clone())),
    );
    pod["metadata"]["labels"]["component"] = json!("etcd");
    pod["metadata"]["annotations"][PICTURE] = json!(format!(
        "{name} is a real etcd process, a child of `orrery up` (not in a container). This static          pod is kubeadm's etcd manifest for it with its real command line; its status follows          the member (orrery component stop|start {name}), its log is the member's own ({}).",
        member.log.display(),
        name = member.name,
    ));
    let container = &mut pod["spec"]["containers"][0];
    container["name"] = json!("etcd");
    container["resources"]["requests"]["memory"] = json!("100Mi");
    // etcd writes its data: kubeadm mounts it read-write.
    if let Some(mount) = container["volumeMounts"][0].as_object_mut() {
        mount.remove("readOnly");
    }
    (format!("{}.yaml", member.name), pod)
}

/// One static pod as kubeadm writes it, for the component `name` (its label `component` and
/// container name; the store's log is [`Component::Store`]).
#[allow(clippy::too_many_arguments)]
fn pod(
    name: &str,
    image: &str,
    command: Vec<String>,
    cpu: &str,
    port: Option<u16>,
    mut annotations: Value,
    volume: Option<(&str, PathBuf)>,
) -> Value {
    let component = Component::from_log_name(name).unwrap_or(Component::Store);
    annotations[PICTURE] = json!(picture(name, component.supervised_as().map(str::to_owned)));
    let mut container = json!({
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "resources": {"requests": {"cpu": cpu}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    });
    if name == "etcd" {
        container["resources"]["requests"]["memory"] = json!("100Mi");
    }
    if let Some(port) = port {
        container["ports"] =
            json!([{"containerPort": port, "name": "probe-port", "protocol": "TCP"}]);
    }
    let mut spec = json!({
        "containers": [container],
        "hostNetwork": true,
        "priority": 2000001000,
        "priorityClassName": "system-node-critical",
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    });
    if let Some((volume, path)) = volume {
        let path = path.display().to_string();
        spec["containers"][0]["volumeMounts"] =
            json!([{"mountPath": path, "name": volume, "readOnly": name != "orrery-store"}]);
        spec["volumes"] =
            json!([{"name": volume, "hostPath": {"path": path, "type": "DirectoryOrCreate"}}]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {"component": name, "tier": "control-plane"},
            "annotations": annotations,
        },
        "spec": spec,
    })
}

/// Writes the manifests into `dir` (kubeadm's `/etc/kubernetes/manifests`), replacing what an
/// earlier `orrery up` wrote there: the other store's manifest and replicas no longer run
/// (`kube-scheduler-3.yaml` after `--schedulers 2`) are removed.
pub fn write_manifests(dir: &Path, layout: &Layout<'_>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let manifests = manifests(layout);
    // The manifests of a store no longer in use go.
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if is_store_file(&name) && !manifests.iter().any(|(file, _)| *file == name) {
            match std::fs::remove_file(dir.join(&name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let file = entry?.file_name().to_string_lossy().into_owned();
        let replica = file
            .strip_suffix(".yaml")
            .and_then(Instance::from_log_name)
            .is_some_and(|i| i.component.replicated());
        if replica && !manifests.iter().any(|(f, _)| *f == file) {
            std::fs::remove_file(dir.join(&file))?;
        }
    }
    for (file, pod) in manifests {
        let text = serde_yaml::to_string(&pod).map_err(std::io::Error::other)?;
        let path = dir.join(&file);
        let temporary = dir.join(format!(".{file}.tmp"));
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of the files in `dir`, sorted.
    fn files_in(dir: &Path) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn manifests_are_kubeadms_with_orrerys_settings() {
        let dir = tempfile::tempdir().unwrap();
        let embedded = StoreUrl::Embedded;
        let layout = Layout {
            state_dir: dir.path(),
            advertise: std::net::Ipv4Addr::LOCALHOST,
            port: 40123,
            store: &embedded,
            etcd_members: &[],
            cluster_cidr: "10.244.0.0/14".into(),
            node_monitor_grace_period: Duration::from_secs(40),
            toleration_seconds: (300, 300),
            replicas: (1, 1),
            leader_election: crate::leaderelection::Timings::default(),
        };
        let manifests_dir = manifests_dir(dir.path());
        write_manifests(&manifests_dir, &layout).unwrap();
        assert_eq!(
            files_in(&manifests_dir),
            [
                "kube-apiserver.yaml",
                "kube-controller-manager.yaml",
                "kube-scheduler.yaml",
                "orrery-store.yaml"
            ]
        );
        let read = |file: &str| -> Value {
            serde_yaml::from_str(&std::fs::read_to_string(manifests_dir.join(file)).unwrap())
                .unwrap()
        };
        let scheduler = read("kube-scheduler.yaml");
        assert_eq!(
            scheduler["metadata"]["labels"]["component"],
            "kube-scheduler"
        );
        assert_eq!(scheduler["metadata"]["labels"]["tier"], "control-plane");
        assert_eq!(
            scheduler["spec"]["priorityClassName"],
            "system-node-critical"
        );
        assert_eq!(scheduler["spec"]["hostNetwork"], true);
        let container = &scheduler["spec"]["containers"][0];
        assert_eq!(container["image"], "registry.k8s.io/kube-scheduler:v1.33.0");
        assert_eq!(container["resources"]["requests"]["cpu"], "100m");
        assert!(
            scheduler["metadata"]["annotations"][PICTURE]
                .as_str()
                .unwrap()
                .contains("orrery component stop|start scheduler")
        );
        let apiserver = read("kube-apiserver.yaml");
        let command = apiserver["spec"]["containers"][0]["command"]
            .as_array()
            .unwrap();
        assert!(
            command.contains(&json!("--secure-port=40123")),
            "{command:?}"
        );
        assert!(
            command.contains(&json!(format!(
                "--client-ca-file={}/pki/ca.crt",
                dir.path().display()
            ))),
            "{command:?}"
        );
        // The store pod's manifest follows the store.
        let etcd = StoreUrl::Etcd(vec!["http://127.0.0.1:2379".into()]);
        write_manifests(
            &manifests_dir,
            &Layout {
                store: &etcd,
                ..layout.clone()
            },
        )
        .unwrap();
        assert!(!manifests_dir.join("orrery-store.yaml").exists());
        let etcd = read("etcd.yaml");
        assert_eq!(etcd["spec"]["containers"][0]["image"], ETCD_IMAGE);
        assert_eq!(etcd["metadata"]["labels"]["component"], "etcd");
        assert_eq!(
            scheduler["spec"]["containers"][0]["command"],
            json!(["kube-scheduler", "--leader-elect=true", "--v=2"])
        );

        // Replicas: one static pod each, sharing the component label; timings that are not
        // upstream's defaults are flags. Fewer replicas later remove the extra manifests.
        let replicated = Layout {
            replicas: (2, 3),
            leader_election: crate::leaderelection::Timings {
                lease_duration: Duration::from_secs(4),
                renew_deadline: Duration::from_secs(3),
                retry_period: Duration::from_millis(1500),
            },
            store: &embedded,
            ..layout.clone()
        };
        write_manifests(&manifests_dir, &replicated).unwrap();
        assert_eq!(
            files_in(&manifests_dir),
            [
                "kube-apiserver.yaml",
                "kube-controller-manager-1.yaml",
                "kube-controller-manager-2.yaml",
                "kube-controller-manager-3.yaml",
                "kube-scheduler-1.yaml",
                "kube-scheduler-2.yaml",
                "orrery-store.yaml"
            ]
        );
        let second = read("kube-scheduler-2.yaml");
        assert_eq!(second["metadata"]["name"], "kube-scheduler-2");
        assert_eq!(second["metadata"]["labels"]["component"], "kube-scheduler");
        assert_eq!(
            second["spec"]["containers"][0]["command"],
            json!([
                "kube-scheduler",
                "--leader-elect=true",
                "--leader-elect-lease-duration=4s",
                "--leader-elect-renew-deadline=3s",
                "--leader-elect-retry-period=1.5s",
                "--v=2"
            ])
        );
        assert!(
            second["metadata"]["annotations"][PICTURE]
                .as_str()
                .unwrap()
                .contains("orrery component stop|start scheduler-2")
        );
        write_manifests(&manifests_dir, &layout).unwrap();
        assert!(!manifests_dir.join("kube-scheduler-2.yaml").exists());
        assert!(
            !manifests_dir
                .join("kube-controller-manager-3.yaml")
                .exists()
        );
        assert!(manifests_dir.join("kube-scheduler.yaml").exists());

        // An etcd cluster: a pod per member, with its command line; the single one goes.
        let members: Vec<EtcdMember> = (1..=3)
            .map(|n| EtcdMember {
                name: format!("etcd-{n}"),
                client_url: format!("http://127.0.0.1:4000{n}"),
                data_dir: dir.path().join(format!("etcd/etcd-{n}")),
                log: dir.path().join(format!("etcd/etcd-{n}.log")),
                command: vec!["etcd".into(), format!("--name=etcd-{n}")],
            })
            .collect();
        let cluster = StoreUrl::EtcdCluster(3);
        write_manifests(
            &manifests_dir,
            &Layout {
                store: &cluster,
                etcd_members: &members,
                ..layout.clone()
            },
        )
        .unwrap();
        assert!(!manifests_dir.join("etcd.yaml").exists());
        let second = read("etcd-2.yaml");
        assert_eq!(second["metadata"]["name"], "etcd-2");
        assert_eq!(second["metadata"]["labels"]["component"], "etcd");
        assert_eq!(second["metadata"]["annotations"][MEMBER], "etcd-2");
        assert_eq!(
            second["spec"]["containers"][0]["command"],
            json!(["etcd", "--name=etcd-2"])
        );
        let apiserver = read("kube-apiserver.yaml");
        assert!(
            apiserver["spec"]["containers"][0]["command"]
                .as_array()
                .unwrap()
                .contains(&json!(
                    "--etcd-servers=http://127.0.0.1:40001,http://127.0.0.1:40002,http://127.0.0.1:40003"
                ))
        );
        // Back to the embedded store: every member's pod goes.
        write_manifests(&manifests_dir, &layout).unwrap();
        for n in 1..=3 {
            assert!(!manifests_dir.join(format!("etcd-{n}.yaml")).exists());
        }
        assert!(manifests_dir.join("orrery-store.yaml").exists());
    }
}
