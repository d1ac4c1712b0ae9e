//! The store as the API server uses it: the backend, with every failure to serve (an etcd
//! without a quorum, a member gone, a broken file) put on the flow as a `FAILED` hop from the
//! API server to the store, saying which operation on which key failed and why
//! (`create /registry/configmaps/default/c: etcdserver: request timed out (no quorum: 1 of 3
//! members up)`), and in the store's log. The answers the store gives for ordinary reasons (a
//! conflict, a missing key, a compacted revision) are the API server's business, not failures.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;

use crate::complog::Component;
use crate::flow::{Flow, FlowEvent};
use crate::store::{
    Error, KeyValue, RangeRequest, RangeResult, Restored, Result, Revision, Store, StoreStatus,
    WatchStream,
};

/// A store whose failures are reported on the flow.
pub(crate) struct Reported {
    inner: Arc<dyn Store>,
    flow: Flow,
}

impl Reported {
    pub(crate) fn new(inner: Arc<dyn Store>, flow: Flow) -> Self {
        Reported { inner, flow }
    }

    /// Reports `result` if it is a failure to serve `verb` on `key`, and passes it on.
    fn report<T>(&self, verb: &str, key: &str, result: Result<T>) -> Result<T> {
        if let Err(error) = &result
            && matches!(
                error,
                Error::Unavailable { .. }
                    | Error::Etcd { .. }
                    | Error::Embedded { .. }
                    | Error::Closed
            )
        {
            let (kind, namespace, name) = object_of(key);
            let (said, why) = match error {
                Error::Unavailable { message, why, .. } => (message.clone(), why.clone()),
                other => (other.to_string(), None),
            };
            let detail = match &why {
                Some(why) => format!("{} {key} failed: {said} ({why})", verb.to_lowercase()),
                None => format!("{} {key} failed: {said}", verb.to_lowercase()),
            };
            self.flow.emit(
                FlowEvent::new("apiserver", "store", "FAILED")
                    .object(kind, &namespace, &name)
                    .detail(detail)
                    .data(json!({"operation": verb, "key": key, "error": said, "why": why})),
            );
            let mut fields = vec![("operation", verb.into()), ("key", key.into())];
            if let Some(why) = &why {
                fields.push(("why", why.as_str().into()));
            }
            self.flow
                .logs()
                .error(Component::Store, "Request failed", &said, &fields);
        }
        result
    }
}

/// The kind, namespace and name a store key is of, as far as the built-in resources tell
/// (`/registry/configmaps/default/c`: ConfigMap, default, c).
fn object_of(key: &str) -> (&'static str, String, String) {
    for resource in crate::apiserver::resources::RESOURCES {
        let Some(rest) = key.strip_prefix(&resource.key_prefix(None)) else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match (resource.namespaced, parts.as_slice()) {
            (true, [namespace, name]) => {
                return (resource.kind, (*namespace).to_owned(), (*name).to_owned());
            }
            (false, [name]) => return (resource.kind, String::new(), (*name).to_owned()),
            _ => {}
        }
    }
    ("", String::new(), String::new())
}

#[async_trait]
impl Store for Reported {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.report("GET", key, self.inner.get(key).await)
    }

    async fn range(&self, request: &RangeRequest) -> Result<RangeResult> {
        self.report("RANGE", &request.prefix, self.inner.range(request).await)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        self.report("CREATE", key, self.inner.create(key, value).await)
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        self.report("UPDATE", key, self.inner.update(key, value, expected).await)
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision> {
        self.report("DELETE", key, self.inner.delete(key, expected).await)
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        self.report(
            "WATCH",
            prefix,
            self.inner.watch(prefix, from_revision).await,
        )
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.report("COMPACT", "", self.inner.compact(revision).await)
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.report("RANGE", "", self.inner.current_revision().await)
    }

    async fn restore(&self, kvs: &[(String, Bytes)]) -> Result<Restored> {
        self.report("RESTORE", "", self.inner.restore(kvs).await)
    }

    async fn status(&self) -> Result<StoreStatus> {
        self.inner.status().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_objects() {
        assert_eq!(
            object_of("/registry/configmaps/default/c"),
            ("ConfigMap", "default".into(), "c".into())
        );
        assert_eq!(
            object_of("/registry/namespaces/kube-system"),
            ("Namespace", String::new(), "kube-system".into())
        );
        assert_eq!(object_of("/registry/"), ("", String::new(), String::new()));
    }
}
