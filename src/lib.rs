//! Orrery: a see-through Kubernetes on one machine.
//!
//! One binary runs every Kubernetes control-plane component and several virtual kubelets, and
//! shows each request as it travels through them. This crate grows one component at a time; the
//! tour below follows a request as far as the components that exist today take it.
//!
//! # A guided tour
//!
//! Every Kubernetes object ends up in the [`store`], under a key such as
//! `/registry/deployments/default/web`, exactly as the real API server keeps it in etcd. The
//! store is a trait ([`store::Store`]) with two implementations: an embedded, durable store on
//! `redb` (the default) and a real etcd (`--store etcd=URL`, with the `etcd` cargo feature). Each
//! write bumps one global revision, which the API server will show as `resourceVersion`; watches
//! stream changes from any revision not yet compacted, which is how every controller learns what
//! to do next.
//!
//! The [`cli`] module is the `orrery` command; [`bench`] measures the store against a real etcd.
//! `ARCHITECTURE.md` at the root of the repository maps the modules and their invariants.

#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod apimachinery;
pub mod apiserver;
pub mod apps;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod complog;
pub mod control_plane;
pub mod controllers;
pub mod dns;
pub mod events;
pub mod flow;
pub mod https;
pub mod images;
pub mod informers;
pub mod ingress;
pub mod kubelet;
pub mod leaderelection;
pub mod learn;
pub mod metrics_server;
pub mod operator;
pub mod pki;
pub mod provisioner;
pub mod proxy;
pub mod runtime;
pub mod scheduler;
pub mod servicelb;
pub mod store;
pub mod supervisor;
pub mod tui;
