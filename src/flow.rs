//! The flow: every hop a request takes (client -> API server -> store -> ...) as a [`FlowEvent`]
//! on one bus, and the [`Stepper`] that lets a learner hold each write at a gate and release it
//! one hop at a time.
//!
//! Components hold a [`Flow`] handle and call [`Flow::emit`]; the dashboard (and
//! `GET /orrery/v1/flow`) subscribe. Events carry a sequence number assigned under one lock, so
//! every subscriber sees them in the order they happened. A ring of recent events lets a
//! subscriber that attaches late catch up from a sequence number.

pub mod explain;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

/// One hop of one request.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FlowEvent {
    /// Monotonic sequence number, from 1.
    pub seq: u64,
    /// When it happened (RFC 3339, microseconds).
    pub time: String,
    /// Who acted: `kubectl`, `apiserver`, `controller/deployment`, `scheduler`, `kubelet/node-1`.
    pub from: String,
    /// Who was acted on: `apiserver`, `store`, ...
    pub to: String,
    /// What: `POST`, `LIST`, `WATCH`, `CREATE`, `UPDATE`, `DELETE`, `GATE`, ...
    pub verb: String,
    /// The object's kind, if there is one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The object's namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The object's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The object's uid.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The store revision, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The object at the root of its ownerReferences (`Deployment/web`), which groups a story.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root: String,
    /// One line for a human.
    pub detail: String,
    /// Structured data for the dashboard (a scheduling decision, say), when there is any.
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Kept as its JSON text behind an `Arc`: every subscriber and the ring share one copy.
    pub data: Option<Data>,
}

impl FlowEvent {
    /// An event from `from` to `to`; the bus fills in `seq` and `time`.
    pub fn new(from: impl Into<String>, to: impl Into<String>, verb: impl Into<String>) -> Self {
        FlowEvent {
            seq: 0,
            time: String::new(),
            from: from.into(),
            to: to.into(),
            verb: verb.into(),
            kind: String::new(),
            namespace: String::new(),
            name: String::new(),
            uid: String::new(),
            revision: None,
            root: String::new(),
            detail: String::new(),
            data: None,
        }
    }

    /// Names the object the event is about.
    pub fn object(mut self, kind: &str, namespace: &str, name: &str) -> Self {
        self.kind = kind.to_owned();
        self.namespace = namespace.to_owned();
        self.name = name.to_owned();
        self
    }

    /// Attaches structured data.
    pub fn data(mut self, data: impl Serialize) -> Self {
        self.data = serde_json::value::to_raw_value(&data)
            .ok()
            .map(|raw| Data(Arc::from(raw)));
        self
    }

    /// Adds a human detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// The verb of the hop a replica of an electing component (`scheduler-2`) emits on becoming the
/// leader of its Lease ([`crate::leaderelection`]).
pub const LEADER: &str = "LEADER";
/// ... on finding another replica leading, so that it waits as a standby.
pub const STANDBY: &str = "STANDBY";
/// ... on failing to renew its Lease within the renew deadline: it stops acting.
pub const LOST: &str = "LOST";
/// ... on giving its Lease up as the cluster goes down (`orrery down`).
pub const RESIGN: &str = "RESIGN";

impl FlowEvent {
    /// Whether the hop is a heartbeat: any hop about a Lease (a kubelet's or a leader's
    /// renewal, its request, store write and watch delivery), but for the leader election's own
    /// hops ([`LEADER`], [`STANDBY`], [`LOST`], [`RESIGN`]), which are steps of a story. The
    /// dashboard hides heartbeats unless asked (`h`).
    pub fn is_heartbeat(&self) -> bool {
        self.kind == "Lease" && ![LEADER, STANDBY, LOST, RESIGN].contains(&self.verb.as_str())
    }
}

/// An event's structured data: its JSON text, shared by every copy of the event.
#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct Data(pub Arc<serde_json::value::RawValue>);

impl Data {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// A pattern over hops, as lessons and the dashboard's highlights name them: each field given
/// must match (all of them), and an absent one matches anything. A field is a glob: `*`
/// stands for any run of characters (`kubelet/*`, `WATCH *`), and a leading `!` negates it
/// (`!apiserver`: any component but the API server). Matching is exact otherwise, case and all.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HopPattern {
    /// Who acted (`FlowEvent::from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Who was acted on (`FlowEvent::to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// What (`FlowEvent::verb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    /// The object's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl HopPattern {
    /// Whether `hop` matches every field given.
    pub fn matches(&self, hop: &FlowEvent) -> bool {
        [
            (&self.from, &hop.from),
            (&self.to, &hop.to),
            (&self.verb, &hop.verb),
            (&self.kind, &hop.kind),
            (&self.namespace, &hop.namespace),
            (&self.name, &hop.name),
        ]
        .into_iter()
        .all(|(pattern, value)| pattern.as_deref().is_none_or(|p| field_matches(p, value)))
    }
}

impl std::fmt::Display for HopPattern {
    /// `from -> to VERB Kind namespace/name`, `*` for what is not given.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let any = |field: &Option<String>| field.clone().unwrap_or_else(|| "*".to_owned());
        write!(
            f,
            "{} -> {} {} {}",
            any(&self.from),
            any(&self.to),
            any(&self.verb),
            any(&self.kind)
        )?;
        match (&self.namespace, &self.name) {
            (None, None) => Ok(()),
            (namespace, name) => match namespace {
                Some(namespace) => write!(f, " {namespace}/{}", any(name)),
                None => write!(f, " {}", any(name)),
            },
        }
    }
}

/// One field of a [`HopPattern`]: `!` negates, `*` is any run of characters.
fn field_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_prefix('!') {
        Some(rest) => !glob(rest, value),
        None => glob(pattern, value),
    }
}

/// Whether `value` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, value: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// How many recent events a late subscriber can catch up on.
const RECENT: usize = 10_000;

struct Recent {
    next_seq: u64,
    events: VecDeque<FlowEvent>,
    /// The story each recently seen object (keyed by [`story_key`]) belongs to, so a hop
    /// emitted without its root (a scheduler's BIND, a kubelet's container start) still groups
    /// with its story. The roots are shared (thousands of pods name one Deployment), and an
    /// object that is its own root (an Event, a Deployment) keeps `None`, not its name again.
    roots: std::collections::HashMap<u128, Option<Arc<str>>>,
    /// The roots in `roots`, each kept once.
    root_names: std::collections::HashSet<Arc<str>>,
}

/// An object's identity in [`Recent::roots`]: 128 bits of hash of its kind, namespace and name,
/// kept instead of the three strings (a map of 100,000 objects takes 3 MiB, not 20). Two objects
/// share a key with odds of about one in 10^28 at that size.
fn story_key(event: &FlowEvent) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |seed: u64| {
        let mut hasher = std::hash::DefaultHasher::new();
        seed.hash(&mut hasher);
        (&event.kind, &event.namespace, &event.name).hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// `Kind/name`: the root of an object with no owner (as the API server names it).
fn own_root(event: &FlowEvent) -> String {
    format!("{}/{}", event.kind, event.name)
}

/// The root remembered for `event`'s object: `root`, or the object itself.
fn remembered(event: &FlowEvent, root: Option<&str>) -> String {
    root.map_or_else(|| own_root(event), str::to_owned)
}

/// How many objects' roots are remembered before the map starts again.
const ROOTS: usize = 100_000;

/// The flow bus. Cheap to clone.
#[derive(Clone)]
pub struct Flow {
    recent: Arc<Mutex<Recent>>,
    sender: broadcast::Sender<FlowEvent>,
    stepper: Stepper,
    /// The components' own logs, which take their lines from their hops (and from them).
    logs: crate::complog::ComponentLogs,
}

impl Default for Flow {
    fn default() -> Self {
        Self::new()
    }
}

impl Flow {
    /// A new bus with an open stepper (run mode).
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(4096);
        Flow {
            recent: Arc::new(Mutex::new(Recent {
                next_seq: 1,
                events: VecDeque::new(),
                roots: std::collections::HashMap::new(),
                root_names: Default::default(),
            })),
            sender,
            stepper: Stepper::new(),
            logs: crate::complog::ComponentLogs::new(),
        }
    }

    /// This cluster's component logs: each component writes its own lines there, and every
    /// hop a component emits that belongs in its log is written there too.
    pub fn logs(&self) -> &crate::complog::ComponentLogs {
        &self.logs
    }

    /// Publishes an event, numbering and timestamping it. Returns its sequence number.
    #[track_caller]
    pub fn emit(&self, event: FlowEvent) -> u64 {
        self.emit_at(event, std::panic::Location::caller())
    }

    /// Publishes an event the API server records about a client's request, its store or a
    /// watch delivery: not an act of the component it names, so no component log takes it.
    pub(crate) fn record(&self, event: FlowEvent) -> u64 {
        self.publish(event, None)
    }

    fn emit_at(&self, event: FlowEvent, location: &std::panic::Location<'_>) -> u64 {
        self.publish(event, Some(location))
    }

    fn publish(&self, mut event: FlowEvent, location: Option<&std::panic::Location<'_>>) -> u64 {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if !event.name.is_empty() {
            let key = story_key(&event);
            if event.root.is_empty() {
                if let Some(root) = recent.roots.get(&key) {
                    event.root = remembered(&event, root.as_deref());
                }
            } else if recent
                .roots
                .get(&key)
                .is_none_or(|r| remembered(&event, r.as_deref()) != event.root)
            {
                if recent.roots.len() >= ROOTS {
                    recent.roots.clear();
                    recent.root_names.clear();
                }
                let root = if event.root == own_root(&event) {
                    None
                } else if let Some(root) = recent.root_names.get(event.root.as_str()) {
                    Some(root.clone())
                } else {
                    let root: Arc<str> = Arc::from(event.root.as_str());
                    recent.root_names.insert(root.clone());
                    Some(root)
                };
                recent.roots.insert(key, root);
            }
        }
        event.seq = recent.next_seq;
        recent.next_seq += 1;
        event.time = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        tracing::debug!(target: "orrery::flow", seq = event.seq, from = %event.from, to = %event.to, verb = %event.verb, kind = %event.kind, name = %event.name, detail = %event.detail);
        if recent.events.len() == RECENT {
            recent.events.pop_front();
        }
        recent.events.push_back(event.clone());
        if let Some(location) = location {
            self.logs.observe(&event, location);
        }
        // Sent under the lock, so subscribers receive events in sequence order.
        let _ = self.sender.send(event);
        recent.next_seq - 1
    }

    /// The recent events after `since`, and a receiver for everything after them, with no gap.
    pub fn subscribe(&self, since: u64) -> (Vec<FlowEvent>, broadcast::Receiver<FlowEvent>) {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let receiver = self.sender.subscribe();
        let backlog = recent
            .events
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect();
        (backlog, receiver)
    }

    /// The story `event`'s object was last seen in, or none.
    fn root_of(&self, event: &FlowEvent) -> String {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .roots
            .get(&story_key(event))
            .map(|r| remembered(event, r.as_deref()))
            .unwrap_or_default()
    }

    /// The stepper shared by every component of this cluster.
    pub fn stepper(&self) -> &Stepper {
        &self.stepper
    }
}

/// Run or step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepMode {
    /// Gates are open.
    Run,
    /// Each gate waits for a release.
    Step,
}

/// Which stories step mode holds. Gates of every other story stay open, so unrelated work
/// (other namespaces, other deployments) keeps running while a learner steps through one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Focus {
    /// Only hops in this namespace are held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only hops of this story (`Deployment/web`, the event's `root`) are held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

impl Focus {
    /// Whether `hop` belongs to the focused story.
    pub fn holds(&self, hop: &FlowEvent) -> bool {
        self.covers(&hop.namespace, &hop.root)
    }

    fn covers(&self, namespace: &str, root: &str) -> bool {
        self.namespace.as_deref().is_none_or(|ns| namespace == ns)
            && self.root.as_deref().is_none_or(|r| root == r)
    }
}

/// A hop waiting at its gate, as the dashboard shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PendingGate {
    /// The sequence number of the `GATE` event that announced it; release it by this id.
    pub id: u64,
    /// The hop, in words: "scheduler wants to BIND default/web-7d4b9-abcde to node-1".
    pub words: String,
    /// Who waits.
    pub from: String,
    /// What it wants to do.
    pub verb: String,
    /// The object's kind.
    pub kind: String,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The story it belongs to.
    pub root: String,
}

/// What `GET /orrery/v1/stepper` answers.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StepperState {
    /// Run or step.
    pub mode: StepMode,
    /// How many gates are waiting.
    pub waiting: usize,
    /// The waiting gates, oldest first.
    pub pending: Vec<PendingGate>,
    /// The story step mode holds, if it is focused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub focus: Option<Focus>,
}

struct Waiter {
    gate: PendingGate,
    open: tokio::sync::oneshot::Sender<()>,
}

struct Gates {
    mode: StepMode,
    focus: Option<Focus>,
    pending: std::collections::BTreeMap<u64, Waiter>,
}

/// The gates that decision points await. In run mode they are open; in step mode each waits until
/// it is released, by id ([`Stepper::release_gate`]) or oldest first ([`Stepper::release`]).
/// Heartbeats (Leases, a Node's status) and Events are never held: they are not a story's hops.
#[derive(Clone)]
pub struct Stepper {
    gates: Arc<Mutex<Gates>>,
}

impl Stepper {
    fn new() -> Self {
        Stepper {
            gates: Arc::new(Mutex::new(Gates {
                mode: StepMode::Run,
                focus: None,
                pending: std::collections::BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gates> {
        self.gates.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current mode.
    pub fn mode(&self) -> StepMode {
        self.lock().mode
    }

    /// How many gates are waiting now.
    pub fn waiting(&self) -> usize {
        self.lock().pending.len()
    }

    /// Mode, focus and the waiting gates.
    pub fn state(&self) -> StepperState {
        let gates = self.lock();
        StepperState {
            mode: gates.mode,
            waiting: gates.pending.len(),
            pending: gates.pending.values().map(|w| w.gate.clone()).collect(),
            focus: gates.focus.clone(),
        }
    }

    /// Switches mode. Switching to run opens every waiting gate.
    pub fn set_mode(&self, mode: StepMode) {
        let mut gates = self.lock();
        gates.mode = mode;
        if mode == StepMode::Run {
            for (_, waiter) in std::mem::take(&mut gates.pending) {
                let _ = waiter.open.send(());
            }
        }
    }

    /// Holds only one story (or namespace) in step mode; `None` holds every story. Waiting gates
    /// outside the new focus open.
    pub fn set_focus(&self, focus: Option<Focus>) {
        let mut gates = self.lock();
        gates.focus = focus.filter(|f| f.namespace.is_some() || f.root.is_some());
        if let Some(focus) = gates.focus.clone() {
            let outside: Vec<u64> = gates
                .pending
                .iter()
                .filter(|(_, w)| !focus.covers(&w.gate.namespace, &w.gate.root))
                .map(|(id, _)| *id)
                .collect();
            for id in outside {
                if let Some(waiter) = gates.pending.remove(&id) {
                    let _ = waiter.open.send(());
                }
            }
        }
    }

    /// Lets the `n` oldest waiting gates through. Returns how many were waiting to go.
    pub fn release(&self, n: usize) -> usize {
        let mut gates = self.lock();
        let ids: Vec<u64> = gates.pending.keys().take(n).copied().collect();
        for id in &ids {
            if let Some(waiter) = gates.pending.remove(id) {
                let _ = waiter.open.send(());
            }
        }
        ids.len()
    }

    /// Lets exactly the gate `id` through. False if no such gate waits.
    pub fn release_gate(&self, id: u64) -> bool {
        match self.lock().pending.remove(&id) {
            Some(waiter) => {
                let _ = waiter.open.send(());
                true
            }
            None => false,
        }
    }

    fn forget(&self, id: u64) {
        self.lock().pending.remove(&id);
    }
}

/// Whether `hop` is a heartbeat or a record rather than a step of a story: never held.
fn never_held(hop: &FlowEvent) -> bool {
    matches!(hop.kind.as_str(), "Lease" | "Event")
        || (hop.kind == "Node" && hop.from.starts_with("kubelet/"))
}

impl Flow {
    /// Waits at the gate of `hop`, the event a component is about to emit: open in run mode, for
    /// heartbeats and outside the focus; otherwise announced as a `GATE` event and held until
    /// it is released.
    pub async fn gate(&self, hop: &FlowEvent) {
        let mut words = format!("{} wants to {}", hop.from, hop.verb);
        if !hop.name.is_empty() {
            words.push(' ');
            if !hop.kind.is_empty() {
                words.push_str(&hop.kind);
                words.push(' ');
            }
            if !hop.namespace.is_empty() {
                words.push_str(&hop.namespace);
                words.push('/');
            }
            words.push_str(&hop.name);
        }
        self.gate_with(hop, words).await;
    }

    /// Waits at `hop`'s gate, then emits it. Returns its sequence number. (Not an `async fn`,
    /// so that the hop's place in the caller's code is known for its log line.)
    #[track_caller]
    pub fn gate_emit(&self, hop: FlowEvent) -> impl Future<Output = u64> + Send + '_ {
        let location = std::panic::Location::caller();
        async move {
            self.gate(&hop).await;
            self.emit_at(hop, location)
        }
    }

    /// [`Flow::gate`] with the hop put in the caller's words.
    pub async fn gate_with(&self, hop: &FlowEvent, words: String) {
        if never_held(hop) {
            return;
        }
        let mut hop = hop.clone();
        if hop.root.is_empty() {
            hop.root = self.root_of(&hop);
        }
        let (open, opened) = tokio::sync::oneshot::channel();
        let id = {
            let mut gates = self.stepper.lock();
            if gates.mode == StepMode::Run || gates.focus.as_ref().is_some_and(|f| !f.holds(&hop)) {
                return;
            }
            let mut announce = FlowEvent::new(hop.from.clone(), hop.to.clone(), "GATE")
                .object(&hop.kind, &hop.namespace, &hop.name)
                .detail(words.clone());
            announce.uid = hop.uid.clone();
            announce.root = hop.root.clone();
            let id = self.emit(announce);
            let gate = PendingGate {
                id,
                words,
                from: hop.from,
                verb: hop.verb,
                kind: hop.kind,
                namespace: hop.namespace,
                name: hop.name,
                root: hop.root,
            };
            gates.pending.insert(id, Waiter { gate, open });
            id
        };
        // Forgotten if the waiter goes away (a cancelled request) before it is released.
        struct Forget<'a>(&'a Stepper, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.forget(self.1);
            }
        }
        let _forget = Forget(&self.stepper, id);
        let _ = opened.await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn hop_patterns_match_globs_negations_and_every_field_given() {
        let hop = FlowEvent::new("controller/deployment", "apiserver", "POST").object(
            "ReplicaSet",
            "default",
            "web-7d4b9",
        );
        let pattern = |yaml: &str| serde_yaml::from_str::<HopPattern>(yaml).unwrap();
        assert!(pattern("{}").matches(&hop));
        assert!(pattern("{from: controller/*, verb: POST, kind: ReplicaSet}").matches(&hop));
        assert!(pattern("{name: web-*}").matches(&hop));
        assert!(pattern("{name: '*-7d4b9'}").matches(&hop));
        assert!(pattern("{name: 'w*4*9'}").matches(&hop));
        assert!(!pattern("{name: 'w*4*8'}").matches(&hop));
        assert!(!pattern("{from: controller}").matches(&hop));
        assert!(pattern("{from: '!apiserver', to: apiserver}").matches(&hop));
        assert!(!pattern("{from: '!controller/*'}").matches(&hop));
        assert!(!pattern("{verb: POST, kind: Pod}").matches(&hop));
        assert!(glob("a*a", "aa"));
        assert!(!glob("a*a", "a"));
        assert!(serde_yaml::from_str::<HopPattern>("{verbs: POST}").is_err());
        assert_eq!(
            pattern("{from: kubectl, verb: POST, namespace: default}").to_string(),
            "kubectl -> * POST * default/*"
        );
    }

    #[tokio::test]
    async fn events_are_numbered_and_caught_up() {
        let flow = Flow::new();
        flow.emit(FlowEvent::new("kubectl", "apiserver", "POST"));
        let (backlog, mut live) = flow.subscribe(0);
        flow.emit(FlowEvent::new("apiserver", "store", "CREATE"));
        assert_eq!(backlog.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
        assert_eq!(live.recv().await.unwrap().seq, 2);
        assert_eq!(flow.subscribe(1).0.len(), 1);
    }

    fn hop(namespace: &str, name: &str) -> FlowEvent {
        FlowEvent::new("scheduler", "apiserver", "BIND").object("Pod", namespace, name)
    }

    #[test]
    fn a_hop_without_a_root_takes_its_object_s_last_root() {
        let flow = Flow::new();
        let rooted = |kind: &str, name: &str, root: &str| {
            let mut e =
                FlowEvent::new("apiserver", "store", "CREATE").object(kind, "default", name);
            e.root = root.to_owned();
            e
        };
        let root_of = |kind: &str, name: &str| {
            let seq = flow.emit(
                FlowEvent::new("kubelet/node-1", "apiserver", "PATCH")
                    .object(kind, "default", name),
            );
            let (events, _) = flow.subscribe(seq - 1);
            events[0].root.clone()
        };
        flow.emit(rooted("Pod", "web-1", "Deployment/web"));
        flow.emit(rooted("Pod", "web-2", "Deployment/web"));
        // An object that is its own root (no owner) is remembered as such.
        flow.emit(rooted("Event", "web-1.1", "Event/web-1.1"));
        assert_eq!(root_of("Pod", "web-1"), "Deployment/web");
        assert_eq!(root_of("Pod", "web-2"), "Deployment/web");
        assert_eq!(root_of("Event", "web-1.1"), "Event/web-1.1");
        assert_eq!(root_of("Pod", "other"), "");
        // Its owner changed (adopted, orphaned): the newest root is the one kept.
        flow.emit(rooted("Pod", "web-1", "Pod/web-1"));
        assert_eq!(root_of("Pod", "web-1"), "Pod/web-1");
        flow.emit(rooted("Pod", "web-1", "StatefulSet/db"));
        assert_eq!(root_of("Pod", "web-1"), "StatefulSet/db");
        assert_eq!(flow.root_of(&hop("default", "web-2")), "Deployment/web");
    }

    #[tokio::test(start_paused = true)]
    async fn step_mode_holds_gates_until_released() {
        let flow = Flow::new();
        let stepper = flow.stepper().clone();
        flow.gate(&hop("default", "a")).await; // run mode: open
        stepper.set_mode(StepMode::Step);
        let waiting = tokio::spawn({
            let flow = flow.clone();
            async move { flow.gate(&hop("default", "b")).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        let state = stepper.state();
        assert_eq!(state.waiting, 1);
        assert_eq!(
            state.pending[0].words,
            "scheduler wants to BIND Pod default/b"
        );
        let (announced, _) = flow.subscribe(0);
        assert_eq!(announced.last().unwrap().verb, "GATE");
        assert_eq!(announced.last().unwrap().seq, state.pending[0].id);
        assert!(!stepper.release_gate(state.pending[0].id + 1));
        assert!(stepper.release_gate(state.pending[0].id));
        waiting.await.unwrap();
        let held = tokio::spawn({
            let flow = flow.clone();
            async move { flow.gate(&hop("default", "c")).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        stepper.set_mode(StepMode::Run);
        held.await.unwrap();
        assert_eq!(stepper.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn focus_holds_one_story_and_heartbeats_are_never_held() {
        let flow = Flow::new();
        let stepper = flow.stepper().clone();
        stepper.set_mode(StepMode::Step);
        // The apiserver's write names the story; the scheduler's later hop inherits it.
        let mut created =
            FlowEvent::new("apiserver", "store", "CREATE").object("Pod", "demo", "web-1");
        created.root = "Deployment/web".into();
        flow.emit(created);
        let renew = FlowEvent::new("kubelet/node-1", "apiserver", "UPDATE").object(
            "Lease",
            "kube-node-lease",
            "node-1",
        );
        flow.gate(&renew).await;
        stepper.set_focus(Some(Focus {
            namespace: None,
            root: Some("Deployment/web".into()),
        }));
        flow.gate(&hop("other", "x")).await; // another story: open
        let held = tokio::spawn({
            let flow = flow.clone();
            async move { flow.gate(&hop("demo", "web-1")).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!held.is_finished());
        assert_eq!(stepper.state().pending[0].root, "Deployment/web");
        assert_eq!(stepper.release(5), 1);
        held.await.unwrap();
        // A cancelled waiter leaves no gate behind.
        let cancelled = tokio::spawn({
            let flow = flow.clone();
            async move { flow.gate(&hop("demo", "web-1")).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        cancelled.abort();
        let _ = cancelled.await;
        assert_eq!(stepper.waiting(), 0);
    }
}
