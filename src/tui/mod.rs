//! The dashboard (`orrery up` without `--headless`, and `orrery tui`): a ratatui terminal UI
//! that draws the cluster map, the flow timeline, the detail of one object and the stepper, from
//! the flow events (`GET /orrery/v1/flow`) and the Kubernetes API only — never from a
//! component's internals (`:top` reads usage from the metrics API, `metrics.k8s.io`, as
//! `kubectl top` does). `model` is the state and its update function, `view` draws it, and
//! `app` is the shell that owns the terminal, feeds the model (from `source`) and carries out its
//! effects (`effects`).

pub mod app;
pub mod effects;
pub mod metrics;
pub mod model;
pub mod services;
pub mod source;
pub mod view;
