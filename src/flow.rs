//! The flow: every hop a request takes (client -> API server -> store -> ...) as a [`FlowEvent`]
//! on one bus, and the [`Stepper`] that lets a learner hold each write at a gate and release it
//! one hop at a time.
//!
//! Components hold a [`Flow`] handle and call [`Flow::emit`]; the dashboard (and
//! `GET /orrery/v1/flow`) subscribe. Events carry a sequence number assigned under one lock, so
//! every subscriber sees them in the order they happened. A ring of recent events lets a
//! subscriber that attaches late catch up from a sequence number.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{Semaphore, broadcast, watch};

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

/// How many recent events a late subscriber can catch up on.
const RECENT: usize = 10_000;

struct Recent {
    next_seq: u64,
    events: VecDeque<FlowEvent>,
}

/// The flow bus. Cheap to clone.
#[derive(Clone)]
pub struct Flow {
    recent: Arc<Mutex<Recent>>,
    sender: broadcast::Sender<FlowEvent>,
    stepper: Stepper,
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
            })),
            sender,
            stepper: Stepper::new(),
        }
    }

    /// Publishes an event, numbering and timestamping it. Returns its sequence number.
    pub fn emit(&self, mut event: FlowEvent) -> u64 {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
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

/// The gates that decision points await. In run mode they are open; in step mode each waits until
/// [`Stepper::release`] lets one through.
#[derive(Clone)]
pub struct Stepper {
    mode: Arc<watch::Sender<StepMode>>,
    permits: Arc<Semaphore>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

impl Stepper {
    fn new() -> Self {
        let (mode, _) = watch::channel(StepMode::Run);
        Stepper {
            mode: Arc::new(mode),
            permits: Arc::new(Semaphore::new(0)),
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// The current mode.
    pub fn mode(&self) -> StepMode {
        *self.mode.borrow()
    }

    /// How many gates are waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Switches mode. Switching to run opens every waiting gate.
    pub fn set_mode(&self, mode: StepMode) {
        self.mode.send_replace(mode);
    }

    /// Lets `n` waiting (or future) gates through, in step mode.
    pub fn release(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Waits at a gate: returns at once in run mode, or when released in step mode.
    pub async fn gate(&self) {
        let mut mode = self.mode.subscribe();
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        loop {
            if *mode.borrow_and_update() == StepMode::Run {
                break;
            }
            tokio::select! {
                permit = self.permits.acquire() => {
                    if let Ok(permit) = permit {
                        permit.forget();
                    }
                    break;
                }
                changed = mode.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        self.waiting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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

    #[tokio::test(start_paused = true)]
    async fn step_mode_holds_gates_until_released() {
        let flow = Flow::new();
        let stepper = flow.stepper().clone();
        stepper.gate().await; // run mode: open
        stepper.set_mode(StepMode::Step);
        let waiting = tokio::spawn({
            let stepper = stepper.clone();
            async move { stepper.gate().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        assert_eq!(stepper.waiting(), 1);
        stepper.release(1);
        waiting.await.unwrap();
        let held = tokio::spawn({
            let stepper = stepper.clone();
            async move { stepper.gate().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        stepper.set_mode(StepMode::Run);
        held.await.unwrap();
    }
}
