//! Dynamic admission control: the `MutatingAdmissionWebhook` and `ValidatingAdmissionWebhook`
//! admission plugins, laid out as upstream's `plugin/pkg/admission/webhook`.
//!
//! - [`config`] — the strategy of the two configuration kinds (defaults, validation).
//! - [`source`] — the configurations, followed from the store into parsed [`source::Hook`]s.
//! - [`matching`] — which webhooks a request calls (rules, scope, `matchPolicy: Equivalent`,
//!   namespace and object selectors).
//! - [`review`] — the `AdmissionReview` sent and the answer read.
//! - [`client`] — the HTTPS call (a URL, or a Service's ready endpoint).
//! - [`dispatch`] — mutating webhooks one after another (JSONPatch, `reinvocationPolicy:
//!   IfNeeded`), validating ones all at once; `failurePolicy`; the flow hops.
//!
//! The write path calls [`mutate`] after the built-in mutating admission and [`validate`] after
//! the built-in validating admission (before ResourceQuota, as upstream orders them). A request
//! that no webhook's rules name costs a look at an in-memory list.

mod client;
pub(crate) mod config;
mod dispatch;
mod matching;
mod review;
mod source;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::apiserver::follow::Following;
use crate::apiserver::resources::Resource;
use crate::store::Store;

pub(crate) use dispatch::{mutate, validate};

/// The admission operations webhooks are asked about (CONNECT is not served to them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    /// `CREATE`, `UPDATE`, `DELETE`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// What admission knows of a request (upstream's `admission.Attributes`), but the object,
/// which [`mutate`] may change.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    /// The resource asked for, in the version asked for.
    pub(crate) resource: &'static Resource,
    /// `status`, `finalize`, ...; empty for the object itself.
    pub(crate) subresource: &'a str,
    pub(crate) operation: Operation,
    pub(crate) name: String,
    /// Whether the name was generated from `generateName` (mutating webhooks see none yet).
    pub(crate) generated_name: bool,
    /// The namespace; a Namespace's own name for a request on a Namespace.
    pub(crate) namespace: String,
    /// The stored object, for UPDATE and DELETE.
    pub(crate) old: Option<&'a Value>,
    /// `CreateOptions`, `UpdateOptions` or `DeleteOptions`.
    pub(crate) options: Value,
    pub(crate) dry_run: bool,
}

impl<'a> Request<'a> {
    /// A request on `resource` for `object` (its name and namespace read from it), with the
    /// options a write names (`fieldManager`, `dryRun`).
    pub(crate) fn of(
        resource: &'static Resource,
        subresource: &'a str,
        operation: Operation,
        object: &Value,
        old: Option<&'a Value>,
        manager: Option<&str>,
        dry_run: bool,
    ) -> Self {
        let meta = &object["metadata"];
        let name = meta["name"].as_str().unwrap_or_default().to_owned();
        let namespace = if (resource.group, resource.kind) == ("", "Namespace") {
            name.clone()
        } else {
            meta["namespace"].as_str().unwrap_or_default().to_owned()
        };
        Request {
            resource,
            subresource,
            operation,
            name,
            generated_name: false,
            namespace,
            old,
            options: review::write_options(operation, manager, dry_run),
            dry_run,
        }
    }

    /// A DELETE of the stored `object`, with the `DeleteOptions` the client gave (its body,
    /// and the query's `gracePeriodSeconds`, `propagationPolicy` and `dryRun`).
    pub(crate) fn delete(
        resource: &'static Resource,
        object: &'a Value,
        body: &Value,
        params: &crate::apimachinery::params::Params,
    ) -> Self {
        let mut options =
            serde_json::json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"});
        for field in [
            "gracePeriodSeconds",
            "preconditions",
            "orphanDependents",
            "propagationPolicy",
            "dryRun",
        ] {
            if !body[field].is_null() {
                options[field] = body[field].clone();
            }
        }
        if let Some(grace) = params
            .get("gracePeriodSeconds")
            .and_then(|g| g.parse::<i64>().ok())
        {
            options["gracePeriodSeconds"] = serde_json::json!(grace);
        }
        if let Some(policy) = params.get("propagationPolicy") {
            options["propagationPolicy"] = serde_json::json!(policy);
        }
        if params.get("dryRun").is_some_and(|d| d == "All") {
            options["dryRun"] = serde_json::json!(["All"]);
        }
        let dry_run = options["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
        Request {
            options,
            ..Request::of(
                resource,
                "",
                Operation::Delete,
                object,
                Some(object),
                None,
                dry_run,
            )
        }
    }
}

/// The webhook configurations, followed from the store from the first write that asks.
#[derive(Default)]
pub(crate) struct Webhooks {
    following: Following<source::Configurations>,
}

impl Webhooks {
    /// Notes this API server's write of an object of `kind` at `revision`.
    pub(crate) fn written(&self, kind: &str, revision: crate::store::Revision) {
        self.following.written(kind, revision);
    }

    /// The webhooks of `kind` in call order, once every configuration this API server wrote is
    /// known (at once, unless one was written a moment ago).
    async fn hooks(&self, store: &Arc<dyn Store>, kind: source::Kind) -> source::Hooks {
        self.following
            .caught_up(store, Duration::from_secs(3))
            .await;
        self.following.state(store).await.hooks(kind)
    }
}
