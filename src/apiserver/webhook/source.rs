//! The configuration source: every webhook of every `ValidatingWebhookConfiguration` and
//! `MutatingWebhookConfiguration`, followed from the store ([`crate::apiserver::follow`]) as
//! upstream's `configuration` package follows them through informers, and kept as parsed
//! [`Hook`]s in the order upstream calls them (configurations by name, webhooks in their
//! order). A request reads a snapshot (an `Arc`) without touching the store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, RuleWithOperations};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::client::Endpoint;
use crate::apiserver::follow::State;
use crate::store::KeyValue;

/// The two kinds, in [`State::KINDS`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Validating = 0,
    Mutating = 1,
}

/// One webhook of a configuration, parsed once when its configuration is written.
#[derive(Debug)]
pub(crate) struct Hook {
    /// The configuration's name.
    pub(crate) configuration: String,
    pub(crate) name: String,
    pub(crate) mutating: bool,
    pub(crate) rules: Vec<RuleWithOperations>,
    /// `failurePolicy: Ignore`.
    pub(crate) ignore_failures: bool,
    /// `matchPolicy: Equivalent`.
    pub(crate) equivalent: bool,
    pub(crate) namespace_selector: LabelSelector,
    pub(crate) object_selector: LabelSelector,
    pub(crate) side_effects: String,
    pub(crate) timeout: Duration,
    pub(crate) review_versions: Vec<String>,
    /// `reinvocationPolicy: IfNeeded`.
    pub(crate) reinvoke: bool,
    /// How many `matchConditions` it has (not evaluated: no CEL here).
    pub(crate) match_conditions: usize,
    pub(crate) endpoint: Endpoint,
}

/// The webhooks of one kind, in call order.
pub(crate) type Hooks = Arc<Vec<Arc<Hook>>>;

/// What is kept of each kind: the parsed webhooks per configuration (by store key, so by name)
/// and the flattened list requests read.
#[derive(Default)]
pub(crate) struct Configurations {
    by_key: Mutex<[BTreeMap<String, Vec<Arc<Hook>>>; 2]>,
    snapshot: Mutex<[Hooks; 2]>,
}

impl State for Configurations {
    const KINDS: &'static [(&'static str, &'static str)] = &[
        (
            "ValidatingWebhookConfiguration",
            "/registry/validatingwebhookconfigurations/",
        ),
        (
            "MutatingWebhookConfiguration",
            "/registry/mutatingwebhookconfigurations/",
        ),
    ];

    fn reset(&self, kind: usize, objects: &[KeyValue]) {
        let mut by_key = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        by_key[kind] = objects
            .iter()
            .map(|kv| (kv.key.clone(), parse(kind, &kv.value)))
            .collect();
        self.publish(kind, &by_key[kind]);
    }

    fn apply(&self, kind: usize, key: &str, value: Option<&[u8]>) {
        let mut by_key = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(value) => by_key[kind].insert(key.to_owned(), parse(kind, value)),
            None => by_key[kind].remove(key),
        };
        self.publish(kind, &by_key[kind]);
    }
}

impl Configurations {
    fn publish(&self, kind: usize, configurations: &BTreeMap<String, Vec<Arc<Hook>>>) {
        let hooks: Vec<Arc<Hook>> = configurations.values().flatten().cloned().collect();
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner())[kind] = Arc::new(hooks);
    }

    /// The webhooks of `kind`, in call order.
    pub(crate) fn hooks(&self, kind: Kind) -> Hooks {
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner())[kind as usize].clone()
    }
}

/// A stored configuration's webhooks (none when it cannot be read: it was validated before it
/// was stored, so only a hand-edited store gets there).
fn parse(kind: usize, value: &[u8]) -> Vec<Arc<Hook>> {
    let Ok(config) = serde_json::from_slice::<Stored>(value) else {
        return Vec::new();
    };
    let mutating = kind == Kind::Mutating as usize;
    let name = config.metadata.name.unwrap_or_default();
    config
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .map(|w| {
            Arc::new(Hook {
                configuration: name.clone(),
                mutating,
                ignore_failures: w.failure_policy.as_deref() == Some("Ignore"),
                equivalent: w.match_policy.as_deref() != Some("Exact"),
                namespace_selector: w.namespace_selector.unwrap_or_default(),
                object_selector: w.object_selector.unwrap_or_default(),
                side_effects: w.side_effects,
                timeout: timeout(w.timeout_seconds),
                review_versions: w.admission_review_versions,
                reinvoke: mutating && w.reinvocation_policy.as_deref() == Some("IfNeeded"),
                match_conditions: w.match_conditions.map_or(0, |c| c.len()),
                endpoint: Endpoint::new(&w.client_config),
                rules: w.rules.unwrap_or_default(),
                name: w.name,
            })
        })
        .collect()
}

/// A stored configuration of either kind: a `ValidatingWebhook` is a `MutatingWebhook` without
/// `reinvocationPolicy`, so both read as the latter.
#[derive(serde::Deserialize)]
struct Stored {
    #[serde(default)]
    metadata: ObjectMeta,
    webhooks: Option<Vec<MutatingWebhook>>,
}

fn timeout(seconds: Option<i32>) -> Duration {
    Duration::from_secs(seconds.and_then(|s| u64::try_from(s).ok()).unwrap_or(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: serde_json::Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: serde_json::to_vec(&value).unwrap().into(),
            create_revision: 1,
            mod_revision: 1,
        }
    }

    fn config(name: &str, hooks: &[&str]) -> serde_json::Value {
        let hooks: Vec<_> = hooks
            .iter()
            .map(|h| serde_json::json!({"name": h, "clientConfig": {"url": "https://127.0.0.1:1/"}, "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 3, "failurePolicy": "Ignore"}))
            .collect();
        serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": name}, "webhooks": hooks})
    }

    #[test]
    fn webhooks_are_called_in_configuration_name_order() {
        let configurations = Configurations::default();
        let prefix = "/registry/validatingwebhookconfigurations/";
        configurations.reset(
            0,
            &[kv(
                &format!("{prefix}b"),
                config("b", &["b1.x.y", "b2.x.y"]),
            )],
        );
        let names = |c: &Configurations| -> Vec<String> {
            c.hooks(Kind::Validating)
                .iter()
                .map(|h| h.name.clone())
                .collect()
        };
        assert_eq!(names(&configurations), ["b1.x.y", "b2.x.y"]);
        let a = config("a", &["a1.x.y"]);
        configurations.apply(
            0,
            &format!("{prefix}a"),
            Some(&serde_json::to_vec(&a).unwrap()),
        );
        assert_eq!(names(&configurations), ["a1.x.y", "b1.x.y", "b2.x.y"]);
        let hook = &configurations.hooks(Kind::Validating)[0];
        assert_eq!(hook.configuration, "a");
        assert!(hook.ignore_failures);
        assert_eq!(hook.timeout, Duration::from_secs(3));
        configurations.apply(0, &format!("{prefix}b"), None);
        assert_eq!(names(&configurations), ["a1.x.y"]);
        assert!(configurations.hooks(Kind::Mutating).is_empty());
        assert!(!hook.mutating && !hook.reinvoke);

        // Both kinds read alike; only a mutating webhook is reinvoked.
        let mut m = config("m", &["m1.x.y"]);
        m["kind"] = "MutatingWebhookConfiguration".into();
        m["webhooks"][0]["reinvocationPolicy"] = "IfNeeded".into();
        configurations.apply(
            1,
            "/registry/mutatingwebhookconfigurations/m",
            Some(&serde_json::to_vec(&m).unwrap()),
        );
        let hook = &configurations.hooks(Kind::Mutating)[0];
        assert!(hook.mutating && hook.reinvoke);
        assert_eq!(hook.configuration, "m");
    }
}
