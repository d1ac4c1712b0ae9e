//! What kube-apiserver does to PersistentVolumes, PersistentVolumeClaims and StorageClasses
//! before it stores them: their strategies (defaults, `PrepareForCreate`/`PrepareForUpdate`,
//! validation with upstream's field paths and words, what an update may not change) and the
//! admission plugins that concern them: DefaultStorageClass (a claim without a class gets the
//! default one), StorageObjectInUseProtection (the `kubernetes.io/pvc-protection` and
//! `kubernetes.io/pv-protection` finalizers on create) and PersistentVolumeClaimResize (only a
//! bound claim of a class that allows expansion may grow).
//!
//! One difference on purpose: where upstream appends Go's `cmp.Diff` of the old and new spec to
//! an immutability error (a format `cmp` itself keeps unstable), this writes a report of the same
//! shape naming the changed fields, with their values as JSON rather than Go literals.

use serde_json::{Map, Value, json};

use super::errors::{ApiError, Cause, from_store};
use super::resources::{self, Resource};
use super::{ApiServer, decode};
use crate::store::RangeRequest;

use crate::apimachinery::storage::{
    BETA_IS_DEFAULT_CLASS, BETA_STORAGE_CLASS, IS_DEFAULT_CLASS, PV_PROTECTION, PVC_PROTECTION,
};

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const PV_RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
const CLASS_RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];
const NOT_POSITIVE: &str = "must be greater than zero";

/// The volume sources a PersistentVolume may have (`PersistentVolumeSource`, inline in its
/// spec): exactly one.
const PV_SOURCES: &[&str] = &[
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "nfs",
    "rbd",
    "iscsi",
    "cinder",
    "cephfs",
    "fc",
    "flocker",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

fn is(resource: &Resource, group: &str, kind: &str) -> bool {
    (resource.group, resource.kind) == (group, kind)
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_owned(), value);
    }
}

fn object_at<'a>(value: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !value[key].is_object() {
        value[key] = json!({});
    }
    value[key].as_object_mut().expect("just made an object")
}

fn add_finalizer(object: &mut Value, finalizer: &str) {
    let meta = object_at(object, "metadata");
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let list = list.as_array_mut().expect("an array");
    if !list.iter().any(|f| f == finalizer) {
        list.push(json!(finalizer));
    }
}

/// The defaults of the storage kinds (`SetDefaults_PersistentVolume`, `..._StorageClass`).
pub(crate) fn default(resource: &Resource, object: &mut Value) {
    if is(resource, "", "PersistentVolume") {
        let spec = object_at(object, "spec");
        set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        set_default(spec, "volumeMode", json!("Filesystem"));
        if let Some(host) = spec.get_mut("hostPath").and_then(Value::as_object_mut) {
            set_default(host, "type", json!(""));
        }
        set_default(object_at(object, "status"), "phase", json!("Pending"));
    } else if is(resource, "storage.k8s.io", "StorageClass") {
        let class = object.as_object_mut().expect("an object");
        set_default(class, "reclaimPolicy", json!("Delete"));
        set_default(class, "volumeBindingMode", json!("Immediate"));
    }
}

/// What only a create does: a new volume starts Pending (with its transition time), a new
/// claim with an empty status; both get their protection finalizer (StorageObjectInUseProtection).
pub(crate) fn prepare_for_create(resource: &Resource, object: &mut Value) {
    if is(resource, "", "PersistentVolume") {
        object["status"] = json!({"phase": "Pending", "lastPhaseTransitionTime": now()});
        add_finalizer(object, PV_PROTECTION);
    } else if is(resource, "", "PersistentVolumeClaim") {
        object["status"] = json!({});
        add_finalizer(object, PVC_PROTECTION);
    }
}

/// What an update does beyond the generic path: a volume whose phase changes gets a new
/// `lastPhaseTransitionTime` (unless the writer set a newer one); an unchanged phase keeps the
/// old time.
pub(crate) fn prepare_for_update(resource: &Resource, new: &mut Value, old: &Value) {
    if !is(resource, "", "PersistentVolume") {
        return;
    }
    let (old_status, new_status) = (&old["status"], &new["status"]);
    let given = &new_status["lastPhaseTransitionTime"];
    if old_status["phase"] == new_status["phase"] {
        if given.is_null() && !old_status["lastPhaseTransitionTime"].is_null() {
            new["status"]["lastPhaseTransitionTime"] =
                old_status["lastPhaseTransitionTime"].clone();
        }
    } else if given.is_null() || *given == old_status["lastPhaseTransitionTime"] {
        object_at(new, "status").insert("lastPhaseTransitionTime".into(), json!(now()));
    }
}

/// A quantity's value in bytes, for comparisons; `None` when it does not parse.
pub(crate) fn storage_bytes(quantity: &Value) -> Option<i64> {
    quantity
        .as_str()
        .and_then(|q| crate::apimachinery::quantity::bytes(q).ok())
}

fn validate_access_modes(field: &str, modes: &Value, causes: &mut Vec<Cause>) {
    let list = modes.as_array().map(Vec::as_slice).unwrap_or_default();
    for mode in list {
        let text = mode.as_str().unwrap_or_default();
        if !ACCESS_MODES.contains(&text) {
            causes.push(Cause::unsupported(field, mode, ACCESS_MODES));
        }
    }
    if list.len() > 1 && list.iter().any(|m| m == "ReadWriteOncePod") {
        causes.push(Cause::forbidden(
            field,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn validate_class_name(field: &str, name: &Value, causes: &mut Vec<Cause>) {
    if let Some(text) = name.as_str().filter(|t| !t.is_empty())
        && !super::admission::is_dns1123_subdomain(text)
    {
        causes.push(Cause::invalid(
            field,
            name,
            super::admission::DNS1123_SUBDOMAIN,
        ));
    }
}

fn validate_volume_mode(field: &str, mode: &Value, causes: &mut Vec<Cause>) {
    if let Some(text) = mode.as_str()
        && !VOLUME_MODES.contains(&text)
    {
        causes.push(Cause::unsupported(field, mode, VOLUME_MODES));
    }
}

fn validate_positive(field: &str, quantity: &Value, causes: &mut Vec<Cause>) {
    match storage_bytes(quantity) {
        None => causes.push(Cause::invalid(
            field,
            quantity,
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        )),
        Some(n) if n <= 0 => causes.push(Cause::invalid(field, quantity, NOT_POSITIVE)),
        Some(_) => {}
    }
}

/// A path without `..` elements (`validatePathNoBacksteps`).
fn validate_no_backsteps(field: &str, path: &str, causes: &mut Vec<Cause>) {
    if path.split('/').any(|part| part == "..") {
        causes.push(Cause::invalid(field, &json!(path), "must not contain '..'"));
    }
}

/// `ValidatePersistentVolumeSpec`.
fn validate_pv_spec(spec: &Value, causes: &mut Vec<Cause>) {
    if spec["accessModes"]
        .as_array()
        .is_none_or(|modes| modes.is_empty())
    {
        causes.push(Cause::required("spec.accessModes"));
    }
    validate_access_modes("spec.accessModes", &spec["accessModes"], causes);
    let capacity = spec["capacity"].as_object();
    if capacity.is_none_or(Map::is_empty) {
        causes.push(Cause::required("spec.capacity"));
    }
    if let Some(capacity) = capacity {
        if !capacity.contains_key("storage") || capacity.len() > 1 {
            causes.push(Cause::unsupported(
                "spec.capacity",
                &Value::Object(capacity.clone()),
                &["storage"],
            ));
        }
        for (resource, quantity) in capacity {
            validate_positive(&format!("spec.capacity[{resource}]"), quantity, causes);
        }
    }
    let policy = &spec["persistentVolumeReclaimPolicy"];
    if let Some(text) = policy.as_str().filter(|p| !p.is_empty())
        && !PV_RECLAIM_POLICIES.contains(&text)
    {
        causes.push(Cause::unsupported(
            "spec.persistentVolumeReclaimPolicy",
            policy,
            PV_RECLAIM_POLICIES,
        ));
    }
    let affinity = &spec["nodeAffinity"];
    if affinity.is_object() && affinity["required"].is_null() {
        causes.push(Cause::required_because(
            "spec.nodeAffinity.required",
            "must specify required node constraints",
        ));
    }
    let mut sources = 0;
    for source in PV_SOURCES {
        if !spec[*source].is_object() {
            continue;
        }
        if sources > 0 {
            causes.push(Cause::forbidden(
                format!("spec.{source}"),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        sources += 1;
        match *source {
            "hostPath" => {
                let path = spec["hostPath"]["path"].as_str().unwrap_or_default();
                if path.is_empty() {
                    causes.push(Cause::required("spec.hostPath.path"));
                }
                validate_no_backsteps("spec.hostPath.path", path, causes);
            }
            "local" => {
                let path = spec["local"]["path"].as_str().unwrap_or_default();
                if path.is_empty() {
                    causes.push(Cause::required("spec.local.path"));
                }
                validate_no_backsteps("spec.local.path", path, causes);
                if !affinity.is_object() {
                    causes.push(Cause::required_because(
                        "spec.nodeAffinity",
                        "Local volume requires node affinity",
                    ));
                }
            }
            _ => {}
        }
    }
    if sources == 0 {
        causes.push(Cause::required_because(
            "spec",
            "must specify a volume type",
        ));
    }
    let root = spec["hostPath"]["path"]
        .as_str()
        .is_some_and(|p| p.trim_end_matches('/').is_empty() && !p.is_empty());
    if root && spec["persistentVolumeReclaimPolicy"] == "Recycle" {
        causes.push(Cause::forbidden(
            "spec.persistentVolumeReclaimPolicy",
            "may not be 'recycle' for a hostPath mount of '/'",
        ));
    }
    validate_class_name("spec.storageClassName", &spec["storageClassName"], causes);
    validate_volume_mode("spec.volumeMode", &spec["volumeMode"], causes);
}

/// `ValidatePersistentVolumeClaimSpec`.
fn validate_pvc_spec(spec: &Value, causes: &mut Vec<Cause>) {
    if spec["accessModes"]
        .as_array()
        .is_none_or(|modes| modes.is_empty())
    {
        causes.push(Cause::required_because(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    validate_access_modes("spec.accessModes", &spec["accessModes"], causes);
    match &spec["resources"]["requests"]["storage"] {
        Value::Null => causes.push(Cause::required("spec.resources[storage]")),
        quantity => validate_positive("spec.resources[storage]", quantity, causes),
    }
    validate_class_name("spec.storageClassName", &spec["storageClassName"], causes);
    validate_volume_mode("spec.volumeMode", &spec["volumeMode"], causes);
}

/// `ValidateStorageClass` (its name is checked with every object's metadata).
fn validate_storage_class(class: &Value, causes: &mut Vec<Cause>) {
    let provisioner = class["provisioner"].as_str().unwrap_or_default();
    if provisioner.is_empty() {
        causes.push(Cause::required("provisioner"));
    } else {
        causes.extend(super::admission::qualified_name_causes(
            "provisioner",
            &provisioner.to_lowercase(),
        ));
    }
    let policy = &class["reclaimPolicy"];
    if let Some(text) = policy.as_str().filter(|p| !p.is_empty())
        && !CLASS_RECLAIM_POLICIES.contains(&text)
    {
        causes.push(Cause::unsupported(
            "reclaimPolicy",
            policy,
            CLASS_RECLAIM_POLICIES,
        ));
    }
    match &class["volumeBindingMode"] {
        Value::Null => causes.push(Cause::required("volumeBindingMode")),
        mode if !BINDING_MODES.contains(&mode.as_str().unwrap_or_default()) => {
            causes.push(Cause::unsupported("volumeBindingMode", mode, BINDING_MODES))
        }
        _ => {}
    }
}

/// Validates a storage object, new or updated (`old` on update).
pub(crate) fn validate(resource: &Resource, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    if is(resource, "", "PersistentVolume") {
        validate_pv_spec(&object["spec"], &mut causes);
        if let Some(old) = old {
            validate_pv_update(object, old, &mut causes);
        }
    } else if is(resource, "", "PersistentVolumeClaim") {
        validate_pvc_spec(&object["spec"], &mut causes);
        if let Some(old) = old {
            validate_pvc_update(object, old, &mut causes);
        }
    } else if is(resource, "storage.k8s.io", "StorageClass") {
        validate_storage_class(object, &mut causes);
        if let Some(old) = old {
            validate_storage_class_update(object, old, &mut causes);
        }
    }
    causes
}

/// The top-level fields of `old` and `new` (a value of Go type `go_type`) that differ, in the
/// shape of `cmp.Diff`'s report: `-` the old, `+` the new, fields by their Go names.
fn changed_fields(go_type: &str, old: &Value, new: &Value) -> String {
    let empty = Map::new();
    let (a, b) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let go_name = |key: &str| {
        let mut chars = key.chars();
        chars
            .next()
            .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
            .unwrap_or_default()
    };
    let mut lines = vec![format!("  {go_type}{{")];
    let mut same = 0;
    for key in keys {
        let (x, y) = (
            a.get(key).unwrap_or(&Value::Null),
            b.get(key).unwrap_or(&Value::Null),
        );
        if x == y {
            same += 1;
        } else {
            lines.push(format!("- \t{}: {x},", go_name(key)));
            lines.push(format!("+ \t{}: {y},", go_name(key)));
        }
    }
    if same > 0 {
        lines.push(format!("  \t... // {same} identical fields"));
    }
    lines.push("  }".into());
    lines.join("\n")
}

fn validate_pv_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let source = |pv: &Value| {
        let spec = &pv["spec"];
        let picked: Map<String, Value> = PV_SOURCES
            .iter()
            .filter(|s| !spec[**s].is_null())
            .map(|s| ((*s).to_owned(), spec[*s].clone()))
            .collect();
        Value::Object(picked)
    };
    let (old_source, new_source) = (source(old), source(new));
    if old_source != new_source {
        causes.push(Cause::forbidden(
            "spec.persistentvolumesource",
            format!(
                "spec.persistentvolumesource is immutable after creation\n{}",
                changed_fields("core.PersistentVolumeSource", &old_source, &new_source)
            ),
        ));
    }
    let (a, b) = (&new["spec"]["volumeMode"], &old["spec"]["volumeMode"]);
    if a != b {
        causes.push(Cause::invalid("volumeMode", a, "field is immutable"));
    }
    let (a, b) = (&new["spec"]["nodeAffinity"], &old["spec"]["nodeAffinity"]);
    if !b.is_null() && a != b {
        causes.push(Cause::invalid("nodeAffinity", a, "field is immutable"));
    }
}

/// `ValidatePersistentVolumeClaimUpdate`: the spec is immutable but for the volume's name (set
/// once, by the binder), a class given to a claim that had none (the retroactive default), and
/// a bound claim's storage request, which may grow, or shrink back to above what it has.
fn validate_pvc_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let (mut old_spec, mut new_spec) = (old["spec"].clone(), new["spec"].clone());
    // Sets (or, for null, removes) a field, so that compared specs have the same keys.
    let put = |spec: &mut Value, key: &str, value: Value| {
        if let Some(map) = spec.as_object_mut() {
            match value {
                Value::Null => map.remove(key),
                value => map.insert(key.to_owned(), value),
            };
        }
    };
    if old_spec["volumeName"].as_str().is_none_or(str::is_empty) {
        let name = new_spec["volumeName"].clone();
        put(&mut old_spec, "volumeName", name);
    }
    let old_annotation = &old["metadata"]["annotations"][BETA_STORAGE_CLASS];
    let new_annotation = &new["metadata"]["annotations"][BETA_STORAGE_CLASS];
    if old_annotation != new_annotation {
        causes.push(Cause::invalid(
            format!("metadata.annotations[{BETA_STORAGE_CLASS}]"),
            new_annotation,
            "field is immutable",
        ));
    }
    if old_annotation.is_null()
        && old_spec["storageClassName"].is_null()
        && !new_spec["storageClassName"].is_null()
    {
        put(&mut new_spec, "storageClassName", Value::Null);
    }
    if new["status"]["phase"] == "Bound" && new_spec["resources"]["requests"].is_object() {
        new_spec["resources"]["requests"]["storage"] =
            old_spec["resources"]["requests"]["storage"].clone();
    }
    if old_spec != new_spec {
        causes.push(Cause::forbidden(
            "spec",
            format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                changed_fields("core.PersistentVolumeClaimSpec", &old_spec, &new_spec)
            ),
        ));
    }
    let size = |v: &Value| storage_bytes(v).unwrap_or(0);
    let old_size = size(&old["spec"]["resources"]["requests"]["storage"]);
    let new_size = size(&new["spec"]["resources"]["requests"]["storage"]);
    let status_size = size(&old["status"]["capacity"]["storage"]);
    // RecoverVolumeExpansionFailure (beta, on): a request may come back down, but not to what
    // the claim already has.
    if new_size < old_size && new_size <= status_size {
        causes.push(Cause::forbidden(
            "spec.resources.requests.storage",
            "field can not be less than status.capacity",
        ));
    }
    let (a, b) = (&new["spec"]["volumeMode"], &old["spec"]["volumeMode"]);
    if a != b {
        causes.push(Cause::invalid("volumeMode", a, "field is immutable"));
    }
}

fn validate_storage_class_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let parameters = |c: &Value| match &c["parameters"] {
        Value::Object(m) if m.is_empty() => Value::Null,
        other => other.clone(),
    };
    if parameters(new) != parameters(old) {
        causes.push(Cause::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if new["provisioner"] != old["provisioner"] {
        causes.push(Cause::forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    if new["reclaimPolicy"] != old["reclaimPolicy"] {
        causes.push(Cause::forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    let (a, b) = (&new["volumeBindingMode"], &old["volumeBindingMode"]);
    if a != b {
        causes.push(Cause::invalid("volumeBindingMode", a, "field is immutable"));
    }
}

/// Whether a StorageClass is marked default.
pub(crate) fn is_default_class(class: &Value) -> bool {
    let annotations = &class["metadata"]["annotations"];
    [IS_DEFAULT_CLASS, BETA_IS_DEFAULT_CLASS]
        .iter()
        .any(|key| annotations[*key].as_str() == Some("true"))
}

/// The default StorageClass (upstream's `GetDefaultClass`): of the classes marked default, the
/// newest, and of equally new ones the first by name.
pub(crate) fn default_class(classes: &[Value]) -> Option<String> {
    let mut defaults: Vec<(&str, &str)> = classes
        .iter()
        .filter(|c| is_default_class(c))
        .map(|c| {
            (
                c["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default(),
                c["metadata"]["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    // RFC 3339 in UTC sorts as time does.
    defaults.sort_by(|a, b| b.0.cmp(a.0).then_with(|| a.1.cmp(b.1)));
    defaults.first().map(|(_, name)| (*name).to_owned())
}

/// Whether a claim names a class (its `storageClassName`, even `""`, or the beta annotation).
fn has_class(claim: &Value) -> bool {
    !claim["spec"]["storageClassName"].is_null()
        || claim["metadata"]["annotations"][BETA_STORAGE_CLASS].is_string()
}

async fn storage_classes(api: &ApiServer) -> Result<Vec<Value>, ApiError> {
    let classes = resources::find("storage.k8s.io", "v1", "storageclasses").expect("served");
    let listed = api
        .store()
        .range(&RangeRequest::prefix(classes.key_prefix(None)))
        .await
        .map_err(|e| from_store(e, "storageclasses.storage.k8s.io", ""))?;
    Ok(listed.kvs.iter().filter_map(|kv| decode(kv).ok()).collect())
}

/// The DefaultStorageClass admission plugin: a new claim that names no class gets the default
/// one, when there is one.
pub(crate) async fn admit_default_class(
    api: &ApiServer,
    claim: &mut Value,
) -> Result<(), ApiError> {
    if has_class(claim) {
        return Ok(());
    }
    if let Some(name) = default_class(&storage_classes(api).await?) {
        object_at(claim, "spec").insert("storageClassName".into(), json!(name));
    }
    Ok(())
}

/// Why the PersistentVolumeClaimResize admission plugin refuses a claim's growth, if it does:
/// only bound claims grow, and only if their class says `allowVolumeExpansion: true` (`class`:
/// the claim's class, if it exists).
pub(crate) fn resize_refusal(
    new: &Value,
    old: &Value,
    class: Option<&Value>,
) -> Option<&'static str> {
    let size =
        |v: &Value| storage_bytes(&v["spec"]["resources"]["requests"]["storage"]).unwrap_or(0);
    if size(new) <= size(old) {
        return None;
    }
    if old["status"]["phase"] != "Bound" {
        return Some("Only bound persistent volume claims can be expanded");
    }
    if class.is_none_or(|c| c["allowVolumeExpansion"] != true) {
        return Some(
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        );
    }
    None
}

/// The PersistentVolumeClaimResize admission plugin, on an update of a claim.
pub(crate) async fn admit_resize(
    api: &ApiServer,
    new: &Value,
    old: &Value,
) -> Result<(), ApiError> {
    let grows = storage_bytes(&new["spec"]["resources"]["requests"]["storage"])
        > storage_bytes(&old["spec"]["resources"]["requests"]["storage"]);
    if !grows {
        return Ok(());
    }
    let class_name = match old["metadata"]["annotations"][BETA_STORAGE_CLASS].as_str() {
        Some(name) => name.to_owned(),
        None => old["spec"]["storageClassName"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let classes = storage_classes(api).await?;
    let class = classes
        .iter()
        .find(|c| !class_name.is_empty() && c["metadata"]["name"] == class_name.as_str());
    match resize_refusal(new, old, class) {
        None => Ok(()),
        Some(detail) => Err(ApiError::Forbidden {
            resource: "persistentvolumeclaims".into(),
            name: new["metadata"]["name"].as_str().unwrap_or_default().into(),
            detail: detail.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::find;

    fn messages(causes: Vec<Cause>) -> Vec<(String, String)> {
        causes.into_iter().map(|c| (c.field, c.message)).collect()
    }

    #[test]
    fn volumes_default_and_validate_as_upstream() {
        let pvs = find("", "v1", "persistentvolumes").unwrap();
        let mut pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data"}}});
        prepare_for_create(pvs, &mut pv);
        default(pvs, &mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["spec"]["hostPath"]["type"], "");
        assert_eq!(pv["status"]["phase"], "Pending");
        assert!(pv["status"]["lastPhaseTransitionTime"].is_string());
        assert_eq!(pv["metadata"]["finalizers"], json!([PV_PROTECTION]));
        assert!(validate(pvs, &pv, None).is_empty());

        let cases = [
            (
                json!({}),
                vec![
                    ("spec.accessModes", "Required value"),
                    ("spec.capacity", "Required value"),
                    ("spec", "Required value: must specify a volume type"),
                ],
            ),
            (
                json!({"capacity": {"storage": "0"}, "accessModes": ["ReadWriteSometimes"], "local": {"path": "/a/../b"}, "hostPath": {"path": "/x"}, "persistentVolumeReclaimPolicy": "Keep"}),
                vec![
                    (
                        "spec.accessModes",
                        "Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                    ),
                    (
                        "spec.capacity[storage]",
                        "Invalid value: \"0\": must be greater than zero",
                    ),
                    (
                        "spec.persistentVolumeReclaimPolicy",
                        "Unsupported value: \"Keep\": supported values: \"Delete\", \"Recycle\", \"Retain\"",
                    ),
                    (
                        "spec.local",
                        "Forbidden: may not specify more than 1 volume type",
                    ),
                ],
            ),
            (
                json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/a/../b"}}),
                vec![
                    (
                        "spec.local.path",
                        "Invalid value: \"/a/../b\": must not contain '..'",
                    ),
                    (
                        "spec.nodeAffinity",
                        "Required value: Local volume requires node affinity",
                    ),
                ],
            ),
        ];
        for (spec, want) in cases {
            let pv = json!({"metadata": {"name": "pv"}, "spec": spec});
            let got = messages(validate(pvs, &pv, None));
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(f, m)| (f.to_owned(), m.to_owned()))
                .collect();
            assert_eq!(got, want, "{spec}");
        }
        // The source and mode are immutable; affinity once set.
        let mut changed = pv.clone();
        changed["spec"]["hostPath"]["path"] = json!("/elsewhere");
        let got = messages(validate(pvs, &changed, Some(&pv)));
        assert_eq!(got[0].0, "spec.persistentvolumesource");
        assert!(
            got[0].1.starts_with(
                "Forbidden: spec.persistentvolumesource is immutable after creation\n"
            )
        );
    }

    #[test]
    fn a_volume_records_when_its_phase_changed() {
        let pvs = find("", "v1", "persistentvolumes").unwrap();
        let old = json!({"status": {"phase": "Available", "lastPhaseTransitionTime": "2020-01-01T00:00:00Z"}});
        let mut same = json!({"status": {"phase": "Available"}});
        prepare_for_update(pvs, &mut same, &old);
        assert_eq!(
            same["status"]["lastPhaseTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        let mut bound = json!({"status": {"phase": "Bound", "lastPhaseTransitionTime": "2020-01-01T00:00:00Z"}});
        prepare_for_update(pvs, &mut bound, &old);
        assert_ne!(
            bound["status"]["lastPhaseTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
    }

    #[test]
    fn claims_validate_and_stay_immutable_but_for_growth() {
        let pvcs = find("", "v1", "persistentvolumeclaims").unwrap();
        let mut claim = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Filesystem"}});
        prepare_for_create(pvcs, &mut claim);
        assert_eq!(claim["metadata"]["finalizers"], json!([PVC_PROTECTION]));
        assert!(validate(pvcs, &claim, None).is_empty());
        let bad = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "Not_A_Name", "volumeMode": "Raw"}});
        assert_eq!(
            messages(validate(pvcs, &bad, None)),
            [
                (
                    "spec.accessModes".to_owned(),
                    "Required value: at least 1 access mode is required".to_owned()
                ),
                (
                    "spec.resources[storage]".to_owned(),
                    "Required value".to_owned()
                ),
                (
                    "spec.storageClassName".to_owned(),
                    format!(
                        "Invalid value: \"Not_A_Name\": {}",
                        super::super::admission::DNS1123_SUBDOMAIN
                    )
                ),
                (
                    "spec.volumeMode".to_owned(),
                    "Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\""
                        .to_owned()
                ),
            ]
        );
        // Binding: the volume name once; the class once when there was none.
        let mut bound = claim.clone();
        bound["spec"]["volumeName"] = json!("pv1");
        bound["spec"]["storageClassName"] = json!("standard");
        assert!(validate(pvcs, &bound, Some(&claim)).is_empty());
        // Another access mode: refused, naming the field.
        let mut modes = claim.clone();
        modes["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        let got = messages(validate(pvcs, &modes, Some(&claim)));
        assert_eq!(got.len(), 1);
        assert!(got[0].1.starts_with("Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n  core.PersistentVolumeClaimSpec{\n- \tAccessModes"), "{got:?}");
        // Growth: only once bound, and a shrink never below the status.
        let mut grown = claim.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(messages(validate(pvcs, &grown, Some(&claim)))[0].0, "spec");
        let mut was_bound = bound.clone();
        was_bound["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
        let mut grown = was_bound.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(validate(pvcs, &grown, Some(&was_bound)).is_empty());
        let mut shrunk = grown.clone();
        shrunk["spec"]["resources"]["requests"]["storage"] = json!("512Mi");
        assert_eq!(
            messages(validate(pvcs, &shrunk, Some(&grown))),
            [(
                "spec.resources.requests.storage".to_owned(),
                "Forbidden: field can not be less than status.capacity".to_owned()
            )]
        );
    }

    #[test]
    fn classes_default_validate_and_keep_their_policy() {
        let classes = find("storage.k8s.io", "v1", "storageclasses").unwrap();
        let mut class = json!({"metadata": {"name": "fast"}, "provisioner": "example.com/fast"});
        default(classes, &mut class);
        assert_eq!(class["reclaimPolicy"], "Delete");
        assert_eq!(class["volumeBindingMode"], "Immediate");
        assert!(validate(classes, &class, None).is_empty());
        let bad = json!({"metadata": {"name": "x"}, "reclaimPolicy": "Recycle", "volumeBindingMode": "Later"});
        assert_eq!(
            messages(validate(classes, &bad, None)),
            [
                ("provisioner".to_owned(), "Required value".to_owned()),
                ("reclaimPolicy".to_owned(), "Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"".to_owned()),
                ("volumeBindingMode".to_owned(), "Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"".to_owned()),
            ]
        );
        let mut changed = class.clone();
        changed["reclaimPolicy"] = json!("Retain");
        changed["provisioner"] = json!("example.com/slow");
        changed["allowVolumeExpansion"] = json!(true);
        assert_eq!(
            messages(validate(classes, &changed, Some(&class))),
            [
                (
                    "provisioner".to_owned(),
                    "Forbidden: updates to provisioner are forbidden.".to_owned()
                ),
                (
                    "reclaimPolicy".to_owned(),
                    "Forbidden: updates to reclaimPolicy are forbidden.".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn the_newest_default_class_is_the_default() {
        let class = |name: &str, created: &str, default: &str| json!({"metadata": {"name": name, "creationTimestamp": created, "annotations": {IS_DEFAULT_CLASS: default}}});
        assert_eq!(default_class(&[]), None);
        let classes = [
            class("old", "2020-01-01T00:00:00Z", "true"),
            class("newer", "2021-01-01T00:00:00Z", "true"),
            class("newest", "2022-01-01T00:00:00Z", "false"),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("newer"));
        let tie = [
            class("b", "2021-01-01T00:00:00Z", "true"),
            class("a", "2021-01-01T00:00:00Z", "true"),
        ];
        assert_eq!(default_class(&tie).as_deref(), Some("a"));
    }

    #[test]
    fn only_bound_claims_of_expandable_classes_grow() {
        let claim = |size: &str, phase: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}, "status": {"phase": phase}});
        let expandable = json!({"allowVolumeExpansion": true});
        let fixed = json!({});
        assert_eq!(
            resize_refusal(&claim("1Gi", "Bound"), &claim("1Gi", "Bound"), None),
            None
        );
        assert_eq!(
            resize_refusal(
                &claim("2Gi", "Pending"),
                &claim("1Gi", "Pending"),
                Some(&expandable)
            ),
            Some("Only bound persistent volume claims can be expanded")
        );
        assert!(
            resize_refusal(&claim("2Gi", "Bound"), &claim("1Gi", "Bound"), Some(&fixed)).is_some()
        );
        assert_eq!(
            resize_refusal(
                &claim("2Gi", "Bound"),
                &claim("1Gi", "Bound"),
                Some(&expandable)
            ),
            None
        );
    }
}
