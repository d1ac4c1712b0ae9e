//! The integration tests, one binary: each module drives Orrery from outside (the `orrery`
//! binary, kubectl, kube and the Python client, real containers) at one boundary. One test
//! crate links the library once instead of once per file, which keeps the build and `target/`
//! small (the rust-analyzer layout).

mod common;

mod allocator;
mod auth;
mod certificates;
mod cli;
mod clients;
mod containers;
mod controllers;
mod crds;
mod cronjob;
mod dashboard;
mod disruption;
mod exec;
mod flow;
mod images;
mod ingress;
mod kube_client;
mod kube_system;
mod kubectl;
mod kubelet;
mod leader;
mod learn;
mod manifests;
mod metrics;
mod network;
mod nodes;
mod openapi;
mod operator;
mod packages;
mod podsecurity;
mod proxy;
mod quorum;
mod quota;
mod replicationcontroller;
mod runtime_libcontainer;
mod scheduler;
mod seccomp;
mod security;
mod services;
mod snapshot;
mod statefulset;
mod storage;
mod store_conformance;
mod store_embedded;
mod store_etcd;
mod tui_shell;
mod webhooks;
mod workloads;
