//! The supervisor: a running cluster's components by name (`apiserver`, `scheduler`,
//! `controller-manager`, `node-1`, ...), each of which can be stopped and started again while the
//! rest of the cluster keeps going, as an operator stops a real component's process. This is what
//! `orrery component stop|start` and `orrery node stop|start` reach through the API server's
//! `/orrery/v1` control endpoints.
//!
//! A component is a function that starts its tasks; stopping it aborts them (dropping every
//! future it owns, so its watches close and its timers stop). A stop is clean ([`Stop::Clean`],
//! the process given SIGTERM) or a kill ([`Stop::Kill`], the process dying); they differ only
//! for a replica that competes for a Lease ([`Election`]), which on a clean stop first does what
//! its component does on SIGTERM (kube-scheduler gives its Lease up). The supervisor knows
//! nothing else about what the components are; of an election it only shows which Lease and
//! whether the replica leads.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::flow::{Flow, FlowEvent};

/// What kind of component a name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A control-plane component: `apiserver`, `scheduler`, `controller-manager`.
    Component,
    /// A virtual node's kubelet.
    Node,
}

/// What went wrong stopping or starting a component.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SupervisorError {
    /// No component (or node) has this name.
    #[error("no {role} named {name:?} (known: {known})")]
    Unknown {
        /// `component` or `node`.
        role: &'static str,
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
}

type Starter = Box<dyn Fn() -> Vec<JoinHandle<()>> + Send + Sync>;

/// How a component is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// As its process is stopped (SIGTERM): it may finish what it does on the way out.
    Clean,
    /// As its process dies (SIGKILL): nothing more happens.
    Kill,
}

/// What `/orrery/v1/components` shows of a component that elects a leader
/// ([`crate::leaderelection`]): the Lease it competes for and whether it holds it now.
pub struct Election {
    /// `kube-system/kube-scheduler`.
    pub lease: String,
    /// Whether it leads now.
    pub leading: Box<dyn Fn() -> bool + Send + Sync>,
    /// What it does on a clean stop before its tasks are aborted (kube-scheduler gives its
    /// Lease up); done while it still runs.
    pub on_stop: Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
}

struct Entry {
    role: Role,
    election: Option<Election>,
    /// The node whose stop and start it follows (a node's kube-proxy), if any.
    follows: Option<String>,
    start: Starter,
    running: Option<Vec<JoinHandle<()>>>,
    /// How many times it was started again after a stop.
    restarts: u32,
    /// Its last runs, oldest first (at most [`RUNS_KEPT`]).
    runs: Vec<Run>,
}

/// How many runs of a component are remembered: the current one and the one before, as a
/// kubelet reports a container's `state` and `lastState`.
const RUNS_KEPT: usize = 2;

/// One run of a component: from a start to its stop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// When it started (RFC 3339, microseconds).
    pub started_at: String,
    /// When it was stopped, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
}

/// One component's state, as `GET /orrery/v1/components` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComponentState {
    /// Its name.
    pub name: String,
    /// Component or node.
    pub role: Role,
    /// Whether it runs.
    pub running: bool,
    /// How many times it was started again after a stop (a container's `restartCount`).
    pub restarts: u32,
    /// Its last runs, oldest first: the current (or last) one and the one before it.
    pub runs: Vec<Run>,
    /// The Lease it competes for, if it elects a leader (`kube-system/kube-scheduler`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// Whether it holds that Lease now (never while stopped), if it elects a leader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leading: Option<bool>,
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The cluster's components.
pub struct Supervisor {
    flow: Flow,
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Supervisor {
    /// An empty supervisor reporting to `flow`.
    pub fn new(flow: Flow) -> Self {
        Supervisor {
            flow,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a component and starts it.
    pub fn add(
        &self,
        name: &str,
        role: Role,
        start: impl Fn() -> Vec<JoinHandle<()>> + Send + Sync + 'static,
    ) {
        self.insert(name, role, None, None, Box::new(start));
    }

    /// Adds a component that competes for a Lease with its other replicas, and starts it.
    pub fn add_electing(
        &self,
        name: &str,
        election: Election,
        start: impl Fn() -> Vec<JoinHandle<()>> + Send + Sync + 'static,
    ) {
        self.insert(name, Role::Component, None, Some(election), Box::new(start));
    }

    /// Adds a component that lives on a node, as a node's kube-proxy does, and starts it: it
    /// stops and starts with its node (`orrery node stop|start`), and on its own as a component.
    pub fn add_to_node(
        &self,
        node: &str,
        name: &str,
        start: impl Fn() -> Vec<JoinHandle<()>> + Send + Sync + 'static,
    ) {
        self.insert(
            name,
            Role::Component,
            Some(node.to_owned()),
            None,
            Box::new(start),
        );
    }

    fn insert(
        &self,
        name: &str,
        role: Role,
        follows: Option<String>,
        election: Option<Election>,
        start: Starter,
    ) {
        let runs = vec![Run {
            started_at: now(),
            stopped_at: None,
        }];
        let running = Some(start());
        self.lock().insert(
            name.to_owned(),
            Entry {
                role,
                election,
                follows,
                start,
                running,
                restarts: 0,
                runs,
            },
        );
    }

    fn find<'a>(
        entries: &'a mut BTreeMap<String, Entry>,
        role: Role,
        name: &str,
    ) -> Result<&'a mut Entry, SupervisorError> {
        let known: Vec<&str> = entries
            .iter()
            .filter(|(_, e)| e.role == role)
            .map(|(n, _)| n.as_str())
            .collect();
        let known = known.join(", ");
        match entries.get_mut(name) {
            Some(entry) if entry.role == role => Ok(entry),
            _ => Err(SupervisorError::Unknown {
                role: match role {
                    Role::Component => "component",
                    Role::Node => "node",
                },
                name: name.to_owned(),
                known,
            }),
        }
    }

    /// The components that follow node `name`.
    fn followers(entries: &BTreeMap<String, Entry>, role: Role, name: &str) -> Vec<String> {
        if role != Role::Node {
            return Vec::new();
        }
        entries
            .iter()
            .filter(|(_, e)| e.follows.as_deref() == Some(name))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Stops a component (a node with the components on it), cleanly or as a kill; whether it
    /// was running.
    pub async fn stop(&self, role: Role, name: &str, how: Stop) -> Result<bool, SupervisorError> {
        let mut names = {
            let mut entries = self.lock();
            Self::find(&mut entries, role, name)?;
            Self::followers(&entries, role, name)
        };
        names.push(name.to_owned());
        // The operator's word first (the STOP hops), then what each running replica does on
        // its way out while it still runs (a clean stop only), then the end of its tasks.
        let leaving: Vec<_> = {
            let entries = self.lock();
            let running = names
                .iter()
                .filter_map(|n| Some((n, entries.get(n)?)))
                .filter(|(_, e)| e.running.is_some());
            let mut leaving = Vec::new();
            for (name, entry) in running {
                let detail = match how {
                    Stop::Clean => format!("{name} stopped by the operator"),
                    Stop::Kill => {
                        format!("{name} killed by the operator: it did nothing on its way out")
                    }
                };
                self.flow
                    .emit(FlowEvent::new("orrery", name.as_str(), "STOP").detail(detail));
                if let (Stop::Clean, Some(election)) = (how, &entry.election) {
                    leaving.push((election.on_stop)());
                }
            }
            leaving
        };
        futures::future::join_all(leaving).await;
        let mut entries = self.lock();
        let mut stopped = false;
        for name in &names {
            stopped |= Self::stop_entry(&mut entries, name);
        }
        Ok(stopped)
    }

    /// Aborts a component's tasks; whether it ran.
    fn stop_entry(entries: &mut BTreeMap<String, Entry>, name: &str) -> bool {
        let Some(entry) = entries.get_mut(name) else {
            return false;
        };
        let Some(tasks) = entry.running.take() else {
            return false;
        };
        for task in tasks {
            task.abort();
        }
        if let Some(run) = entry.runs.last_mut() {
            run.stopped_at = Some(now());
        }
        true
    }

    /// Starts a stopped component (a node with the components on it); whether it was stopped.
    pub fn start(&self, role: Role, name: &str) -> Result<bool, SupervisorError> {
        let mut entries = self.lock();
        Self::find(&mut entries, role, name)?;
        let mut started = self.start_entry(&mut entries, name);
        for follower in Self::followers(&entries, role, name) {
            started |= self.start_entry(&mut entries, &follower);
        }
        Ok(started)
    }

    fn start_entry(&self, entries: &mut BTreeMap<String, Entry>, name: &str) -> bool {
        let Some(entry) = entries.get_mut(name) else {
            return false;
        };
        if entry.running.is_some() {
            return false;
        }
        entry.restarts += 1;
        entry.runs.push(Run {
            started_at: now(),
            stopped_at: None,
        });
        if entry.runs.len() > RUNS_KEPT {
            entry.runs.remove(0);
        }
        // Announced before its tasks start, so whatever the new run does (its first log
        // line, say) comes after it.
        self.flow.emit(
            FlowEvent::new("orrery", name, "START")
                .detail(format!("{name} started by the operator")),
        );
        entry.running = Some((entry.start)());
        true
    }

    /// Every component and whether it runs.
    pub fn list(&self) -> Vec<ComponentState> {
        self.lock()
            .iter()
            .map(|(name, e)| ComponentState {
                name: name.clone(),
                role: e.role,
                running: e.running.is_some(),
                restarts: e.restarts,
                runs: e.runs.clone(),
                lease: e.election.as_ref().map(|el| el.lease.clone()),
                leading: e
                    .election
                    .as_ref()
                    .map(|el| e.running.is_some() && (el.leading)()),
            })
            .collect()
    }

    /// Stops everything (the cluster is going down) and waits until every task has ended, so
    /// nothing is still talking to the API server when the store closes.
    pub async fn stop_all(&self) {
        let tasks: Vec<JoinHandle<()>> = self
            .lock()
            .values_mut()
            .flat_map(|entry| entry.running.take().into_iter().flatten())
            .collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn components_stop_and_start_by_name() {
        let starts = Arc::new(AtomicUsize::new(0));
        let ticks = Arc::new(AtomicUsize::new(0));
        let supervisor = Supervisor::new(Flow::new());
        supervisor.add("scheduler", Role::Component, {
            let (starts, ticks) = (starts.clone(), ticks.clone());
            move || {
                starts.fetch_add(1, Ordering::SeqCst);
                let ticks = ticks.clone();
                vec![tokio::spawn(async move {
                    loop {
                        ticks.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                })]
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 2);
        assert_eq!(
            supervisor
                .stop(Role::Component, "scheduler", Stop::Clean)
                .await,
            Ok(true)
        );
        assert_eq!(
            supervisor
                .stop(Role::Component, "scheduler", Stop::Clean)
                .await,
            Ok(false)
        );
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        assert_eq!(
            ticks.load(Ordering::SeqCst),
            2,
            "a stopped component does nothing"
        );
        let stopped = &supervisor.list()[0];
        assert!(!stopped.running);
        assert_eq!(stopped.restarts, 0);
        assert!(stopped.runs[0].stopped_at.is_some());
        assert_eq!(supervisor.start(Role::Component, "scheduler"), Ok(true));
        assert_eq!(supervisor.start(Role::Component, "scheduler"), Ok(false));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        let restarted = &supervisor.list()[0];
        assert_eq!(restarted.restarts, 1);
        assert_eq!(restarted.runs.len(), 2);
        assert!(restarted.runs[1].stopped_at.is_none());
        let unknown = supervisor
            .stop(Role::Node, "scheduler", Stop::Clean)
            .await
            .unwrap_err();
        assert_eq!(unknown.to_string(), "no node named \"scheduler\" (known: )");
    }

    #[tokio::test(start_paused = true)]
    async fn an_electing_component_shows_its_lease_and_whether_it_leads() {
        use std::sync::atomic::AtomicBool;
        let flow = Flow::new();
        let supervisor = Supervisor::new(flow.clone());
        let forever = || vec![tokio::spawn(std::future::pending::<()>())];
        let leading = Arc::new(AtomicBool::new(true));
        let leaving = Arc::new(AtomicUsize::new(0));
        let election = |leading: &Arc<AtomicBool>| Election {
            lease: "kube-system/kube-scheduler".into(),
            leading: Box::new({
                let leading = leading.clone();
                move || leading.load(Ordering::SeqCst)
            }),
            on_stop: Box::new({
                let (leaving, flow) = (leaving.clone(), flow.clone());
                move || {
                    // The operator's STOP is on the flow before the replica's way out.
                    let stops = flow
                        .subscribe(0)
                        .0
                        .iter()
                        .filter(|e| e.verb == "STOP")
                        .count();
                    assert_eq!(stops, 1);
                    leaving.fetch_add(1, Ordering::SeqCst);
                    Box::pin(async {})
                }
            }),
        };
        supervisor.add_electing("scheduler-1", election(&leading), forever);
        supervisor.add_electing("scheduler-2", election(&leading), forever);
        supervisor.add("apiserver", Role::Component, forever);
        let listed = |name: &str| {
            let state = supervisor.list().into_iter().find(|c| c.name == name);
            serde_json::to_value(state.unwrap()).unwrap()
        };
        let shown = listed("scheduler-1");
        assert_eq!(shown["lease"], "kube-system/kube-scheduler");
        assert_eq!(shown["leading"], true);
        // Other components say nothing of leases.
        let apiserver = listed("apiserver");
        assert!(apiserver.get("lease").is_none() && apiserver.get("leading").is_none());
        leading.store(false, Ordering::SeqCst);
        assert_eq!(listed("scheduler-1")["leading"], false);
        // A stopped replica never leads, whatever its last word was.
        leading.store(true, Ordering::SeqCst);
        supervisor
            .stop(Role::Component, "scheduler-1", Stop::Clean)
            .await
            .unwrap();
        assert_eq!(listed("scheduler-1")["leading"], false);
        // A clean stop lets it do what it does on its way out; a kill does not, nor a second
        // stop of a stopped replica.
        assert_eq!(leaving.load(Ordering::SeqCst), 1);
        supervisor
            .stop(Role::Component, "scheduler-1", Stop::Clean)
            .await
            .unwrap();
        assert_eq!(
            supervisor
                .stop(Role::Component, "scheduler-2", Stop::Kill)
                .await,
            Ok(true)
        );
        assert_eq!(leaving.load(Ordering::SeqCst), 1);
        assert_eq!(listed("scheduler-2")["leading"], false);
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_stops_and_starts_with_what_lives_on_it() {
        let supervisor = Supervisor::new(Flow::new());
        let forever = || vec![tokio::spawn(std::future::pending::<()>())];
        supervisor.add("node-1", Role::Node, forever);
        supervisor.add("node-2", Role::Node, forever);
        supervisor.add_to_node("node-1", "kube-proxy/node-1", forever);
        supervisor.add_to_node("node-2", "kube-proxy/node-2", forever);
        let running = |name: &str| {
            supervisor
                .list()
                .into_iter()
                .find(|c| c.name == name)
                .unwrap()
                .running
        };
        assert_eq!(
            supervisor.stop(Role::Node, "node-1", Stop::Clean).await,
            Ok(true)
        );
        assert!(!running("node-1") && !running("kube-proxy/node-1"));
        assert!(running("node-2") && running("kube-proxy/node-2"));
        assert_eq!(supervisor.start(Role::Node, "node-1"), Ok(true));
        assert!(running("node-1") && running("kube-proxy/node-1"));
        // On its own, as a component; the node's kubelet runs on.
        assert_eq!(
            supervisor
                .stop(Role::Component, "kube-proxy/node-2", Stop::Clean)
                .await,
            Ok(true)
        );
        assert!(running("node-2") && !running("kube-proxy/node-2"));
        assert_eq!(supervisor.start(Role::Node, "node-2"), Ok(true));
        assert!(running("kube-proxy/node-2"));
        let unknown = supervisor
            .stop(Role::Node, "kube-proxy/node-1", Stop::Clean)
            .await
            .unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "no node named \"kube-proxy/node-1\" (known: node-1, node-2)"
        );
    }
}
