//! The scheduler's latest decision per pod, as `GET /orrery/v1/scheduling/<namespace>/<pod>`
//! serves it. The scheduler is an API client and never calls into the API server for this: it
//! publishes each decision as the `data` of a `DECIDE` flow event, and a follower task here keeps
//! the newest one per pod, for at most [`KEPT`] pods (the oldest go first). A follower that falls
//! behind the bus catches up from the flow's ring of recent events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::flow::{Flow, FlowEvent};

/// How many pods' decisions are kept.
pub const KEPT: usize = 10_000;

/// The latest decision per `namespace/name`.
#[derive(Default)]
pub struct Decisions {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_pod: HashMap<String, crate::flow::Data>,
    order: VecDeque<String>,
}

impl Decisions {
    /// Keeps the decision an event carries, if it is a scheduler's `DECIDE`.
    pub fn record(&self, event: &FlowEvent) {
        let (true, Some(data)) = (
            event.verb == "DECIDE" && event.from == "scheduler",
            event.data.as_ref(),
        ) else {
            return;
        };
        let key = format!("{}/{}", event.namespace, event.name);
        let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if kept.by_pod.insert(key.clone(), data.clone()).is_none() {
            kept.order.push_back(key);
            while kept.order.len() > KEPT {
                if let Some(old) = kept.order.pop_front() {
                    kept.by_pod.remove(&old);
                }
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
}
