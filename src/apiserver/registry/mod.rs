//! The registry: how every resource is stored, as kube-apiserver's `pkg/registry`. The generic
//! verbs are written once ([`store`]) over what differs per resource; the Service allocations
//! live in [`ipallocator`].

pub(crate) mod ipallocator;
pub(crate) mod store;
pub(crate) mod strategy;
