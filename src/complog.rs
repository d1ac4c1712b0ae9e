//! Component logs: what each control-plane component did, in its own log, as a kubelet keeps a
//! container's log. `kubectl logs -n kube-system kube-scheduler-<node>` reads them through the
//! control-plane node's kubelet ([`crate::kubelet`]'s static pods).
//!
//! Orrery's components run inside one process and report through `tracing`, which mixes them
//! (and two clusters in one test process). So each cluster keeps, next to its flow, one log per
//! component ([`Component`]): klog lines (`I1204 16:00:00.123456   12345 run.rs:577]
//! "Successfully bound pod to node" pod="default/web-1" node="node-1"`, the format every
//! Kubernetes component writes) in the CRI log format a container runtime writes
//! (`<RFC 3339 time> stderr F <line>`), one file per run of the component, as the kubelet keeps
//! `/var/log/pods/<pod>/<container>/<restartCount>.log`: `<dir>/<component>/<run>.log`.
//!
//! Every line is something the component did. Lines come two ways: written by the component
//! where it acts ([`ComponentLogs::info`]: the scheduler's binds, the API server's answered
//! requests), or taken from the component's own hops on the flow ([`ComponentLogs::observe`],
//! called by [`crate::flow::Flow::emit`]: each controller's decision is a hop). The file and line
//! in a klog header are Orrery's own source location of that act. Each file is bounded: past
//! [`MAX_FILE_BYTES`] it is renamed to `<run>.log.1` (replacing the one before) and a new one
//! starts, as the kubelet rotates container logs; only the current file is served.

use std::collections::HashMap;
use std::io::Write;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, mpsc};

use crate::flow::FlowEvent;

/// How large one log file grows before it is rotated.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// The longest field value written; longer ones are cut (with `...`), so a line stays a line.
const MAX_VALUE: usize = 2048;

/// A control-plane component with a log of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    /// `kube-apiserver`: the requests it answered, its endpoint reconciler's writes.
    ApiServer,
    /// `kube-scheduler`: its start, binds and failures to schedule.
    Scheduler,
    /// `kube-controller-manager`: each controller's start and decisions.
    ControllerManager,
    /// The store: how it was opened.
    Store,
}

impl Component {
    /// Every component.
    pub const ALL: [Component; 4] = [
        Component::ApiServer,
        Component::Scheduler,
        Component::ControllerManager,
        Component::Store,
    ];

    /// Its log's name (the directory under the logs directory): `kube-scheduler`, ...
    pub fn log_name(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::Scheduler => "kube-scheduler",
            Component::ControllerManager => "kube-controller-manager",
            Component::Store => "store",
        }
    }

    /// The name the supervisor (`orrery component stop NAME`) knows it by, if it can be stopped.
    pub fn supervised_as(self) -> Option<&'static str> {
        match self {
            Component::ApiServer => Some("apiserver"),
            Component::Scheduler => Some("scheduler"),
            Component::ControllerManager => Some("controller-manager"),
            Component::Store => None,
        }
    }

    /// The component with this log name.
    pub fn from_log_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.log_name() == name)
    }

    /// Whether `orrery up --schedulers N` / `--controller-managers N` runs several of it, each
    /// with a log of its own.
    pub fn replicated(self) -> bool {
        matches!(self, Component::Scheduler | Component::ControllerManager)
    }
}

/// One running copy of a component, with a log of its own: replica 0 is the only one
/// (`kube-scheduler`, which the supervisor knows as `scheduler`); with `orrery up --schedulers
/// 3` the replicas are 1 to 3 (`kube-scheduler-2`, supervised as `scheduler-2`), as an HA
/// control plane has one kube-scheduler per control-plane node. Only the scheduler and the
/// controller manager are replicated ([`Component::replicated`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Instance {
    /// What it is.
    pub component: Component,
    /// Which copy: 0 when it is the only one, else from 1.
    pub replica: u16,
}

impl From<Component> for Instance {
    fn from(component: Component) -> Self {
        Instance {
            component,
            replica: 0,
        }
    }
}

impl Instance {
    /// Replica `replica` (from 1) of `component`, or the only one (0).
    pub fn replica(component: Component, replica: u16) -> Self {
        Instance { component, replica }
    }

    fn suffixed(&self, base: &str) -> String {
        match self.replica {
            0 => base.to_owned(),
            n => format!("{base}-{n}"),
        }
    }

    /// Its log's name (a directory under the logs directory, a static pod's name):
    /// `kube-scheduler`, `kube-scheduler-2`.
    pub fn log_name(&self) -> String {
        self.suffixed(self.component.log_name())
    }

    /// Its name in the supervisor and on the flow (`scheduler`, `scheduler-2`), if it can be
    /// stopped.
    pub fn supervised_as(&self) -> Option<String> {
        self.component.supervised_as().map(|s| self.suffixed(s))
    }

    /// Reads `<base>` or, for a replicated component, `<base>-<n>` (n from 1) back.
    fn parse(name: &str, base: impl Fn(Component) -> Option<&'static str>) -> Option<Instance> {
        Component::ALL.into_iter().find_map(|component| {
            let base = base(component)?;
            if name == base {
                return Some(Instance::from(component));
            }
            let n: u16 = name.strip_prefix(base)?.strip_prefix('-')?.parse().ok()?;
            let digits_only = !name[base.len() + 1..].starts_with(['+', '0']);
            (component.replicated() && n > 0 && digits_only)
                .then_some(Instance::replica(component, n))
        })
    }

    /// The instance with this log name (`kube-scheduler-2`).
    pub fn from_log_name(name: &str) -> Option<Instance> {
        Self::parse(name, |c| Some(c.log_name()))
    }

    /// The instance the supervisor knows by this name (`scheduler-2`).
    pub fn from_supervised(name: &str) -> Option<Instance> {
        Self::parse(name, Component::supervised_as)
    }
}

/// A field's value: strings are quoted, numbers are not (klog's text format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// A string, written quoted.
    Str(String),
    /// A number.
    Int(i64),
}

impl From<&str> for Field {
    fn from(s: &str) -> Self {
        Field::Str(s.to_owned())
    }
}

impl From<String> for Field {
    fn from(s: String) -> Self {
        Field::Str(s)
    }
}

impl From<i64> for Field {
    fn from(n: i64) -> Self {
        Field::Int(n)
    }
}

impl From<usize> for Field {
    fn from(n: usize) -> Self {
        Field::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<u16> for Field {
    fn from(n: u16) -> Self {
        Field::Int(i64::from(n))
    }
}

/// A string as klog quotes it.
fn quote(text: &str) -> String {
    let text = if text.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &text[..end])
    } else {
        text.to_owned()
    };
    serde_json::to_string(&text).unwrap_or_default()
}

/// One klog line: `I1204 16:00:00.123456   12345 run.rs:577] "message" key="value" n=3`.
/// `severity` is `I` (info) or `E` (error); the number is the process id, as klog writes it.
pub fn klog_line(
    severity: char,
    time: jiff::Timestamp,
    pid: u32,
    location: &Location<'_>,
    message: &str,
    fields: &[(&str, Field)],
) -> String {
    let file = location.file().rsplit('/').next().unwrap_or("???");
    let mut line = format!(
        "{severity}{} {pid:>7} {file}:{}] {}",
        time.strftime("%m%d %H:%M:%S%.6f"),
        location.line(),
        quote(message)
    );
    for (key, value) in fields {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        match value {
            Field::Str(s) => line.push_str(&quote(s)),
            Field::Int(n) => line.push_str(&n.to_string()),
        }
    }
    line
}

enum Record {
    Line {
        component: Instance,
        time: jiff::Timestamp,
        text: String,
    },
    /// The supervisor started the component again: a new run, a new file.
    Restart(Instance),
}

/// A cluster's component logs. Cheap to clone; writes nothing until [`ComponentLogs::write_to`]
/// gives it a directory (a [`crate::flow::Flow`] made for a test or a benchmark keeps none).
#[derive(Clone)]
pub struct ComponentLogs {
    sink: Arc<OnceLock<mpsc::Sender<Record>>>,
    /// The controller manager replica that leads, whose controllers' hops are its lines.
    leading_controller_manager: Arc<std::sync::Mutex<Instance>>,
}

impl Default for ComponentLogs {
    fn default() -> Self {
        ComponentLogs {
            sink: Arc::default(),
            leading_controller_manager: Arc::new(std::sync::Mutex::new(Instance::from(
                Component::ControllerManager,
            ))),
        }
    }
}

/// Where run `run` of `component` keeps its log under `dir`.
pub fn log_path(dir: &Path, component: impl Into<Instance>, run: u32) -> PathBuf {
    dir.join(component.into().log_name())
        .join(format!("{run}.log"))
}

impl ComponentLogs {
    /// Logs that keep nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts keeping the logs under `dir`, one directory a component (each emptied first: the
    /// logs of an earlier `orrery up` belong to runs that are gone; nothing else in `dir` is
    /// touched). A writer thread appends the lines, so no component waits for a disk. Only the
    /// first call counts.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        if self.sink.get().is_some() {
            return Ok(());
        }
        // An earlier run's replicas (`kube-scheduler-2`) go too.
        let earlier: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    Instance::from_log_name(&e.file_name().to_string_lossy())
                        .is_some_and(|i| i.replica > 0)
                })
                .map(|e| e.path())
                .collect(),
            Err(_) => Vec::new(),
        };
        for gone in earlier {
            std::fs::remove_dir_all(gone)?;
        }
        for component in Component::ALL {
            let own = dir.join(component.log_name());
            match std::fs::remove_dir_all(&own) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::fs::create_dir_all(own)?;
        }
        let (tx, rx) = mpsc::channel();
        let dir = dir.to_owned();
        std::thread::Builder::new()
            .name("orrery-logs".into())
            .spawn(move || write_records(&dir, &rx))?;
        let _ = self.sink.set(tx);
        Ok(())
    }

    fn send(&self, record: Record) {
        if let Some(sink) = self.sink.get() {
            let _ = sink.send(record);
        }
    }

    fn line(
        &self,
        component: Instance,
        severity: char,
        location: &Location<'_>,
        message: &str,
        fields: &[(&str, Field)],
    ) {
        if self.sink.get().is_none() {
            return;
        }
        let time = jiff::Timestamp::now();
        let text = klog_line(
            severity,
            time,
            std::process::id(),
            location,
            message,
            fields,
        );
        self.send(Record::Line {
            component,
            time,
            text,
        });
    }

    /// Writes an info line to `component`'s log (a replica's own, for an [`Instance`]),
    /// located at the caller.
    #[track_caller]
    pub fn info(&self, component: impl Into<Instance>, message: &str, fields: &[(&str, Field)]) {
        self.line(component.into(), 'I', Location::caller(), message, fields);
    }

    /// Writes an error line (`err=` first, as klog's `ErrorS` does), located at the caller.
    #[track_caller]
    pub fn error(
        &self,
        component: impl Into<Instance>,
        message: &str,
        err: &str,
        fields: &[(&str, Field)],
    ) {
        let mut all = vec![("err", Field::from(err))];
        all.extend(fields.iter().cloned());
        self.line(component.into(), 'E', Location::caller(), message, &all);
    }

    /// Takes what belongs in a log from a flow event emitted at `location`: a controller's hop
    /// (kube-controller-manager's: the leading replica's, as a `LEADER` hop said), the API
    /// server's own controllers' (`kube-apiserver/...`: its endpoint reconciler), and the
    /// supervisor's starting a component again (a new run).
    pub(crate) fn observe(&self, event: &FlowEvent, location: &Location<'_>) {
        if self.sink.get().is_none() || event.verb == "GATE" {
            return;
        }
        if event.from == "orrery" && event.verb == "START" {
            if let Some(component) = Instance::from_supervised(&event.to) {
                self.send(Record::Restart(component));
            }
            return;
        }
        if event.verb == crate::flow::LEADER
            && let Some(leader) = Instance::from_supervised(&event.from)
                .filter(|i| i.component == Component::ControllerManager)
        {
            *self
                .leading_controller_manager
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = leader;
        }
        let (component, logger) = if let Some(controller) = event.from.strip_prefix("controller/") {
            let leader = *self
                .leading_controller_manager
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            (leader, Some(logger_name(controller)))
        } else if event.from.starts_with("kube-apiserver/") {
            (Instance::from(Component::ApiServer), None)
        } else {
            return;
        };
        let message = if event.detail.is_empty() {
            event.verb.as_str()
        } else {
            event.detail.as_str()
        };
        let mut fields = Vec::new();
        if let Some(logger) = logger {
            fields.push(("logger", Field::Str(logger)));
        }
        fields.push(("verb", Field::from(event.verb.as_str())));
        let key = object_key(&event.kind);
        if !event.name.is_empty() {
            let object = if event.namespace.is_empty() {
                event.name.clone()
            } else {
                format!("{}/{}", event.namespace, event.name)
            };
            fields.push((key.as_str(), Field::Str(object)));
        }
        self.line(component, 'I', location, message, &fields);
    }
}

/// kube-controller-manager's logger name for a controller (`replicaset-controller`).
fn logger_name(controller: &str) -> String {
    match controller {
        "garbagecollector" => "garbage-collector-controller".into(),
        "nodelifecycle" => "node-lifecycle-controller".into(),
        other => format!("{other}-controller"),
    }
}

/// The key klog gives an object of `kind` (`klog.KObj`): `replicaSet`, `pod`, `node`.
fn object_key(kind: &str) -> String {
    let mut chars = kind.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "object".into(),
    }
}

/// One component's open log: its run and file.
struct Open {
    run: u32,
    file: std::fs::File,
    bytes: u64,
}

fn open(dir: &Path, component: Instance, run: u32) -> Option<Open> {
    let path = log_path(dir, component, run);
    // A replica's directory (`kube-scheduler-2`) is made on its first line.
    std::fs::create_dir_all(path.parent()?).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    Some(Open { run, file, bytes })
}

/// The writer thread: appends each line to its component's current file, rotating it when it
/// is full, and starts a new file for a new run (removing the run before the previous one, as
/// the kubelet keeps one dead container per container).
fn write_records(dir: &Path, records: &mpsc::Receiver<Record>) {
    let mut files: HashMap<Instance, Open> = HashMap::new();
    while let Ok(record) = records.recv() {
        match record {
            Record::Restart(component) => {
                let run = files.get(&component).map_or(0, |o| o.run) + 1;
                if let Some(gone) = run.checked_sub(2) {
                    let old = log_path(dir, component, gone);
                    let _ = std::fs::remove_file(old.with_extension("log.1"));
                    let _ = std::fs::remove_file(old);
                }
                match open(dir, component, run) {
                    Some(o) => {
                        files.insert(component, o);
                    }
                    None => {
                        files.remove(&component);
                    }
                }
            }
            Record::Line {
                component,
                time,
                text,
            } => {
                if !files.contains_key(&component)
                    && let Some(o) = open(dir, component, 0)
                {
                    files.insert(component, o);
                }
                let Some(o) = files.get_mut(&component) else {
                    continue;
                };
                let record = format!("{time:.9} stderr F {text}\n");
                if o.bytes + record.len() as u64 > MAX_FILE_BYTES && o.bytes > 0 {
                    let path = log_path(dir, component, o.run);
                    let _ = std::fs::rename(&path, path.with_extension("log.1"));
                    if let Some(fresh) = open(dir, component, o.run) {
                        *o = fresh;
                    }
                }
                if o.file.write_all(record.as_bytes()).is_ok() {
                    o.bytes += record.len() as u64;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_klog_lines() {
        let time: jiff::Timestamp = "2026-12-04T16:00:00.123456789Z".parse().unwrap();
        let location = Location::caller();
        let line = klog_line(
            'I',
            time,
            1,
            location,
            "Successfully bound pod to node",
            &[
                ("pod", "default/web-1".into()),
                ("node", "node-1".into()),
                ("evaluatedNodes", 3usize.into()),
            ],
        );
        assert_eq!(
            line,
            format!(
                "I1204 16:00:00.123456       1 complog.rs:{}] \"Successfully bound pod to node\" pod=\"default/web-1\" node=\"node-1\" evaluatedNodes=3",
                location.line()
            )
        );
        let quoted = klog_line('E', time, 42, location, "a \"quoted\"\nline", &[]);
        assert!(
            quoted.ends_with("] \"a \\\"quoted\\\"\\nline\""),
            "{quoted}"
        );
        assert!(quoted.starts_with("E1204 16:00:00.123456      42 "));
    }

    #[test]
    fn replicas_have_names_and_logs_of_their_own() {
        let second = Instance::replica(Component::Scheduler, 2);
        assert_eq!(second.log_name(), "kube-scheduler-2");
        assert_eq!(second.supervised_as().as_deref(), Some("scheduler-2"));
        let only = Instance::from(Component::ControllerManager);
        assert_eq!(only.log_name(), "kube-controller-manager");
        assert_eq!(only.supervised_as().as_deref(), Some("controller-manager"));
        for (name, parsed) in [
            ("scheduler", Some(Instance::from(Component::Scheduler))),
            ("scheduler-2", Some(second)),
            (
                "controller-manager-12",
                Some(Instance::replica(Component::ControllerManager, 12)),
            ),
            ("apiserver", Some(Instance::from(Component::ApiServer))),
            // Only the scheduler and the controller manager have replicas.
            ("apiserver-2", None),
            ("scheduler-0", None),
            ("scheduler-02", None),
            ("scheduler-+2", None),
            ("scheduler-x", None),
            ("node-1", None),
        ] {
            assert_eq!(Instance::from_supervised(name), parsed, "{name}");
        }
        assert_eq!(Instance::from_log_name("kube-scheduler-2"), Some(second));
        assert_eq!(Instance::from_log_name("kube-apiserver-2"), None);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a plain test thread waiting for the writer thread
    fn runs_get_files_of_their_own_and_hops_become_lines() {
        let dir = tempfile::tempdir().unwrap();
        let logs = ComponentLogs::new();
        // Nothing is kept before there is a directory.
        logs.info(Component::Scheduler, "dropped", &[]);
        logs.write_to(dir.path()).unwrap();
        logs.info(Component::Scheduler, "first run", &[]);
        let hop = FlowEvent::new("controller/replicaset", "apiserver", "SCALE UP")
            .object("ReplicaSet", "default", "web-7d4b9")
            .detail("0 of 3 pods exist: creating 3");
        logs.observe(&hop, Location::caller());
        // Not a component's act: no line.
        logs.observe(
            &FlowEvent::new("kubectl", "apiserver", "POST").object("Pod", "default", "x"),
            Location::caller(),
        );
        logs.observe(
            &FlowEvent::new("orrery", "scheduler", "START"),
            Location::caller(),
        );
        logs.info(Component::Scheduler, "second run", &[]);
        logs.observe(
            &FlowEvent::new("orrery", "scheduler", "START"),
            Location::caller(),
        );
        logs.observe(
            &FlowEvent::new("orrery", "scheduler", "START"),
            Location::caller(),
        );
        logs.info(Component::Scheduler, "fourth run", &[]);
        let read = |component: Instance, run| {
            let path = log_path(dir.path(), component, run);
            for _ in 0..200 {
                if let Ok(text) = std::fs::read_to_string(&path)
                    && !text.is_empty()
                {
                    return text;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("{} never written", path.display());
        };
        let fourth = read(Component::Scheduler.into(), 3);
        assert!(fourth.contains("\"fourth run\""), "{fourth}");
        assert!(fourth.contains(" stderr F I"), "{fourth}");
        // Two runs back are gone; the one before the current is kept (for --previous).
        assert!(!log_path(dir.path(), Component::Scheduler, 0).exists());
        assert!(!log_path(dir.path(), Component::Scheduler, 1).exists());
        assert!(log_path(dir.path(), Component::Scheduler, 2).exists());
        let controllers = read(Component::ControllerManager.into(), 0);
        assert!(
            controllers.contains(
                "\"0 of 3 pods exist: creating 3\" logger=\"replicaset-controller\" verb=\"SCALE UP\" replicaSet=\"default/web-7d4b9\""
            ),
            "{controllers}"
        );
        assert_eq!(controllers.lines().count(), 1, "{controllers}");

        // A replica writes its own log; the controllers' lines go to the leading controller
        // manager's, as its LEADER hop says.
        let second = Instance::replica(Component::ControllerManager, 2);
        logs.observe(
            &FlowEvent::new("controller-manager-2", "controller-manager-2", "LEADER").object(
                "Lease",
                "kube-system",
                "kube-controller-manager",
            ),
            Location::caller(),
        );
        logs.observe(&hop, Location::caller());
        logs.info(
            Instance::replica(Component::Scheduler, 3),
            "a replica's line",
            &[],
        );
        let replica = read(second, 0);
        assert!(
            replica.contains("logger=\"replicaset-controller\""),
            "{replica}"
        );
        let third = read(Instance::replica(Component::Scheduler, 3), 0);
        assert!(third.contains("\"a replica's line\""), "{third}");
        // An earlier run's replica logs are gone when the logs start again.
        ComponentLogs::new().write_to(dir.path()).unwrap();
        assert!(!dir.path().join("kube-scheduler-3").exists());
        assert!(dir.path().join("kube-scheduler").exists());
    }
}
