//! The ServiceAccount admission plugin: a new pod runs as a service account (`default` unless it
//! names one), which must exist, and, unless the pod or the account turns
//! `automountServiceAccountToken` off, gets the `kube-api-access-<suffix>` projected volume
//! (a bound token for the account, the cluster's CA from the `kube-root-ca.crt` ConfigMap and
//! the pod's namespace) mounted at `/var/run/secrets/kubernetes.io/serviceaccount` in every
//! container and init container, as upstream's `plugin/pkg/admission/serviceaccount` does.

use std::time::Duration;

use serde_json::{Value, json};

use super::ApiServer;
use super::errors::ApiError;

/// Where the token, CA and namespace are mounted.
pub(crate) const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap every namespace has with the cluster's CA (the root CA publisher's).
pub(crate) const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The token's life the admission asks for (upstream's 3607 s, the extra 7 s marking it as
/// the admission's).
const TOKEN_EXPIRATION: i64 = 3607;
/// How long a pod waits for its namespace's `default` account, which the service account
/// controller makes as the namespace appears.
const DEFAULT_ACCOUNT_WAIT: Duration = Duration::from_secs(3);

async fn account(api: &ApiServer, namespace: &str, name: &str) -> Result<Option<Value>, ApiError> {
    let resource = super::resources::find("", "v1", "serviceaccounts").expect("served");
    let kv = api
        .store()
        .get(&resource.key(Some(namespace), name))
        .await
        .map_err(|e| super::errors::from_store(e, "serviceaccounts", name))?;
    kv.map(|kv| super::decode(&kv)).transpose()
}

/// Admits a new pod: its account set and checked, its token volume added.
pub(crate) async fn admit(api: &ApiServer, pod: &mut Value) -> Result<(), ApiError> {
    // A mirror pod (a static pod's reflection) is the kubelet's: no account, no token.
    if pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
        return Ok(());
    }
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let pod_name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let name = match pod["spec"]["serviceAccountName"].as_str() {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => "default".to_owned(),
    };
    let mut found = account(api, &namespace, &name).await?;
    if found.is_none() && name == "default" {
        // The service account controller makes it as the namespace appears.
        let deadline = tokio::time::Instant::now() + DEFAULT_ACCOUNT_WAIT;
        while found.is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            found = account(api, &namespace, &name).await?;
        }
    }
    let Some(sa) = found else {
        return Err(ApiError::Forbidden {
            resource: "pods".into(),
            name: pod_name,
            detail: format!(
                "error looking up service account {namespace}/{name}: serviceaccount \"{name}\" not found"
            ),
        });
    };
    let spec = &mut pod["spec"];
    spec["serviceAccountName"] = json!(name);
    spec["serviceAccount"] = json!(name);
    let automount = spec["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let mounted_already = |containers: &Value| {
        containers.as_array().into_iter().flatten().any(|c| {
            c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"].as_str() == Some(MOUNT_PATH))
        })
    };
    // A pod that mounts something there itself keeps it (upstream adds nothing then).
    if mounted_already(&spec["containers"]) || mounted_already(&spec["initContainers"]) {
        return Ok(());
    }
    let volume_name = format!(
        "kube-api-access-{}",
        super::registry::store::random_suffix()
    );
    let volume = json!({
        "name": volume_name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        },
    });
    match spec["volumes"].as_array_mut() {
        Some(volumes) => volumes.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": MOUNT_PATH});
    for field in ["initContainers", "containers"] {
        for container in spec[field].as_array_mut().into_iter().flatten() {
            match container["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount.clone()),
                None => container["volumeMounts"] = json!([mount.clone()]),
            }
        }
    }
    Ok(())
}
