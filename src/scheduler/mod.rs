//! The scheduler, modelled on kube-scheduler's framework: Filter plugins decide which nodes can
//! take a pod, Score plugins rank them, and the pod is bound through `pods/binding`.
//!
//! So far this holds the plugins as pure functions over `k8s-openapi` types, each with its
//! reason in kube-scheduler's words ([`filters`]), and resource quantities ([`quantity`]). The
//! scheduling queue and the binding loop, a client of the API server like every component, come
//! next (issue 4).

pub mod filters;
pub mod quantity;
