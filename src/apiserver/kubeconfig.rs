//! Kubeconfig files: the cluster's own (`<state-dir>/kubeconfig`) and the merge of its context
//! into the user's (`$KUBECONFIG` or `~/.kube/config`), leaving every other context alone, as
//! kind and minikube do.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_yaml::{Mapping, Value};

use crate::pki::Pki;

/// What went wrong with a kubeconfig file.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The file could not be read or written.
    #[error("kubeconfig {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The user's file is not a kubeconfig we can merge into.
    #[error("kubeconfig {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A kubeconfig with one cluster, user and context, all called `name`.
pub fn render(name: &str, server: &str, pki: &Pki) -> String {
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\npreferences: {{}}\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: {name}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\ncurrent-context: {name}\n",
        b64(&pki.ca_cert),
        b64(&pki.admin_cert),
        b64(&pki.admin_key),
    )
}

/// A kubeconfig for another user of the cluster: cluster `cluster` at `server`, user `user`
/// with its client certificate and key, and context `<user>@<cluster>`.
pub fn render_user(
    cluster: &str,
    server: &str,
    ca_cert: &str,
    user: &str,
    cert: &str,
    key: &str,
) -> String {
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
    let context = format!("{user}@{cluster}");
    format!(
        "apiVersion: v1\nkind: Config\npreferences: {{}}\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: {user:?}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: {context:?}\n  context:\n    cluster: {cluster}\n    user: {user:?}\ncurrent-context: {context:?}\n",
        b64(ca_cert),
        b64(cert),
        b64(key),
    )
}

/// The `server` of the first cluster in a kubeconfig's text.
pub fn server_of(kubeconfig: &str) -> Option<String> {
    let config: Value = serde_yaml::from_str(kubeconfig).ok()?;
    config["clusters"][0]["cluster"]["server"]
        .as_str()
        .map(str::to_owned)
}

/// The user's kubeconfig: the first file in `$KUBECONFIG`, else `~/.kube/config`.
pub fn user_kubeconfig_path() -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&paths).find(|p| !p.as_os_str().is_empty())
    {
        return Some(first);
    }
    dirs::home_dir().map(|home| home.join(".kube").join("config"))
}

fn write_private(path: &Path, contents: &str) -> Result<(), KubeconfigError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| KubeconfigError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Write a sibling and rename it over, so a crash never leaves half a kubeconfig.
    let tmp = path.with_extension("orrery-tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes the cluster's own kubeconfig.
pub fn write(path: &Path, contents: &str) -> Result<(), KubeconfigError> {
    write_private(path, contents)
}

/// Merges the single cluster, user and context of `ours` into the kubeconfig at `path` (created
/// if missing): entries with the same names are replaced, others kept, and the current context
/// becomes ours.
pub fn merge_into(path: &Path, ours: &str) -> Result<(), KubeconfigError> {
    let invalid = |message: String| KubeconfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    let ours: Value = serde_yaml::from_str(ours).map_err(|e| invalid(e.to_string()))?;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Some(text),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(KubeconfigError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut theirs: Value = match existing {
        Some(text) => serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?,
        None => serde_yaml::from_str("apiVersion: v1\nkind: Config\npreferences: {}\n")
            .map_err(|e| invalid(e.to_string()))?,
    };
    let Value::Mapping(map) = &mut theirs else {
        return Err(invalid("not a YAML mapping".into()));
    };
    for section in ["clusters", "users", "contexts"] {
        let key = Value::from(section);
        let entries = map
            .entry(key.clone())
            .or_insert_with(|| Value::Sequence(Vec::new()));
        if entries.is_null() {
            *entries = Value::Sequence(Vec::new());
        }
        let Value::Sequence(list) = entries else {
            return Err(invalid(format!("{section} is not a list")));
        };
        for entry in ours[section].as_sequence().cloned().unwrap_or_default() {
            let name = entry["name"].clone();
            list.retain(|e| e["name"] != name);
            list.push(entry);
        }
    }
    map.insert(
        Value::from("current-context"),
        ours["current-context"].clone(),
    );
    let text = serde_yaml::to_string(&Value::Mapping(std::mem::take(map)))
        .map_err(|e| invalid(e.to_string()))?;
    write_private(path, &text)
}

/// Removes the cluster, user and context called `name` from the kubeconfig at `path`.
pub fn remove_from(path: &Path, name: &str) -> Result<(), KubeconfigError> {
    let invalid = |message: String| KubeconfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let mut config: Value = serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let Value::Mapping(map) = &mut config else {
        return Ok(());
    };
    for section in ["clusters", "users", "contexts"] {
        if let Some(Value::Sequence(list)) = map.get_mut(section) {
            list.retain(|e| e["name"].as_str() != Some(name));
        }
    }
    if map.get("current-context").and_then(Value::as_str) == Some(name) {
        map.insert(Value::from("current-context"), Value::from(""));
    }
    let text = serde_yaml::to_string(&Value::Mapping(Mapping::from_iter(std::mem::take(map))))
        .map_err(|e| invalid(e.to_string()))?;
    write_private(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_other_contexts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster: {server: https://prod}\nusers:\n- name: prod\n  user: {token: t}\ncontexts:\n- name: prod\n  context: {cluster: prod, user: prod}\ncurrent-context: prod\n",
        )
        .unwrap();
        let pki = Pki::load_or_create(&dir.path().join("pki")).unwrap();
        merge_into(&path, &render("orrery", "https://127.0.0.1:1", &pki)).unwrap();
        merge_into(&path, &render("orrery", "https://127.0.0.1:2", &pki)).unwrap();
        let merged: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let names = |section: &str| -> Vec<String> {
            merged[section]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names("clusters"), ["prod", "orrery"]);
        assert_eq!(names("contexts"), ["prod", "orrery"]);
        assert_eq!(merged["current-context"], "orrery");
        assert_eq!(
            merged["clusters"][1]["cluster"]["server"],
            "https://127.0.0.1:2"
        );
        assert_eq!(merged["users"][0]["user"]["token"], "t");
        remove_from(&path, "orrery").unwrap();
        let left: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(left["contexts"].as_sequence().unwrap().len(), 1);
    }
}
