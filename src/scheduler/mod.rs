//! The scheduler, modelled on kube-scheduler's framework: a scheduling queue ([`queue`]) feeds
//! pods one at a time to the scheduling cycle, whose Filter plugins decide which nodes can take
//! the pod and whose Score plugins rank them ([`run::decide`]); the binding cycle then binds it
//! through `pods/binding`, asynchronously, with the pod assumed on its node in the scheduler's
//! [`cache`] meanwhile.
//!
//! The plugins are pure functions over `k8s-openapi` types and the cache's [`filters::NodeInfo`]:
//! filters with their reasons in kube-scheduler's words ([`filters`], [`affinity`],
//! [`topology`], [`interpod`], [`volumebinding`]), scores with kube-scheduler's formulas, weights and normalisation
//! ([`scores`] and the same modules); label selectors and resource quantities come from
//! [`crate::apimachinery`]. The loop ([`run`]) is an API client like every component: it never reads the
//! store.

pub mod affinity;
pub mod cache;
pub mod filters;
pub mod interpod;
pub mod queue;
pub mod run;
pub mod scores;
pub mod topology;
pub mod volumebinding;
