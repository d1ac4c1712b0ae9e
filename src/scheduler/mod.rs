//! The scheduler, modelled on kube-scheduler's framework: Filter plugins decide which nodes can
//! take a pod, Score plugins rank them, and the pod is bound through `pods/binding`.
//!
//! So far this holds the plugins as pure functions over `k8s-openapi` types: filters with their
//! reasons in kube-scheduler's words ([`filters`], [`affinity`]), scores with kube-scheduler's
//! formulas, weights and normalisation ([`scores`]), and resource quantities ([`quantity`]). The
//! scheduling queue and the binding loop, a client of the API server like every component, come
//! next (issue 4).

pub mod affinity;
pub mod filters;
pub mod quantity;
pub mod run;
pub mod scores;
