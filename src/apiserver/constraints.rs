//! Which namespaces hold ResourceQuotas and LimitRanges, followed from the store (as
//! kube-apiserver's quota and LimitRanger plugins follow them through informers), so that
//! those plugins read a namespace's objects from the store only where it has some: a write in
//! a namespace without either costs no store read. Where there are some, the plugins read them
//! from the store, so a quota is charged against what is stored, never against a stale copy.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::follow::{Following, State};
use crate::store::{KeyValue, Store};

/// The kinds followed, in [`State::KINDS`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Constraint {
    ResourceQuota = 0,
    LimitRange = 1,
}

/// The store keys of every ResourceQuota and LimitRange (`/registry/<plural>/<ns>/<name>`).
#[derive(Default)]
pub(crate) struct Keys {
    keys: Mutex<[BTreeSet<String>; 2]>,
}

impl State for Keys {
    const KINDS: &'static [(&'static str, &'static str)] = &[
        ("ResourceQuota", "/registry/resourcequotas/"),
        ("LimitRange", "/registry/limitranges/"),
    ];

    fn reset(&self, kind: usize, objects: &[KeyValue]) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys[kind] = objects.iter().map(|kv| kv.key.clone()).collect();
    }

    fn apply(&self, kind: usize, key: &str, value: Option<&[u8]>) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(_) => keys[kind].insert(key.to_owned()),
            None => keys[kind].remove(key),
        };
    }
}

impl Keys {
    /// Whether `namespace` has an object of `kind`.
    fn any(&self, kind: Constraint, namespace: &str) -> bool {
        let prefix = format!("{}{namespace}/", Self::KINDS[kind as usize].1);
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys[kind as usize]
            .range(prefix.clone()..)
            .next()
            .is_some_and(|key| key.starts_with(&prefix))
    }
}

/// The followed keys, and the writes of them this API server made.
#[derive(Default)]
pub(crate) struct Constraints {
    following: Following<Keys>,
}

impl Constraints {
    /// Notes this API server's write of an object of `kind` at `revision`.
    pub(crate) fn written(&self, kind: &str, revision: crate::store::Revision) {
        self.following.written(kind, revision);
    }

    /// Whether `namespace` has an object of `kind`, once every such object this API server
    /// wrote is known (at once, unless one was written a moment ago; a few seconds at most).
    pub(crate) async fn any(
        &self,
        store: &Arc<dyn Store>,
        kind: Constraint,
        namespace: &str,
    ) -> bool {
        self.following
            .caught_up(store, Duration::from_secs(3))
            .await;
        self.following.state(store).await.any(kind, namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Default::default(),
            create_revision: 1,
            mod_revision: 1,
        }
    }

    #[test]
    fn a_namespace_has_what_its_keys_say_and_not_its_prefix_namesakes() {
        let keys = Keys::default();
        keys.reset(0, &[kv("/registry/resourcequotas/team/q")]);
        keys.apply(1, "/registry/limitranges/team-b/l", Some(b"{}"));
        assert!(keys.any(Constraint::ResourceQuota, "team"));
        assert!(!keys.any(Constraint::ResourceQuota, "tea"));
        assert!(!keys.any(Constraint::ResourceQuota, "team-b"));
        assert!(!keys.any(Constraint::LimitRange, "team"));
        assert!(keys.any(Constraint::LimitRange, "team-b"));
        keys.apply(0, "/registry/resourcequotas/team/q", None);
        assert!(!keys.any(Constraint::ResourceQuota, "team"));
        keys.reset(1, &[]);
        assert!(!keys.any(Constraint::LimitRange, "team-b"));
    }
}
