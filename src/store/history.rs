//! Recent changes held in memory, from which the embedded store serves its watches.
//!
//! Every write makes exactly one [`Event`], so the events form an unbroken run of revisions ending
//! at the store's current revision. The run is bounded twice: compaction drops events older than
//! the compacted revision (they are gone from disk too), and a byte budget evicts the oldest
//! events from memory only (a watcher that needs them reads them back from the on-disk log).

use std::collections::VecDeque;

use super::{Error, Event, Result, Revision};

/// What a watcher positioned at some revision should do next.
#[derive(Debug)]
pub(super) enum Next {
    /// These events (possibly none: then wait for the next write), and the revision to continue
    /// from.
    Events(Vec<Event>, Revision),
    /// The revisions from here on are no longer in memory: read them from the on-disk log.
    FromDisk,
}

/// The in-memory tail of the change log.
#[derive(Debug)]
pub(super) struct History {
    events: VecDeque<Event>,
    /// The revision of `events[0]` (`current + 1` when empty).
    first: Revision,
    /// The revision of the latest write.
    current: Revision,
    /// The oldest revision still readable; older ones have been compacted away.
    compacted: Revision,
    bytes: usize,
    max_bytes: usize,
    /// Restores since the store opened ([`History::restart`]).
    epoch: u64,
}

/// Roughly what an event costs in memory.
fn event_bytes(event: &Event) -> usize {
    let kv_bytes = |key: &str, value: &[u8]| key.len() + value.len() + 64;
    match event {
        Event::Put { kv, prev } => {
            kv_bytes(&kv.key, &kv.value) + prev.as_ref().map_or(0, |p| p.value.len() + 32)
        }
        Event::Delete { key, prev, .. } => kv_bytes(key, &prev.value),
    }
}

impl History {
    /// An empty history for a store at `current` with history from `compacted` on disk.
    pub(super) fn new(current: Revision, compacted: Revision, max_bytes: usize) -> Self {
        History {
            events: VecDeque::new(),
            first: current + 1,
            current,
            compacted,
            bytes: 0,
            max_bytes,
            epoch: 0,
        }
    }

    pub(super) fn current(&self) -> Revision {
        self.current
    }

    pub(super) fn compacted(&self) -> Revision {
        self.compacted
    }

    /// How many times the store was restored since it opened: a watch begun in an earlier
    /// epoch must end.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Starts over after a restore: nothing before `revision` (which is the current and the
    /// compacted revision) is kept, and a new epoch begins.
    pub(super) fn restart(&mut self, revision: Revision) {
        self.events.clear();
        self.bytes = 0;
        self.current = revision;
        self.compacted = revision;
        self.first = revision + 1;
        self.epoch += 1;
    }

    /// Appends the events of one committed batch, which must continue the run of revisions.
    pub(super) fn push(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            debug_assert_eq!(
                event.revision(),
                self.current + 1,
                "history must be contiguous"
            );
            self.current = event.revision();
            if self.events.is_empty() {
                self.first = self.current;
            }
            self.bytes += event_bytes(&event);
            self.events.push_back(event);
        }
        while self.bytes > self.max_bytes && self.events.len() > 1 {
            self.evict_front();
        }
    }

    /// Adds an event loaded from disk at open time, oldest first, before any new write.
    pub(super) fn load(&mut self, event: Event) {
        if self.bytes + event_bytes(&event) > self.max_bytes {
            // Keep the newest events: start over from here.
            self.events.clear();
            self.bytes = 0;
        }
        self.bytes += event_bytes(&event);
        if self.events.is_empty() {
            self.first = event.revision();
        }
        self.events.push_back(event);
    }

    fn evict_front(&mut self) {
        if let Some(event) = self.events.pop_front() {
            self.bytes -= event_bytes(&event);
            self.first = event.revision() + 1;
        }
    }

    /// Forgets everything before `revision`.
    pub(super) fn compact(&mut self, revision: Revision) {
        self.compacted = self.compacted.max(revision);
        while self.events.front().is_some_and(|e| e.revision() < revision) {
            self.evict_front();
        }
        self.first = self.first.max(revision);
    }

    /// Fails if `revision` is older than the history kept.
    pub(super) fn check_available(&self, revision: Revision) -> Result<()> {
        if revision < self.compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted: Some(self.compacted),
            });
        }
        Ok(())
    }

    /// Up to `max` events under `prefix` with revisions from `from` on.
    pub(super) fn next(&self, prefix: &str, from: Revision, max: usize) -> Result<Next> {
        self.check_available(from)?;
        if from < self.first {
            return Ok(Next::FromDisk);
        }
        let skip = usize::try_from(from - self.first).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut next = from.max(self.first);
        for event in self.events.iter().skip(skip) {
            next = event.revision() + 1;
            if event.key().starts_with(prefix) {
                out.push(event.clone());
                if out.len() >= max {
                    break;
                }
            }
        }
        Ok(Next::Events(out, next))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::KeyValue;

    fn put(key: &str, rev: Revision, size: usize) -> Event {
        Event::Put {
            kv: KeyValue {
                key: key.into(),
                value: Bytes::from(vec![b'x'; size]),
                create_revision: rev,
                mod_revision: rev,
            },
            prev: None,
        }
    }

    fn revisions(next: Next) -> (Vec<Revision>, Revision) {
        match next {
            Next::Events(events, next) => (events.iter().map(Event::revision).collect(), next),
            Next::FromDisk => panic!("expected events in memory"),
        }
    }

    #[test]
    fn filters_by_prefix_and_advances_past_other_keys() {
        let mut h = History::new(1, 1, 1 << 20);
        h.push([put("/a/1", 2, 1), put("/b/1", 3, 1), put("/a/2", 4, 1)]);
        assert_eq!(revisions(h.next("/a/", 2, 10).unwrap()), (vec![2, 4], 5));
        assert_eq!(revisions(h.next("/a/", 3, 10).unwrap()), (vec![4], 5));
        assert_eq!(revisions(h.next("/a/", 5, 10).unwrap()), (vec![], 5));
        assert_eq!(revisions(h.next("/a/", 2, 1).unwrap()), (vec![2], 3));
    }

    #[test]
    fn compaction_and_eviction() {
        let mut h = History::new(1, 1, 400);
        h.push([put("/a", 2, 100), put("/a", 3, 100), put("/a", 4, 100)]);
        // The byte budget evicted revision 2 from memory, not from disk.
        assert!(matches!(h.next("", 2, 10).unwrap(), Next::FromDisk));
        assert_eq!(revisions(h.next("", 3, 10).unwrap()), (vec![3, 4], 5));
        h.compact(4);
        assert!(matches!(
            h.next("", 3, 10),
            Err(Error::Compacted {
                requested: 3,
                compacted: Some(4)
            })
        ));
        assert_eq!(revisions(h.next("", 4, 10).unwrap()), (vec![4], 5));
    }
}
