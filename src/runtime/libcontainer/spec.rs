//! Builds a container's OCI runtime spec (`config.json`) the way containerd's CRI plugin does for
//! a Kubernetes pod: the default capability set, masked and read-only paths, mounts, devices,
//! rlimits, namespaces shared through the sandbox, cgroup path and limits; and the pieces the
//! client resolves first: the process's arguments from the image's Entrypoint/Cmd and the
//! pod's command/args, its environment, and its user from the image's `/etc/passwd`.
//!
//! Everything here is pure (text in, JSON out), so it is tested without root.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::protocol::{ContainerSpec, ResourceSpec};

/// What went wrong resolving a container's process.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// Neither the pod nor the image says what to run.
    #[error("no command specified")]
    NoCommand,
    /// The image's or pod's user is not in the image's `/etc/passwd`.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// The group is not in the image's `/etc/group`.
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// A capability name Linux does not have.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
}

/// The `PATH` a container gets when neither its image nor its pod sets one (containerd's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities a Kubernetes container has by default (containerd's default set).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability Linux has, for `privileged` and `add: [ALL]`.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Paths containerd masks in every unprivileged container.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// Paths containerd makes read-only in every unprivileged container.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The CPU period the kubelet uses for CFS quotas (100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The process a container runs, by the Kubernetes rules: `command` replaces the image's
/// Entrypoint and drops its Cmd; `args` replaces the Cmd.
pub fn process_args(
    entrypoint: &[String],
    cmd: &[String],
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, SpecError> {
    let mut process: Vec<String> = if command.is_empty() {
        entrypoint.to_vec()
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        process.extend_from_slice(args);
    } else if command.is_empty() {
        process.extend_from_slice(cmd);
    }
    if process.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(process)
}

/// The environment: the image's `NAME=value`s, overridden (in place) by the pod's, with a
/// default `PATH` when neither sets one.
pub fn merge_env(image: &[String], pod: &[(String, String)]) -> Vec<String> {
    let mut env: Vec<(String, String)> = image
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => (entry.clone(), String::new()),
        })
        .collect();
    for (name, value) in pod {
        match env.iter_mut().find(|(existing, _)| existing == name) {
            Some(slot) => slot.1 = value.clone(),
            None => env.push((name.clone(), value.clone())),
        }
    }
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.insert(0, ("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
    env.into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect()
}

/// The container's cgroup, absolute: `/orrery/<cluster>/<node>/<pod-uid>/<container>`.
pub fn cgroups_path(cluster: &str, node: &str, pod_uid: &str, container: &str) -> String {
    format!("/orrery/{cluster}/{node}/{pod_uid}/{container}")
}

/// The effective capability set, `CAP_`-prefixed: the default set (every one when
/// privileged), with `add` added and `drop` taken away (`ALL` in either means every one),
/// drops applied after adds as the kubelet's runtime does when `ALL` is dropped.
pub fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> Result<Vec<String>, SpecError> {
    let normal = |name: &str| -> Result<String, SpecError> {
        let bare = name.trim_start_matches("CAP_").to_ascii_uppercase();
        if ALL_CAPABILITIES.contains(&bare.as_str()) {
            Ok(bare)
        } else {
            Err(SpecError::UnknownCapability(name.to_owned()))
        }
    };
    if privileged {
        return Ok(ALL_CAPABILITIES
            .iter()
            .map(|c| format!("CAP_{c}"))
            .collect());
    }
    let all = |list: &[String]| list.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let mut set: Vec<String> = if all(add) {
        ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    };
    if all(drop) {
        // containerd: with ALL dropped, only the explicitly added ones remain.
        set.clear();
        if !all(add) {
            for name in add {
                set.push(normal(name)?);
            }
        }
    } else {
        if !all(add) {
            for name in add {
                let name = normal(name)?;
                if !set.contains(&name) {
                    set.push(name);
                }
            }
        }
        for name in drop {
            let name = normal(name)?;
            set.retain(|c| *c != name);
        }
    }
    set.dedup();
    Ok(set.into_iter().map(|c| format!("CAP_{c}")).collect())
}

/// A user as resolved in the image: uid, gid and supplementary groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary gids from `/etc/group`.
    pub additional_gids: Vec<u32>,
}

/// Resolves a container's user the way containerd does: `run_as_user`/`run_as_group` when the
/// pod sets them, else the image's `User` (`uid`, `uid:gid`, `name`, `name:group`), looked up
/// in the image's `/etc/passwd` and `/etc/group` text (empty when the image has none). A
/// numeric uid missing from passwd runs with gid 0.
pub fn resolve_user(
    run_as_user: Option<u32>,
    run_as_group: Option<u32>,
    image_user: Option<&str>,
    passwd: &str,
    group: &str,
) -> Result<User, SpecError> {
    let passwd: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 4)
        .collect();
    let groups: Vec<Vec<&str>> = group
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 3)
        .collect();
    let by_uid = |uid: u32| {
        passwd
            .iter()
            .find(|f| f[2].parse::<u32>().ok() == Some(uid))
    };
    let (user_part, group_part) = match (run_as_user, image_user) {
        (Some(uid), _) => (uid.to_string(), None),
        (None, Some(user)) if !user.is_empty() => match user.split_once(':') {
            Some((u, g)) => (u.to_owned(), Some(g.to_owned())),
            None => (user.to_owned(), None),
        },
        _ => ("0".to_owned(), None),
    };
    let (uid, mut gid, name) = match user_part.parse::<u32>() {
        Ok(uid) => match by_uid(uid) {
            Some(entry) => (uid, entry[3].parse().unwrap_or(0), Some(entry[0])),
            None => (uid, 0, None),
        },
        Err(_) => {
            let entry = passwd
                .iter()
                .find(|f| f[0] == user_part)
                .ok_or_else(|| SpecError::UnknownUser(user_part.clone()))?;
            (
                entry[2].parse().unwrap_or(0),
                entry[3].parse().unwrap_or(0),
                Some(entry[0]),
            )
        }
    };
    if let Some(group_part) = group_part {
        gid = match group_part.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == group_part)
                .and_then(|f| f[2].parse().ok())
                .ok_or(SpecError::UnknownGroup(group_part))?,
        };
    }
    if let Some(run_as_group) = run_as_group {
        gid = run_as_group;
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = name {
        for entry in &groups {
            let members = entry.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m == name)
                && let Ok(g) = entry[2].parse::<u32>()
                && g != gid
                && !additional_gids.contains(&g)
            {
                additional_gids.push(g);
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

/// How a container joins its pod's namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    /// The pause container: the pod's network namespace by path, new UTS and IPC.
    Sandbox {
        /// `/run/netns/<name>`.
        netns: PathBuf,
        /// The pod's hostname.
        hostname: String,
    },
    /// An app container: the pause container's network, UTS and IPC; its own process
    /// namespace, or another container's.
    Member {
        /// The pause container's pid.
        pause_pid: i32,
        /// The pid of the container whose process namespace it joins (an ephemeral
        /// container's target).
        pid_of: Option<i32>,
    },
}

/// The sandbox's files bind-mounted into each app container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxFiles {
    /// `/etc/hosts`.
    pub hosts: PathBuf,
    /// `/etc/hostname`.
    pub hostname: PathBuf,
    /// `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// The pod's shared `/dev/shm`.
    pub shm: PathBuf,
}

/// The capability mask of `CapBnd:` in a `/proc/<pid>/status`.
pub fn bounding_mask(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// This process's bounding set (every capability when it cannot be read): what a privileged
/// container can have at most.
pub fn host_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| bounding_mask(&status))
        .unwrap_or(u64::MAX)
}

/// The OCI `config.json` of a container whose root filesystem is mounted at `rootfs`.
/// `host_caps` is the runtime's own bounding set ([`host_capabilities`]): a privileged
/// container (or one adding `ALL`) gets every capability the runtime has, as containerd's
/// `WithAllCurrentCapabilities` gives, not ones the kernel would refuse to grant.
pub fn oci_spec(
    container: &ContainerSpec,
    user: &User,
    rootfs: &Path,
    namespaces: &Namespaces,
    files: Option<&SandboxFiles>,
    cgroups_path: &str,
    host_caps: u64,
) -> Result<Value, SpecError> {
    let security = &container.security;
    let mut caps = capabilities(security.privileged, &security.add, &security.drop)?;
    if security.privileged || security.add.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
        caps.retain(|cap| {
            ALL_CAPABILITIES
                .iter()
                .position(|c| cap.strip_prefix("CAP_") == Some(c))
                .is_none_or(|bit| bit >= 64 || host_caps & (1 << bit) != 0)
        });
    }
    // Kubernetes (containerd) gives non-root users no effective or permitted capabilities
    // unless ambient ones are asked for; the bounding set stays.
    let effective = if user.uid == 0 {
        caps.clone()
    } else {
        Vec::new()
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", if security.privileged { "rw" } else { "ro" }]}),
    ];
    match files {
        Some(files) => {
            mounts.push(bind(&files.shm, "/dev/shm", false));
            mounts.push(bind(&files.hosts, "/etc/hosts", false));
            mounts.push(bind(&files.hostname, "/etc/hostname", false));
            mounts.push(bind(&files.resolv_conf, "/etc/resolv.conf", false));
        }
        None => mounts.push(
            json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        ),
    }
    for mount in &container.mounts {
        mounts.push(bind(&mount.source, &mount.destination, mount.read_only));
    }
    let pid = match namespaces {
        Namespaces::Member {
            pid_of: Some(target),
            ..
        } => json!({"type": "pid", "path": format!("/proc/{target}/ns/pid")}),
        _ => json!({"type": "pid"}),
    };
    let mut linux_namespaces = vec![pid, json!({"type": "mount"})];
    let hostname = match namespaces {
        Namespaces::Sandbox { netns, hostname } => {
            linux_namespaces.push(json!({"type": "network", "path": netns}));
            linux_namespaces.push(json!({"type": "uts"}));
            linux_namespaces.push(json!({"type": "ipc"}));
            Some(hostname.clone())
        }
        Namespaces::Member { pause_pid, .. } => {
            for (kind, file) in [("network", "net"), ("uts", "uts"), ("ipc", "ipc")] {
                linux_namespaces
                    .push(json!({"type": kind, "path": format!("/proc/{pause_pid}/ns/{file}")}));
            }
            None
        }
    };
    let mut linux = json!({
        "namespaces": linux_namespaces,
        "cgroupsPath": cgroups_path,
        "resources": resources(&container.resources),
    });
    if !security.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    if let Some(seccomp) = &security.seccomp {
        linux["seccomp"] = seccomp.clone();
    }
    let mut process = json!({
        "terminal": container.tty,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": container.args,
        "env": container.env,
        "cwd": if container.cwd.is_empty() { "/" } else { container.cwd.as_str() },
        "capabilities": {
            "bounding": caps,
            "effective": effective,
            "permitted": effective,
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024u64, "soft": 1024u64}],
        "noNewPrivileges": security.no_new_privileges && !security.privileged,
    });
    if !user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional_gids);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": rootfs, "readonly": security.read_only_root},
        "process": process,
        "mounts": mounts,
        "linux": linux,
    });
    if let Some(hostname) = hostname {
        spec["hostname"] = json!(hostname);
    }
    Ok(spec)
}

fn bind(source: &Path, destination: &str, read_only: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    options.push(if read_only { "ro" } else { "rw" });
    json!({"destination": destination, "type": "bind", "source": source, "options": options})
}

/// The cgroup limits: memory, CFS quota and shares (the kubelet's formulas), pids, and the
/// device rules containerd allows (every other device denied).
pub fn resources(resources: &ResourceSpec) -> Value {
    let mut value = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
        ]
    });
    if let Some(limit) = resources.memory_limit {
        value["memory"] = json!({"limit": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(millis) = resources.cpu_limit_millis {
        let quota = (millis as i128 * CPU_PERIOD_US as i128 / 1000).max(1000) as i64;
        cpu.insert("quota".into(), json!(quota));
        cpu.insert("period".into(), json!(CPU_PERIOD_US));
    }
    if let Some(millis) = resources.cpu_request_millis {
        cpu.insert("shares".into(), json!(((millis * 1024) / 1000).max(2)));
    }
    if !cpu.is_empty() {
        value["cpu"] = Value::Object(cpu);
    }
    if let Some(limit) = resources.pids_limit {
        value["pids"] = json!({"limit": limit});
    }
    value
}

/// `/etc/hosts` as the kubelet writes it for a pod: localhost entries, then the pod's IP and
/// hostname.
pub fn hosts_file(ip: Option<&str>, hostname: &str) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        text.push_str(&format!("{ip}\t{hostname}\n"));
    }
    text
}

/// `/etc/resolv.conf` for a pod: its nameservers (the host's non-loopback ones from
/// `host_resolv` when the pod gives none), search domains and options (the kubelet's, by the
/// pod's `dnsPolicy`).
pub fn resolv_conf(
    servers: &[String],
    search: &[String],
    options: &[String],
    host_resolv: &str,
) -> String {
    let servers: Vec<String> = if servers.is_empty() {
        host_resolv
            .lines()
            .filter_map(|line| line.trim().strip_prefix("nameserver"))
            .map(|server| server.trim().to_owned())
            .filter(|server| {
                server
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| !ip.is_loopback())
            })
            .collect()
    } else {
        servers.to_vec()
    };
    let mut text = String::new();
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    for server in servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::libcontainer::protocol::{MountSpec, SecuritySpec};

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn process_follows_kubernetes_command_and_args_rules() {
        let entrypoint = s(&["/entry"]);
        let cmd = s(&["--flag"]);
        let check = |command: &[&str], args: &[&str], want: &[&str]| {
            assert_eq!(
                process_args(&entrypoint, &cmd, &s(command), &s(args)).unwrap(),
                s(want),
                "command {command:?} args {args:?}"
            );
        };
        check(&[], &[], &["/entry", "--flag"]);
        check(&["/bin/sh"], &[], &["/bin/sh"]);
        check(&[], &["x"], &["/entry", "x"]);
        check(
            &["/bin/sh", "-c"],
            &["echo hi"],
            &["/bin/sh", "-c", "echo hi"],
        );
        assert_eq!(process_args(&[], &[], &[], &[]), Err(SpecError::NoCommand));
        assert_eq!(process_args(&[], &cmd, &[], &[]).unwrap(), s(&["--flag"]));
    }

    #[test]
    fn pod_env_overrides_image_env_and_path_defaults() {
        let env = merge_env(
            &s(&["A=1", "B=2"]),
            &[("B".into(), "3".into()), ("C".into(), "4".into())],
        );
        assert_eq!(
            env,
            s(&[&format!("PATH={DEFAULT_PATH}"), "A=1", "B=3", "C=4"])
        );
        let env = merge_env(&s(&["PATH=/bin"]), &[]);
        assert_eq!(env, s(&["PATH=/bin"]));
    }

    #[test]
    fn capabilities_default_add_drop_all_privileged() {
        let default = capabilities(false, &[], &[]).unwrap();
        assert_eq!(default.len(), 14);
        assert!(default.contains(&"CAP_NET_RAW".to_string()));
        assert!(!default.contains(&"CAP_SYS_ADMIN".to_string()));
        let changed = capabilities(false, &s(&["NET_ADMIN"]), &s(&["NET_RAW"])).unwrap();
        assert!(changed.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!changed.contains(&"CAP_NET_RAW".to_string()));
        assert_eq!(
            capabilities(false, &s(&["NET_BIND_SERVICE"]), &s(&["ALL"])).unwrap(),
            s(&["CAP_NET_BIND_SERVICE"])
        );
        assert!(capabilities(false, &[], &s(&["ALL"])).unwrap().is_empty());
        assert_eq!(capabilities(false, &s(&["ALL"]), &[]).unwrap().len(), 41);
        assert_eq!(capabilities(true, &[], &s(&["ALL"])).unwrap().len(), 41);
        assert_eq!(
            capabilities(false, &s(&["NOPE"]), &[]),
            Err(SpecError::UnknownCapability("NOPE".into()))
        );
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1001:\nwheel:x:10:app,root\n";

    #[test]
    fn users_resolve_like_containerd() {
        let user = |run_as: Option<u32>, group: Option<u32>, image: Option<&str>| {
            resolve_user(run_as, group, image, PASSWD, GROUP)
        };
        assert_eq!(
            user(None, None, None).unwrap(),
            User {
                uid: 0,
                gid: 0,
                additional_gids: vec![10]
            }
        );
        assert_eq!(
            user(None, None, Some("app")).unwrap(),
            User {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![10]
            }
        );
        assert_eq!(user(None, None, Some("nobody:app")).unwrap().gid, 1001);
        assert_eq!(
            user(None, None, Some("4242:7")).unwrap(),
            User {
                uid: 4242,
                gid: 7,
                additional_gids: vec![]
            }
        );
        // runAsUser wins over the image; a uid missing from passwd gets gid 0.
        assert_eq!(user(Some(1000), None, Some("nobody")).unwrap().gid, 1001);
        assert_eq!(user(Some(5000), None, None).unwrap().gid, 0);
        assert_eq!(user(Some(5000), Some(9), None).unwrap().gid, 9);
        assert_eq!(
            user(None, None, Some("ghost")),
            Err(SpecError::UnknownUser("ghost".into()))
        );
        // No passwd at all: numeric users still work.
        assert_eq!(
            resolve_user(None, None, Some("12"), "", "").unwrap().uid,
            12
        );
    }

    fn container() -> ContainerSpec {
        ContainerSpec {
            name: "web".into(),
            args: s(&["/bin/sh"]),
            env: s(&["PATH=/bin"]),
            mounts: vec![MountSpec {
                source: "/host/data".into(),
                destination: "/data".into(),
                read_only: true,
            }],
            security: SecuritySpec {
                no_new_privileges: true,
                ..Default::default()
            },
            resources: ResourceSpec {
                memory_limit: Some(32 << 20),
                cpu_limit_millis: Some(250),
                cpu_request_millis: Some(100),
                pids_limit: Some(64),
            },
            ..Default::default()
        }
    }

    #[test]
    fn app_container_spec_joins_the_pause_namespaces() {
        let files = SandboxFiles {
            hosts: "/sb/hosts".into(),
            hostname: "/sb/hostname".into(),
            resolv_conf: "/sb/resolv.conf".into(),
            shm: "/sb/shm".into(),
        };
        let root = User {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        };
        let path = cgroups_path("demo", "node-1", "uid-1", "web");
        assert_eq!(path, "/orrery/demo/node-1/uid-1/web");
        let spec = oci_spec(
            &container(),
            &root,
            Path::new("/c/rootfs"),
            &Namespaces::Member {
                pause_pid: 42,
                pid_of: None,
            },
            Some(&files),
            &path,
            u64::MAX,
        )
        .unwrap();
        // It is a valid OCI spec as libcontainer reads it.
        let typed: libcontainer::oci_spec::runtime::Spec =
            serde_json::from_value(spec.clone()).unwrap();
        assert!(typed.hostname().is_none());
        assert_eq!(
            spec["linux"]["cgroupsPath"],
            "/orrery/demo/node-1/uid-1/web"
        );
        let namespaces = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(namespaces.contains(&json!({"type": "network", "path": "/proc/42/ns/net"})));
        assert!(namespaces.contains(&json!({"type": "uts", "path": "/proc/42/ns/uts"})));
        assert!(namespaces.contains(&json!({"type": "ipc", "path": "/proc/42/ns/ipc"})));
        assert!(namespaces.contains(&json!({"type": "pid"})));
        assert_eq!(spec["linux"]["maskedPaths"].as_array().unwrap().len(), 11);
        assert_eq!(spec["linux"]["readonlyPaths"][3], "/proc/sys");
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 32 << 20);
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 25_000);
        assert_eq!(spec["linux"]["resources"]["cpu"]["shares"], 102);
        assert_eq!(spec["linux"]["resources"]["pids"]["limit"], 64);
        let mounts = spec["mounts"].as_array().unwrap();
        let find = |dest: &str| mounts.iter().find(|m| m["destination"] == dest).unwrap();
        assert_eq!(find("/etc/hosts")["source"], "/sb/hosts");
        assert_eq!(find("/data")["options"][2], "ro");
        assert_eq!(find("/dev/shm")["source"], "/sb/shm");
    }

    #[test]
    fn privileged_gets_every_capability_the_runtime_has() {
        let status = "Name:\tx\nCapPrm:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
        let mask = bounding_mask(status).unwrap();
        assert_eq!(mask, 0x1fffeffffff);
        let mut privileged = container();
        privileged.security.privileged = true;
        let root = User {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        };
        let spec = oci_spec(
            &privileged,
            &root,
            Path::new("/c/rootfs"),
            &Namespaces::Member {
                pause_pid: 42,
                pid_of: None,
            },
            None,
            "/orrery/demo/node-1/uid-1/web",
            mask,
        )
        .unwrap();
        let bounding = spec["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(bounding.len(), 40);
        assert!(!bounding.contains(&json!("CAP_SYS_RESOURCE")));
        assert!(bounding.contains(&json!("CAP_SYS_ADMIN")));
        assert_eq!(spec["mounts"][4]["options"][3], "rw");
    }

    #[test]
    fn seccomp_profile_goes_into_linux_seccomp() {
        let root = User {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        };
        let build = |spec: &ContainerSpec| {
            oci_spec(
                spec,
                &root,
                Path::new("/c/rootfs"),
                &Namespaces::Member {
                    pause_pid: 42,
                    pid_of: None,
                },
                None,
                "/orrery/demo/node-1/uid-1/web",
                u64::MAX,
            )
            .unwrap()
        };
        let unconfined = build(&container());
        assert!(unconfined["linux"].get("seccomp").is_none());
        let caps: Vec<String> = DEFAULT_CAPABILITIES
            .iter()
            .map(|c| format!("CAP_{c}"))
            .collect();
        let profile = super::super::seccomp::runtime_default(&super::super::seccomp::Target {
            arch: "amd64",
            kernel: (6, 1),
            caps: &caps,
        });
        let mut filtered = container();
        filtered.security.seccomp = Some(profile.clone());
        let spec = build(&filtered);
        assert_eq!(spec["linux"]["seccomp"], profile);
        let typed: libcontainer::oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
        let seccomp = typed.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
        assert_eq!(
            seccomp.default_action(),
            libcontainer::oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
        );
    }

    #[test]
    fn pause_spec_has_new_uts_and_ipc_and_the_hostname() {
        let mut pause = container();
        pause.security.privileged = true;
        let user = User {
            uid: 65534,
            gid: 65534,
            additional_gids: vec![],
        };
        let spec = oci_spec(
            &pause,
            &user,
            Path::new("/p/rootfs"),
            &Namespaces::Sandbox {
                netns: "/run/netns/orr-x".into(),
                hostname: "web-0".into(),
            },
            None,
            "/orrery/demo/node-1/uid-1/pause",
            u64::MAX,
        )
        .unwrap();
        let _: libcontainer::oci_spec::runtime::Spec =
            serde_json::from_value(spec.clone()).unwrap();
        assert_eq!(spec["hostname"], "web-0");
        let namespaces = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(namespaces.contains(&json!({"type": "uts"})));
        assert!(namespaces.contains(&json!({"type": "network", "path": "/run/netns/orr-x"})));
        // Privileged: no masked paths, every capability, but a non-root user has no
        // effective ones.
        assert!(spec["linux"].get("maskedPaths").is_none());
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            41
        );
        assert!(
            spec["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert_eq!(spec["process"]["noNewPrivileges"], false);
    }

    #[test]
    fn hosts_and_resolv_conf() {
        let hosts = hosts_file(Some("10.244.1.5"), "web-0");
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(hosts.ends_with("10.244.1.5\tweb-0\n"));
        let resolv = resolv_conf(
            &[],
            &s(&["default.svc.cluster.local", "svc.cluster.local"]),
            &s(&["ndots:5"]),
            "nameserver 127.0.0.53\nnameserver 192.0.2.1\n# x\n",
        );
        assert_eq!(
            resolv,
            "search default.svc.cluster.local svc.cluster.local\nnameserver 192.0.2.1\noptions ndots:5\n"
        );
        assert_eq!(
            resolv_conf(&s(&["10.96.0.10"]), &[], &s(&["ndots:5", "edns0"]), ""),
            "nameserver 10.96.0.10\noptions ndots:5 edns0\n"
        );
        assert_eq!(
            resolv_conf(&s(&["10.96.0.10"]), &[], &[], ""),
            "nameserver 10.96.0.10\n"
        );
    }
}
