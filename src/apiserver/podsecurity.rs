//! Pod Security admission, as kube-apiserver's built-in `PodSecurity` plugin
//! (`k8s.io/pod-security-admission`) runs it: the Pod Security Standards' checks (levels
//! `privileged`, `baseline` and `restricted`, each check in the versions upstream gives it), the
//! namespace labels `pod-security.kubernetes.io/{enforce,audit,warn}[-version]` that choose a
//! policy, and what a write gets: a pod that violates the `enforce` level is refused (403,
//! `violates PodSecurity "restricted:latest": ...`), one that violates the `warn` level is
//! admitted with a `Warning`; a workload's pod template is only warned about; a namespace's labels
//! must parse, and tightening its `enforce` level warns about the pods already there. No
//! exemptions are configured (upstream's default), and the default policy is `privileged:latest`
//! for all three modes. `audit` is parsed but records nothing: Orrery keeps no audit log.

use serde_json::{Map, Value};

use super::errors::{ApiError, Cause};
use super::registry::store::UpdateKind;
use super::resources::{self, Resource};
use super::{ApiServer, decode};
use crate::store::RangeRequest;

/// The namespace labels (`api.EnforceLevelLabel`, ...).
const ENFORCE_LEVEL: &str = "pod-security.kubernetes.io/enforce";
const ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";
const AUDIT_LEVEL: &str = "pod-security.kubernetes.io/audit";
const AUDIT_VERSION: &str = "pod-security.kubernetes.io/audit-version";
const WARN_LEVEL: &str = "pod-security.kubernetes.io/warn";
const WARN_VERSION: &str = "pod-security.kubernetes.io/warn-version";

/// How many existing pods a tightened `enforce` level is tried against (upstream's
/// `defaultNamespaceMaxPodsToCheck`).
const MAX_PODS_TO_CHECK: usize = 3000;

/// A Pod Security Standard's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// `api.ParseLevel`: an unknown level is `restricted`, with an error.
    fn parse(s: &str) -> Result<Level, Level> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err(Level::Restricted),
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        })
    }
}

/// A policy version: `latest` or `v1.N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Version {
    Latest,
    V1(u32),
}

impl Version {
    /// `api.ParseVersion`: `latest` or `v1.N` (no leading zeros); anything else is `latest`,
    /// with an error.
    fn parse(s: &str) -> Result<Version, Version> {
        if s == "latest" {
            return Ok(Version::Latest);
        }
        let minor = s
            .strip_prefix("v1.")
            .filter(|m| {
                !m.is_empty()
                    && m.bytes().all(|b| b.is_ascii_digit())
                    && (m.len() == 1 || !m.starts_with('0'))
            })
            .and_then(|m| m.parse().ok());
        minor.map(Version::V1).ok_or(Version::Latest)
    }

    /// The minor version the checks are chosen by (`latest`: every version there is).
    fn minor(self) -> u32 {
        match self {
            Version::Latest => u32::MAX,
            Version::V1(minor) => minor,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::V1(minor) => write!(f, "v1.{minor}"),
        }
    }
}

/// A level at a version, written `restricted:latest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LevelVersion {
    pub(crate) level: Level,
    pub(crate) version: Version,
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// A namespace's policy: one level and version per mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) enforce: LevelVersion,
    pub(crate) audit: LevelVersion,
    pub(crate) warn: LevelVersion,
}

/// The default policy: `privileged:latest` everywhere (upstream's default configuration).
const DEFAULT_POLICY: Policy = {
    let privileged = LevelVersion {
        level: Level::Privileged,
        version: Version::Latest,
    };
    Policy {
        enforce: privileged,
        audit: privileged,
        warn: privileged,
    }
};

/// `api.PolicyToEvaluate`: the policy a namespace's labels choose, and what was wrong with them
/// (as field causes). A policy is always returned: a bad enforce level is `restricted`, a bad
/// audit or warn level `privileged` (they fail open), a bad version `latest`.
pub(crate) fn policy_of(labels: &Map<String, Value>) -> (Policy, Vec<Cause>) {
    let mut policy = DEFAULT_POLICY;
    let mut causes = Vec::new();
    let label = |key: &str| labels.get(key).map(|v| v.as_str().unwrap_or_default());
    let mut invalid = |key: &str, value: &str, detail: &str| {
        causes.push(Cause::invalid(
            format!("metadata.labels[{key}]"),
            &Value::String(value.to_owned()),
            detail,
        ));
    };
    const LEVELS: &str = "must be one of privileged, baseline, restricted";
    const VERSIONS: &str = "must be \"latest\" or \"v1.x\"";
    let modes = [
        (ENFORCE_LEVEL, ENFORCE_VERSION, None),
        (AUDIT_LEVEL, AUDIT_VERSION, Some(Level::Privileged)),
        (WARN_LEVEL, WARN_VERSION, Some(Level::Privileged)),
    ];
    for (i, (level_key, version_key, fail_open)) in modes.into_iter().enumerate() {
        let mode = match i {
            0 => &mut policy.enforce,
            1 => &mut policy.audit,
            _ => &mut policy.warn,
        };
        if let Some(value) = label(level_key) {
            mode.level = Level::parse(value).unwrap_or_else(|restricted| {
                invalid(level_key, value, LEVELS);
                fail_open.unwrap_or(restricted)
            });
        }
        if let Some(value) = label(version_key) {
            mode.version = Version::parse(value).unwrap_or_else(|latest| {
                invalid(version_key, value, VERSIONS);
                latest
            });
        }
    }
    (policy, causes)
}

/// One check's refusal: its reason (`privileged`) and detail (`container "c" must not set ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) reason: String,
    pub(crate) detail: String,
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

/// `AggregateCheckResult.ForbiddenDetail`: `reason (detail), reason (detail)`.
pub(crate) fn forbidden_detail(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `AggregateCheckResult.ForbiddenReason`: the reasons alone.
fn forbidden_reason(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

type CheckFn = fn(&Value, &Value, u32) -> Option<Violation>;

/// One check: its ID, its level, the first minor version it applies to, the baseline checks it
/// stands in for at restricted from then on (upstream's `OverrideCheckIDs`), and the check
/// itself, given the pod's metadata, its spec and the policy's minor version.
struct Check {
    id: &'static str,
    level: Level,
    since: u32,
    overrides: &'static [&'static str],
    check: CheckFn,
}

const fn baseline(id: &'static str, check: CheckFn) -> Check {
    Check {
        id,
        level: Level::Baseline,
        since: 0,
        overrides: &[],
        check,
    }
}

const fn restricted(
    id: &'static str,
    since: u32,
    overrides: &'static [&'static str],
    check: CheckFn,
) -> Check {
    Check {
        id,
        level: Level::Restricted,
        since,
        overrides,
        check,
    }
}

/// Every check, sorted by ID within its level as upstream's registry orders them (so its
/// messages list them in this order).
const CHECKS: &[Check] = &[
    baseline("appArmorProfile", app_armor_profile),
    baseline("capabilities_baseline", capabilities_baseline),
    baseline("hostNamespaces", host_namespaces),
    baseline("hostPathVolumes", host_path_volumes),
    baseline("hostPorts", host_ports),
    baseline("privileged", privileged),
    baseline("procMount", proc_mount),
    baseline("seLinuxOptions", se_linux_options),
    baseline("seccompProfile_baseline", seccomp_profile_baseline),
    baseline("sysctls", sysctls),
    baseline("windowsHostProcess", windows_host_process),
    restricted(
        "allowPrivilegeEscalation",
        8,
        &[],
        allow_privilege_escalation,
    ),
    restricted(
        "capabilities_restricted",
        22,
        &["capabilities_baseline"],
        capabilities_restricted,
    ),
    restricted(
        "restrictedVolumes",
        0,
        &["hostPathVolumes"],
        restricted_volumes,
    ),
    restricted("runAsNonRoot", 0, &[], run_as_non_root),
    restricted("runAsUser", 23, &[], run_as_user),
    restricted(
        "seccompProfile_restricted",
        19,
        &["seccompProfile_baseline"],
        seccomp_profile_restricted,
    ),
];

/// `Evaluator.EvaluatePod`: the violations of a pod (its metadata and spec) against a level and
/// version, in upstream's order: the baseline checks (at restricted, those no restricted check
/// of that version overrides), then the restricted ones.
pub(crate) fn evaluate(lv: LevelVersion, meta: &Value, spec: &Value) -> Vec<Violation> {
    let minor = lv.version.minor();
    let applies = |c: &Check| c.since <= minor && c.level <= lv.level;
    let overridden = |id: &str| {
        lv.level == Level::Restricted
            && CHECKS
                .iter()
                .any(|c| applies(c) && c.overrides.contains(&id))
    };
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    CHECKS
        .iter()
        .filter(|c| applies(c) && !overridden(c.id))
        .filter_map(|c| (c.check)(meta, spec, minor))
        .collect()
}

// ---- helpers, as upstream's policy/helpers.go ----

/// `"a", "b"`.
fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", items.join("\", \""))
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, count: usize) -> &'a str {
    if count == 1 { singular } else { plural }
}

/// `container "a"` or `containers "a", "b"`.
fn containers_named(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Every container of a pod spec: init containers, containers, ephemeral containers (upstream's
/// `visitContainers`).
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |list| spec[list].as_array().into_iter().flatten())
}

fn name(container: &Value) -> String {
    container["name"].as_str().unwrap_or_default().to_owned()
}

/// A container's `securityContext` (null when unset).
fn sc(container: &Value) -> &Value {
    &container["securityContext"]
}

/// Whether the pod says it runs on Windows (`spec.os.name`).
fn is_windows(spec: &Value) -> bool {
    spec["os"]["name"] == "windows"
}

/// A sorted, deduplicated list (Go's `sets.String.List()`).
fn sorted(set: std::collections::BTreeSet<String>) -> Vec<String> {
    set.into_iter().collect()
}

// ---- the checks ----

/// `allowPrivilegeEscalation` (restricted, v1.8+; Windows pods exempt from v1.25).
fn allow_privilege_escalation(_: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    if minor >= 25 && is_windows(spec) {
        return None;
    }
    let bad: Vec<String> = containers(spec)
        .filter(|c| sc(c)["allowPrivilegeEscalation"].as_bool() != Some(false))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_named(&bad)
        ),
    )
}

/// `appArmorProfile` (baseline): `securityContext.appArmorProfile.type` only `RuntimeDefault` or
/// `Localhost`; the beta annotations only `runtime/default`, `localhost/*` or empty.
fn app_armor_profile(meta: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let allowed = |t: &Value| matches!(t.as_str(), Some("RuntimeDefault" | "Localhost"));
    let mut setters = Vec::new();
    let mut bad_values = std::collections::BTreeSet::new();
    let pod_profile = &spec["securityContext"]["appArmorProfile"];
    if pod_profile.is_object() && !allowed(&pod_profile["type"]) {
        setters.push("pod".to_owned());
        bad_values.insert(pod_profile["type"].as_str().unwrap_or_default().to_owned());
    }
    let mut bad_containers = Vec::new();
    for c in containers(spec) {
        let profile = &sc(c)["appArmorProfile"];
        if profile.is_object() && !allowed(&profile["type"]) {
            bad_containers.push(name(c));
            bad_values.insert(profile["type"].as_str().unwrap_or_default().to_owned());
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_named(&bad_containers));
    }
    let mut annotations: Vec<String> = meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or_default();
            let ok = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (k.starts_with("container.apparmor.security.beta.kubernetes.io/") && !ok)
                .then(|| format!("{k}={}", go_quote(v)))
        })
        .collect();
    let mut values = sorted(bad_values);
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_owned());
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

/// A string as Go's `%q` writes it (the characters a label value may hold need no more than
/// quotes and backslashes escaped).
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The capabilities a baseline container may add: the container runtime's default set.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities(c: &Value) -> impl Iterator<Item = &str> {
    sc(c)["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or_default())
}

/// `capabilities_baseline` (baseline, overlapped by restricted): only the default set added.
fn capabilities_baseline(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut caps = std::collections::BTreeSet::new();
    for c in containers(spec) {
        let mut valid = true;
        for cap in added_capabilities(c) {
            if !DEFAULT_CAPABILITIES.contains(&cap) {
                valid = false;
                caps.insert(cap.to_owned());
            }
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&bad),
            join_quote(&sorted(caps))
        ),
    )
}

/// `capabilities_restricted` (restricted, v1.22+; Windows pods exempt from v1.25): drop `ALL`,
/// add nothing but `NET_BIND_SERVICE`.
fn capabilities_restricted(_: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    if minor >= 25 && is_windows(spec) {
        return None;
    }
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut caps = std::collections::BTreeSet::new();
    for c in containers(spec) {
        let capabilities = &sc(c)["capabilities"];
        if !capabilities.is_object() {
            missing_drop.push(name(c));
            continue;
        }
        let dropped_all = capabilities["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d == "ALL");
        if !dropped_all {
            missing_drop.push(name(c));
        }
        let mut forbidden = false;
        for cap in added_capabilities(c) {
            if cap != "NET_BIND_SERVICE" {
                forbidden = true;
                caps.insert(cap.to_owned());
            }
        }
        if forbidden {
            adding.push(name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_named(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&adding),
            join_quote(&sorted(caps))
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

/// `hostNamespaces` (baseline): no `hostNetwork`, `hostPID`, `hostIPC`.
fn host_namespaces(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|f| spec[*f] == true)
        .map(|f| format!("{f}=true"))
        .collect();
    if set.is_empty() {
        return None;
    }
    violation("host namespaces", set.join(", "))
}

/// `hostPathVolumes` (baseline, overlapped by restricted's volume types).
fn host_path_volumes(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let bad: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["hostPath"].is_object())
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
    )
}

/// `hostPorts` (baseline): no `hostPort` on any container port.
fn host_ports(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = std::collections::BTreeSet::new();
    for c in containers(spec) {
        let mut valid = true;
        for p in c["ports"].as_array().into_iter().flatten() {
            let host_port = p["hostPort"].as_i64().unwrap_or(0);
            if host_port != 0 {
                valid = false;
                ports.insert(host_port.to_string());
            }
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let ports = sorted(ports);
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_named(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

/// `privileged` (baseline): no `securityContext.privileged=true`.
fn privileged(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let bad: Vec<String> = containers(spec)
        .filter(|c| sc(c)["privileged"] == true)
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_named(&bad)
        ),
    )
}

/// `procMount` (baseline): `securityContext.procMount` unset or `Default`.
fn proc_mount(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = std::collections::BTreeSet::new();
    for c in containers(spec) {
        if let Some(t) = sc(c)["procMount"].as_str()
            && t != "Default"
        {
            bad.push(name(c));
            types.insert(t.to_owned());
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_named(&bad),
            join_quote(&sorted(types))
        ),
    )
}

/// The volume sources restricted allows.
const ALLOWED_VOLUME_SOURCES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The volume sources restricted names when it refuses them, in upstream's order.
const RESTRICTED_VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

/// `restrictedVolumes` (restricted): only configMap, csi, downwardAPI, emptyDir, ephemeral,
/// persistentVolumeClaim, projected and secret volumes.
fn restricted_volumes(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = std::collections::BTreeSet::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        if ALLOWED_VOLUME_SOURCES.iter().any(|s| v[*s].is_object()) {
            continue;
        }
        bad.push(name(v));
        let kind = RESTRICTED_VOLUME_SOURCES
            .iter()
            .find(|s| v[**s].is_object())
            .copied()
            .unwrap_or("unknown");
        types.insert(kind.to_owned());
    }
    if bad.is_empty() {
        return None;
    }
    let types = sorted(types);
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

/// `runAsNonRoot` (restricted): `runAsNonRoot=true` on the pod, or on every container; never
/// `false`.
fn run_as_non_root(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut pod_non_root = false;
    match spec["securityContext"]["runAsNonRoot"].as_bool() {
        Some(false) => setters.push("pod".to_owned()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match sc(c)["runAsNonRoot"].as_bool() {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_non_root => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_named(&explicit));
    }
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    violation(
        "runAsNonRoot != true",
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_named(&implicit)
        ),
    )
}

/// `runAsUser` (restricted, v1.23+): never `runAsUser=0`.
fn run_as_user(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let mut setters = Vec::new();
    if spec["securityContext"]["runAsUser"] == 0 {
        setters.push("pod".to_owned());
    }
    let bad: Vec<String> = containers(spec)
        .filter(|c| sc(c)["runAsUser"] == 0)
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_named(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

/// `seLinuxOptions` (baseline): type empty or one of the container types (`container_engine_t`
/// from v1.31); no user or role.
fn se_linux_options(_: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    let mut bad_types = std::collections::BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |options: &Value| {
        let mut ok = true;
        let t = options["type"].as_str().unwrap_or_default();
        let allowed = matches!(
            t,
            "" | "container_t" | "container_init_t" | "container_kvm_t"
        ) || (minor >= 31 && t == "container_engine_t");
        if !allowed {
            ok = false;
            bad_types.insert(t.to_owned());
        }
        if !options["user"].as_str().unwrap_or_default().is_empty() {
            ok = false;
            set_user = true;
        }
        if !options["role"].as_str().unwrap_or_default().is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    let pod_options = &spec["securityContext"]["seLinuxOptions"];
    if pod_options.is_object() && !valid(pod_options) {
        setters.push("pod".to_owned());
    }
    let mut bad = Vec::new();
    for c in containers(spec) {
        let options = &sc(c)["seLinuxOptions"];
        if options.is_object() && !valid(options) {
            bad.push(name(c));
        }
    }
    if !bad.is_empty() {
        setters.push(containers_named(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        let types = sorted(bad_types);
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_owned());
    }
    if set_role {
        data.push("role may not be set".to_owned());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

fn valid_seccomp(t: &Value) -> bool {
    matches!(t.as_str(), Some("RuntimeDefault" | "Localhost"))
}

/// The seccomp profiles a pod and its containers set to something but `RuntimeDefault` or
/// `Localhost`: who set them (`pod`, `containers "a", "b"`), the values, and the containers
/// that set none while the pod sets no valid one either.
fn bad_seccomp(spec: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut setters = Vec::new();
    let mut values = std::collections::BTreeSet::new();
    let mut pod_set = false;
    let pod_profile = &spec["securityContext"]["seccompProfile"];
    if pod_profile.is_object() {
        if valid_seccomp(&pod_profile["type"]) {
            pod_set = true;
        } else {
            setters.push("pod".to_owned());
            values.insert(pod_profile["type"].as_str().unwrap_or_default().to_owned());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        let profile = &sc(c)["seccompProfile"];
        if profile.is_object() {
            if !valid_seccomp(&profile["type"]) {
                explicit.push(name(c));
                values.insert(profile["type"].as_str().unwrap_or_default().to_owned());
            }
        } else if !pod_set {
            implicit.push(name(c));
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_named(&explicit));
    }
    (setters, sorted(values), implicit)
}

/// `seccompProfile_baseline` (baseline, overlapped by restricted): before v1.19 the alpha
/// annotations, from v1.19 `securityContext.seccompProfile.type`, never `Unconfined`.
fn seccomp_profile_baseline(meta: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    if minor < 19 {
        let valid = |v: &str| {
            v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/")
        };
        let annotations = &meta["annotations"];
        let mut forbidden = std::collections::BTreeSet::new();
        let pod_key = "seccomp.security.alpha.kubernetes.io/pod";
        if let Some(v) = annotations[pod_key].as_str()
            && !valid(v)
        {
            forbidden.insert(format!("{pod_key}={}", go_quote(v)));
        }
        for c in containers(spec) {
            let key = format!("container.seccomp.security.alpha.kubernetes.io/{}", name(c));
            if let Some(v) = annotations[&key].as_str()
                && !valid(v)
            {
                forbidden.insert(format!("{key}={}", go_quote(v)));
            }
        }
        if forbidden.is_empty() {
            return None;
        }
        let forbidden = sorted(forbidden);
        return violation(
            "seccompProfile",
            format!(
                "forbidden {} {}",
                pluralize("annotation", "annotations", forbidden.len()),
                forbidden.join(", ")
            ),
        );
    }
    let (setters, values, _) = bad_seccomp(spec);
    if setters.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

/// `seccompProfile_restricted` (restricted, v1.19+; Windows pods exempt from v1.25): the pod or
/// every container sets `RuntimeDefault` or `Localhost`.
fn seccomp_profile_restricted(_: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    if minor >= 25 && is_windows(spec) {
        return None;
    }
    let (setters, values, implicit) = bad_seccomp(spec);
    if !setters.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&values)
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_named(&implicit)
        ),
    )
}

/// The safe sysctls, with the version each joined the set.
const SAFE_SYSCTLS: &[(&str, u32)] = &[
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
];

/// `sysctls` (baseline): only the safe set.
fn sysctls(_: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    let forbidden: Vec<&str> = spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["name"].as_str().unwrap_or_default())
        .filter(|n| {
            !SAFE_SYSCTLS
                .iter()
                .any(|(s, since)| s == n && minor >= *since)
        })
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

/// `windowsHostProcess` (baseline): no `windowsOptions.hostProcess=true`.
fn windows_host_process(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let host_process = |sc: &Value| sc["windowsOptions"]["hostProcess"] == true;
    let mut setters = Vec::new();
    if host_process(&spec["securityContext"]) {
        setters.push("pod".to_owned());
    }
    let bad: Vec<String> = containers(spec)
        .filter(|c| host_process(sc(c)))
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_named(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

// ---- admission ----

/// The workload kinds whose pod template is evaluated (warn and audit only), with where the
/// template is (upstream's `DefaultPodSpecExtractor`; Orrery serves no ReplicationControllers
/// or PodTemplates).
fn template_of<'a>(resource: &Resource, object: &'a Value) -> Option<&'a Value> {
    match (resource.group, resource.kind) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
            Some(&object["spec"]["template"])
        }
        ("batch", "CronJob") => Some(&object["spec"]["jobTemplate"]["spec"]["template"]),
        _ => None,
    }
}

/// Pod Security's say on a create (`old` is `None`) or an update of `object`: `Err` refuses the
/// write (a pod violating its namespace's `enforce` level: 403; a namespace with bad labels:
/// 422); `Ok` admits it, with the warnings to send.
pub(crate) async fn admit(
    api: &ApiServer,
    resource: &Resource,
    object: &Value,
    old: Option<(&Value, UpdateKind)>,
) -> Result<Vec<String>, ApiError> {
    // Subresources upstream skips: status, binding, finalize (and scale, below).
    if let Some((_, kind)) = old
        && !matches!(kind, UpdateKind::Main | UpdateKind::EphemeralContainers)
    {
        return Ok(Vec::new());
    }
    match (resource.group, resource.kind) {
        ("", "Namespace") => admit_namespace(api, resource, object, old.map(|(o, _)| o)).await,
        ("", "Pod") => {
            if let Some((old, _)) = old
                && !is_significant_pod_update(object, old)
            {
                return Ok(Vec::new());
            }
            let Some((policy, parsed)) = namespace_policy(api, object).await? else {
                return Ok(Vec::new());
            };
            if parsed && policy.enforce.level == Level::Privileged && fully_open(&policy) {
                return Ok(Vec::new());
            }
            let meta = &object["metadata"];
            evaluate_pod(&policy, meta, &object["spec"], true).map_err(|detail| {
                ApiError::Forbidden {
                    resource: resource.qualified(),
                    name: meta["name"].as_str().unwrap_or_default().to_owned(),
                    detail,
                }
            })
        }
        _ => {
            let Some(template) = template_of(resource, object) else {
                return Ok(Vec::new());
            };
            // The scale subresource changes nothing but `spec.replicas`: upstream never
            // evaluates a subresource of a workload.
            if let Some((old, _)) = old
                && only_replicas_changed(object, old)
            {
                return Ok(Vec::new());
            }
            // A namespace that cannot be read leaves a workload alone (upstream records it in
            // the audit annotations only).
            let Ok(Some((policy, parsed))) = namespace_policy(api, object).await else {
                return Ok(Vec::new());
            };
            if parsed && fully_open(&policy) {
                return Ok(Vec::new());
            }
            Ok(
                evaluate_pod(&policy, &template["metadata"], &template["spec"], false)
                    .unwrap_or_default(),
            )
        }
    }
}

/// Whether warn and audit are both `privileged` (nothing to tell).
fn fully_open(policy: &Policy) -> bool {
    policy.warn.level == Level::Privileged && policy.audit.level == Level::Privileged
}

/// Whether `new` differs from `old` only in `spec.replicas` (and what every write changes).
fn only_replicas_changed(new: &Value, old: &Value) -> bool {
    let strip = |o: &Value| {
        let mut o = o.clone();
        if let Some(m) = o["metadata"].as_object_mut() {
            for f in ["resourceVersion", "generation", "managedFields"] {
                m.remove(f);
            }
        }
        if let Some(s) = o["spec"].as_object_mut() {
            s.remove("replicas");
        }
        o
    };
    new["spec"]["replicas"] != old["spec"]["replicas"] && strip(new) == strip(old)
}

/// The policy of the namespace `object` lives in, and whether its labels parsed cleanly; `None`
/// when the object has no namespace.
async fn namespace_policy(
    api: &ApiServer,
    object: &Value,
) -> Result<Option<(Policy, bool)>, ApiError> {
    let Some(namespace) = object["metadata"]["namespace"].as_str() else {
        return Ok(None);
    };
    let namespaces = resources::find("", "v1", "namespaces").expect("served");
    let failed = || ApiError::Internal(format!("failed to lookup namespace {namespace:?}"));
    let kv = api
        .store()
        .get(&namespaces.key(None, namespace))
        .await
        .map_err(|_| failed())?
        .ok_or_else(failed)?;
    let ns = decode(&kv)?;
    let empty = Map::new();
    let (policy, causes) = policy_of(ns["metadata"]["labels"].as_object().unwrap_or(&empty));
    Ok(Some((policy, causes.is_empty())))
}

/// `EvaluatePod`: with `enforce`, `Err` holds why the pod is refused; otherwise the warnings
/// (none for a refused pod, as upstream adds none to a request it rejects). Audit is not
/// evaluated: there is no audit log to write to.
fn evaluate_pod(
    policy: &Policy,
    meta: &Value,
    spec: &Value,
    enforce: bool,
) -> Result<Vec<String>, String> {
    if enforce {
        let violations = evaluate(policy.enforce, meta, spec);
        if !violations.is_empty() {
            return Err(format!(
                "violates PodSecurity \"{}\": {}",
                policy.enforce,
                forbidden_detail(&violations)
            ));
        }
    }
    let violations = evaluate(policy.warn, meta, spec);
    if violations.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![format!(
        "would violate PodSecurity \"{}\": {}",
        policy.warn,
        forbidden_detail(&violations)
    )])
}

/// `isSignificantPodUpdate`: only a change of the containers' number or images, of the seccomp
/// annotations, or an added ephemeral container is evaluated again.
fn is_significant_pod_update(new: &Value, old: &Value) -> bool {
    let annotation = |pod: &Value, key: &str| {
        pod["metadata"]["annotations"][key]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let seccomp_pod = "seccomp.security.alpha.kubernetes.io/pod";
    if annotation(new, seccomp_pod) != annotation(old, seccomp_pod) {
        return true;
    }
    let significant = |c: &Value, o: &Value| {
        let key = format!("container.seccomp.security.alpha.kubernetes.io/{}", name(c));
        c["image"] != o["image"] || annotation(new, &key) != annotation(old, &key)
    };
    fn list<'a>(pod: &'a Value, list: &str) -> &'a [Value] {
        pod["spec"][list].as_array().map_or(&[], Vec::as_slice)
    }
    for l in ["containers", "initContainers"] {
        let (n, o) = (list(new, l), list(old, l));
        if n.len() != o.len() || n.iter().zip(o).any(|(c, o)| significant(c, o)) {
            return true;
        }
    }
    let old_ephemeral = list(old, "ephemeralContainers");
    list(new, "ephemeralContainers").iter().any(|c| {
        match old_ephemeral.iter().find(|o| o["name"] == c["name"]) {
            None => true,
            Some(o) => significant(c, o),
        }
    })
}

/// `ValidateNamespace`: labels must parse (on update, only if they changed how they fail); a
/// stricter `enforce` level is tried against the pods already in the namespace, as warnings.
async fn admit_namespace(
    api: &ApiServer,
    resource: &Resource,
    namespace: &Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let empty = Map::new();
    let labels = |ns: &Value| {
        ns["metadata"]["labels"]
            .as_object()
            .unwrap_or(&empty)
            .clone()
    };
    let name = namespace["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (policy, causes) = policy_of(&labels(namespace));
    let invalid = |causes: Vec<Cause>| ApiError::Invalid {
        group: resource.group.into(),
        kind: resource.kind.into(),
        name: name.clone(),
        causes,
    };
    let Some(old) = old else {
        return if causes.is_empty() {
            Ok(Vec::new())
        } else {
            Err(invalid(causes))
        };
    };
    let (old_policy, old_causes) = policy_of(&labels(old));
    if !causes.is_empty() && (old_causes.is_empty() || causes != old_causes) {
        return Err(invalid(causes));
    }
    let (new, was) = (policy.enforce, old_policy.enforce);
    if new == was
        || new.level == Level::Privileged
        || (new.version == was.version && new.level <= was.level)
    {
        return Ok(Vec::new());
    }
    let pods = resources::find("", "v1", "pods").expect("served");
    let listed = match api
        .store()
        .range(&RangeRequest::prefix(pods.key_prefix(Some(&name))))
        .await
    {
        Ok(listed) => listed,
        Err(_) => {
            return Ok(vec![
                "failed to list pods while checking new PodSecurity enforce level".into(),
            ]);
        }
    };
    let pods: Vec<Value> = listed.kvs.iter().filter_map(|kv| decode(kv).ok()).collect();
    Ok(existing_pod_warnings(&name, new, &pods))
}

/// `EvaluatePodsInNamespace`: one pod per controller first, at most [`MAX_PODS_TO_CHECK`], one
/// warning per distinct set of reasons naming the lexically first pod with it.
fn existing_pod_warnings(namespace: &str, enforce: LevelVersion, pods: &[Value]) -> Vec<String> {
    let mut first = Vec::new();
    let mut again = Vec::new();
    let mut controllers = std::collections::HashSet::new();
    for pod in pods {
        let controller = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true)
            .and_then(|r| r["uid"].as_str());
        match controller {
            Some(uid) if !controllers.insert(uid) => again.push(pod),
            _ => first.push(pod),
        }
    }
    first.extend(again);
    let total = first.len();
    first.truncate(MAX_PODS_TO_CHECK);
    let checked = first.len();
    // reasons -> (lexically first pod, count), in the order first seen.
    let mut seen: Vec<(String, String, usize)> = Vec::new();
    for pod in first {
        let violations = evaluate(enforce, &pod["metadata"], &pod["spec"]);
        if violations.is_empty() {
            continue;
        }
        let reason = forbidden_reason(&violations);
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
        match seen.iter_mut().find(|(r, _, _)| *r == reason) {
            Some((_, first_name, count)) => {
                if pod_name < first_name.as_str() {
                    *first_name = pod_name.to_owned();
                }
                *count += 1;
            }
            None => seen.push((reason, pod_name.to_owned(), 1)),
        }
    }
    let mut warnings = Vec::new();
    if checked < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
        ));
    }
    if !seen.is_empty() {
        warnings.push(format!(
            "existing pods in namespace {namespace:?} violate the new PodSecurity enforce level \"{enforce}\""
        ));
    }
    let mut per_pod: Vec<String> = seen
        .into_iter()
        .map(|(reason, pod, count)| match count {
            1 => format!("{pod}: {reason}"),
            2 => format!("{pod} (and 1 other pod): {reason}"),
            n => format!("{pod} (and {} other pods): {reason}", n - 1),
        })
        .collect();
    per_pod.sort();
    warnings.extend(per_pod);
    warnings
}

#[cfg(test)]
mod tests;
