//! The scheduler's latest decision per pod, as `GET /orrery/v1/scheduling/<namespace>/<pod>`
//! serves it. The scheduler is an API client and never calls into the API server for this: it
//! publishes each decision as the `data` of a `DECIDE` flow event, and a follower task here keeps
//! the newest one per pod, for at most [`KEPT_BYTES`] of them (the oldest go first). A follower that falls
//! behind the bus catches up from the flow's ring of recent events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::flow::{Flow, FlowEvent};

/// How many bytes of decisions are kept (the newest first): ~4.5 KiB each in a cluster of 100
/// nodes, so about 900 pods' decisions, the recent ones a learner asks about.
pub const KEPT_BYTES: usize = 4 << 20;

/// The latest decision per `namespace/name`.
#[derive(Default)]
pub struct Decisions {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_pod: HashMap<String, crate::flow::Data>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Decisions {
    /// Keeps the decision an event carries, if it is a scheduler's `DECIDE`.
    pub fn record(&self, event: &FlowEvent) {
        let (true, Some(data)) = (
            event.verb == "DECIDE"
                && crate::complog::Instance::from_supervised(&event.from)
                    .is_some_and(|i| i.component == crate::complog::Component::Scheduler),
            event.data.as_ref(),
        ) else {
            return;
        };
        let key = format!("{}/{}", event.namespace, event.name);
        let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        kept.bytes += data.get().len();
        match kept.by_pod.insert(key.clone(), data.clone()) {
            Some(replaced) => kept.bytes -= replaced.get().len(),
            None => kept.order.push_back(key),
        }
        while kept.bytes > KEPT_BYTES && kept.order.len() > 1 {
            if let Some(old) = kept.order.pop_front()
                && let Some(gone) = kept.by_pod.remove(&old)
            {
                kept.bytes -= gone.get().len();
            }
        }
    }

    /// The latest decision for a pod.
    pub fn get(&self, namespace: &str, name: &str) -> Option<serde_json::Value> {
        let kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let raw = kept.by_pod.get(&format!("{namespace}/{name}"))?;
        serde_json::from_str(raw.get()).ok()
    }

    /// Follows `flow` in a task (when there is a tokio runtime), until the bus closes.
    pub fn follow(self: &Arc<Self>, flow: &Flow) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (backlog, mut live) = flow.subscribe(0);
        let decisions = Arc::downgrade(self);
        let flow = flow.clone();
        runtime.spawn(async move {
            let mut last = 0;
            let mut pending: VecDeque<FlowEvent> = backlog.into();
            loop {
                let event = match pending.pop_front() {
                    Some(e) => e,
                    None => match live.recv().await {
                        Ok(e) => e,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            let (backlog, receiver) = flow.subscribe(last);
                            pending = backlog.into();
                            live = receiver;
                            continue;
                        }
                        Err(_) => return,
                    },
                };
                if event.seq <= last {
                    continue;
                }
                last = event.seq;
                let Some(decisions) = decisions.upgrade() else {
                    return;
                };
                decisions.record(&event);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn keeps_the_latest_decision_per_pod() {
        let flow = Flow::new();
        let decisions = Arc::new(Decisions::default());
        decisions.follow(&flow);
        let decide = |name: &str, attempt: u32| {
            FlowEvent::new("scheduler", "scheduler", "DECIDE")
                .object("Pod", "default", name)
                .data(json!({"attempt": attempt}))
        };
        flow.emit(decide("a", 1));
        flow.emit(FlowEvent::new("kubectl", "apiserver", "POST").object("Pod", "default", "b"));
        flow.emit(decide("a", 2));
        for _ in 0..100 {
            if decisions.get("default", "a") == Some(json!({"attempt": 2})) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(decisions.get("default", "a"), Some(json!({"attempt": 2})));
        assert_eq!(decisions.get("default", "b"), None);
    }

    #[test]
    fn keeps_the_newest_decisions_within_its_budget() {
        let decisions = Decisions::default();
        let big = "x".repeat(KEPT_BYTES / 4);
        for name in ["a", "b", "c", "d", "e"] {
            decisions.record(
                &FlowEvent::new("scheduler", "scheduler", "DECIDE")
                    .object("Pod", "default", name)
                    .data(json!({"why": big})),
            );
        }
        assert_eq!(decisions.get("default", "a"), None, "the oldest went first");
        for name in ["c", "d", "e"] {
            assert!(decisions.get("default", name).is_some(), "{name}");
        }
        let kept = decisions.inner.lock().unwrap();
        assert!(kept.bytes <= KEPT_BYTES);
        assert_eq!(
            kept.bytes,
            kept.by_pod.values().map(|d| d.get().len()).sum::<usize>()
        );
    }
}
