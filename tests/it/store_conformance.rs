//! The store conformance suite: one set of checks that every [`Store`] backend passes.
//!
//! Each check runs against the embedded store and, with the `etcd` feature, against a real etcd
//! started for the test on 127.0.0.1 (Debian's `etcd-server`). Without an `etcd` binary the etcd
//! checks are skipped, unless `ORRERY_REQUIRE_ETCD` or `CI` is set, where they fail instead.

#[cfg(feature = "etcd")]
use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use orrery::store::embedded::EmbeddedStore;
use orrery::store::{
    Error, Event, KeyValue, MAX_VALUE_BYTES, RangeRequest, Revision, Store, WatchStream,
};

/// A store under test and whatever keeps it alive (its directory, its etcd process).
struct Backend {
    store: Arc<dyn Store>,
    _guard: Box<dyn std::any::Any + Send>,
}

impl Backend {
    async fn embedded() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        Backend {
            store: Arc::new(store),
            _guard: Box::new(dir),
        }
    }

    #[cfg(feature = "etcd")]
    async fn etcd() -> Option<Backend> {
        use orrery::store::etcd::{EtcdStore, LocalEtcd};
        if !common::etcd_available() {
            return None;
        }
        let local = LocalEtcd::start(None).await.unwrap();
        let store = EtcdStore::connect(std::slice::from_ref(&local.endpoint))
            .await
            .unwrap();
        Some(Backend {
            store: Arc::new(store),
            _guard: Box::new(local),
        })
    }
}

/// Runs each named check against every backend.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let backend = super::Backend::embedded().await;
                    super::$check(&backend.store).await;
                }
            )*
        }
        #[cfg(feature = "etcd")]
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(backend) = super::Backend::etcd().await else { return };
                    super::$check(&backend.store).await;
                }
            )*
        }
    };
}

conformance!(
    revisions_count_every_write,
    compare_and_swap_conflicts,
    create_only_if_absent,
    range_pages_at_a_fixed_revision,
    range_respects_prefixes,
    watch_orders_and_resumes,
    watch_from_compacted_revision,
    delete_events_carry_previous_value,
    concurrent_writers_lose_no_update,
    large_values,
    restore_makes_a_snapshot_the_whole_content,
);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(watch: &mut WatchStream) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(event))) => event,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

async fn revisions_count_every_write(store: &Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    assert!(start >= 1, "revisions start at 1, as in etcd");
    let r1 = store.create("/r/a", b("1")).await.unwrap();
    assert_eq!(r1, start + 1);
    let r2 = store.create("/r/b", b("1")).await.unwrap();
    assert_eq!(r2, r1 + 1, "one global counter across keys");
    let r3 = store.update("/r/a", b("2"), r1).await.unwrap();
    assert_eq!(r3, r2 + 1);
    let a = store.get("/r/a").await.unwrap().unwrap();
    assert_eq!(
        a,
        KeyValue {
            key: "/r/a".into(),
            value: b("2"),
            create_revision: r1,
            mod_revision: r3
        }
    );
    let r4 = store.delete("/r/b", r2).await.unwrap();
    assert_eq!(r4, r3 + 1);
    assert_eq!(store.get("/r/b").await.unwrap(), None);
    assert_eq!(store.current_revision().await.unwrap(), r4);
    // A failed write changes nothing, the revision included.
    assert!(store.create("/r/a", b("x")).await.is_err());
    assert_eq!(store.current_revision().await.unwrap(), r4);
}

async fn compare_and_swap_conflicts(store: &Arc<dyn Store>) {
    let r1 = store.create("/cas/k", b("v1")).await.unwrap();
    let r2 = store.update("/cas/k", b("v2"), r1).await.unwrap();
    match store.update("/cas/k", b("stale"), r1).await {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!((key.as_str(), expected, actual), ("/cas/k", r1, r2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        store.delete("/cas/k", r1).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        store.get("/cas/k").await.unwrap().unwrap().value,
        b("v2"),
        "a failed CAS changes nothing"
    );
    assert!(matches!(
        store.update("/cas/missing", b("v"), r1).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("/cas/missing", r1).await,
        Err(Error::NotFound { .. })
    ));
    let r3 = store.delete("/cas/k", r2).await.unwrap();
    assert!(matches!(
        store.update("/cas/k", b("v3"), r2).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.current_revision().await.unwrap(), r3);
}

async fn create_only_if_absent(store: &Arc<dyn Store>) {
    let r1 = store.create("/c/k", b("first")).await.unwrap();
    assert!(
        matches!(store.create("/c/k", b("second")).await, Err(Error::AlreadyExists { key }) if key == "/c/k")
    );
    assert_eq!(store.get("/c/k").await.unwrap().unwrap().value, b("first"));
    let r2 = store.delete("/c/k", r1).await.unwrap();
    let r3 = store.create("/c/k", b("again")).await.unwrap();
    assert_eq!(r3, r2 + 1);
    let kv = store.get("/c/k").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision),
        (r3, r3),
        "a re-created key starts over"
    );
}

async fn range_pages_at_a_fixed_revision(store: &Arc<dyn Store>) {
    let mut revisions = BTreeMap::new();
    for i in 0..25 {
        let key = format!("/page/{i:02}");
        revisions.insert(
            key.clone(),
            store.create(&key, b(&format!("v{i}"))).await.unwrap(),
        );
    }
    let snapshot = store.range(&RangeRequest::prefix("/page/")).await.unwrap();
    assert_eq!(snapshot.kvs.len(), 25);
    assert!(!snapshot.more);
    let at = snapshot.revision;
    assert_eq!(at, store.current_revision().await.unwrap());

    // Page through the range, changing it between pages as other clients would.
    let mut writes = (0..25).map(|i| {
        let store = store.clone();
        let key = format!("/page/{i:02}");
        let revision = revisions[&key];
        async move {
            match i % 3 {
                0 => store.delete(&key, revision).await.map(drop),
                1 => store.update(&key, b("changed"), revision).await.map(drop),
                _ => store
                    .create(&format!("{key}-new"), b("new"))
                    .await
                    .map(drop),
            }
            .unwrap()
        }
    });
    let mut pages = Vec::new();
    let mut request = RangeRequest {
        limit: Some(7),
        ..RangeRequest::prefix("/page/")
    };
    loop {
        let page = store.range(&request).await.unwrap();
        assert_eq!(
            page.revision, at,
            "every page is read at the first page's revision"
        );
        assert!(page.kvs.len() <= 7);
        pages.extend(page.kvs.clone());
        // Another client deletes, updates and creates keys in the range between pages.
        for write in writes.by_ref().take(8) {
            write.await;
        }
        if !page.more {
            break;
        }
        // Like the API server: later pages continue after the last key, at the first revision.
        request.start_after = Some(page.kvs.last().unwrap().key.clone());
        request.at_revision = Some(page.revision);
    }
    for write in writes {
        write.await;
    }
    assert_eq!(
        pages, snapshot.kvs,
        "the pages add up to the snapshot, whatever changed meanwhile"
    );

    // The past stays readable at `at`, and the present has moved on.
    let past = store
        .range(&RangeRequest {
            at_revision: Some(at),
            ..RangeRequest::prefix("/page/")
        })
        .await
        .unwrap();
    assert_eq!(past.kvs, snapshot.kvs);
    let now = store.range(&RangeRequest::prefix("/page/")).await.unwrap();
    assert_eq!(now.kvs.len(), 25 - 9 + 8);
    assert!(now.revision > at);
    // A limit of exactly the remaining keys says there are no more.
    let exact = store
        .range(&RangeRequest {
            limit: Some(now.kvs.len()),
            ..RangeRequest::prefix("/page/")
        })
        .await
        .unwrap();
    assert!(!exact.more);
    let future = RangeRequest {
        at_revision: Some(now.revision + 100),
        ..RangeRequest::prefix("/page/")
    };
    assert!(
        store.range(&future).await.is_err(),
        "a future revision cannot be read"
    );
}

async fn range_respects_prefixes(store: &Arc<dyn Store>) {
    for key in [
        "/registry/pods/a/x",
        "/registry/pods/b/y",
        "/registry/podsx/z",
        "/registry/pod",
        "/registry/services/s",
    ] {
        store.create(key, b(key)).await.unwrap();
    }
    let keys =
        |r: orrery::store::RangeResult| r.kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
    assert_eq!(
        keys(
            store
                .range(&RangeRequest::prefix("/registry/pods/"))
                .await
                .unwrap()
        ),
        ["/registry/pods/a/x", "/registry/pods/b/y"]
    );
    assert_eq!(
        keys(
            store
                .range(&RangeRequest::prefix("/registry/pods/b/"))
                .await
                .unwrap()
        ),
        ["/registry/pods/b/y"]
    );
    assert_eq!(
        keys(store.range(&RangeRequest::prefix("")).await.unwrap()).len(),
        5
    );
    let after = RangeRequest {
        start_after: Some("/registry/pods/a/x".into()),
        ..RangeRequest::prefix("/registry/pods/")
    };
    assert_eq!(
        keys(store.range(&after).await.unwrap()),
        ["/registry/pods/b/y"]
    );
    assert!(
        store
            .range(&RangeRequest::prefix("/nothing/"))
            .await
            .unwrap()
            .kvs
            .is_empty()
    );
}

async fn watch_orders_and_resumes(store: &Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/w/", 0).await.unwrap();
    let r1 = store.create("/w/a", b("1")).await.unwrap();
    store.create("/other/a", b("ignored")).await.unwrap();
    let r2 = store.update("/w/a", b("2"), r1).await.unwrap();
    let r3 = store.create("/w/b", b("1")).await.unwrap();
    let r4 = store.delete("/w/a", r2).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next_event(&mut watch).await);
    }
    let summary: Vec<(Revision, &str, bool)> = seen
        .iter()
        .map(|e| (e.revision(), e.key(), matches!(e, Event::Put { .. })))
        .collect();
    assert_eq!(
        summary,
        [
            (r1, "/w/a", true),
            (r2, "/w/a", true),
            (r3, "/w/b", true),
            (r4, "/w/a", false)
        ]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watch.next())
            .await
            .is_err(),
        "no event for keys outside the prefix"
    );

    // Resuming from any revision replays the same events from there on.
    let mut resumed = store.watch("/w/", r2).await.unwrap();
    for expected in &seen[1..] {
        assert_eq!(&next_event(&mut resumed).await, expected);
    }
    let mut from_start = store.watch("/w/", start).await.unwrap();
    assert_eq!(next_event(&mut from_start).await, seen[0]);

    // A watch stays live: later writes arrive too.
    let r5 = store.create("/w/c", b("1")).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), r5);
    assert_eq!(next_event(&mut resumed).await.revision(), r5);
}

async fn watch_from_compacted_revision(store: &Arc<dyn Store>) {
    let r1 = store.create("/compact/a", b("1")).await.unwrap();
    let r2 = store.update("/compact/a", b("2"), r1).await.unwrap();
    let r3 = store.update("/compact/a", b("3"), r2).await.unwrap();
    store.compact(r2).await.unwrap();
    match store.watch("/compact/", r1).await {
        Err(Error::Compacted { requested, .. }) => assert_eq!(requested, r1),
        Err(other) => panic!("expected Compacted, got {other}"),
        Ok(mut stream) => match stream.next().await {
            Some(Err(Error::Compacted { .. })) => {}
            other => panic!("expected Compacted, got {other:?}"),
        },
    }
    let mut watch = store.watch("/compact/", r2).await.unwrap();
    assert_eq!(
        next_event(&mut watch).await.revision(),
        r2,
        "the compacted revision itself is kept"
    );
    assert_eq!(next_event(&mut watch).await.revision(), r3);
    let old = RangeRequest {
        at_revision: Some(r1),
        ..RangeRequest::prefix("/compact/")
    };
    assert!(matches!(
        store.range(&old).await,
        Err(Error::Compacted { .. })
    ));
    let kept = RangeRequest {
        at_revision: Some(r2),
        ..RangeRequest::prefix("/compact/")
    };
    assert_eq!(store.range(&kept).await.unwrap().kvs[0].value, b("2"));
    store
        .compact(r1)
        .await
        .expect("compacting to an older revision does nothing");
    assert!(
        store.compact(r3 + 100).await.is_err(),
        "cannot compact the future"
    );
    assert_eq!(
        store.get("/compact/a").await.unwrap().unwrap().value,
        b("3"),
        "compaction keeps current values"
    );
}

async fn delete_events_carry_previous_value(store: &Arc<dyn Store>) {
    let mut watch = store.watch("/d/", 0).await.unwrap();
    let r1 = store.create("/d/k", b("born")).await.unwrap();
    let r2 = store.update("/d/k", b("grown"), r1).await.unwrap();
    let r3 = store.delete("/d/k", r2).await.unwrap();
    assert!(matches!(
        next_event(&mut watch).await,
        Event::Put { prev: None, .. }
    ));
    match next_event(&mut watch).await {
        Event::Put {
            kv,
            prev: Some(prev),
        } => {
            assert_eq!(
                (kv.value, kv.create_revision, kv.mod_revision),
                (b("grown"), r1, r2)
            );
            assert_eq!((prev.value, prev.mod_revision), (b("born"), r1));
        }
        other => panic!("expected an update with its previous value, got {other:?}"),
    }
    match next_event(&mut watch).await {
        Event::Delete {
            key,
            revision,
            prev,
        } => {
            assert_eq!((key.as_str(), revision), ("/d/k", r3));
            assert_eq!(
                prev,
                KeyValue {
                    key: "/d/k".into(),
                    value: b("grown"),
                    create_revision: r1,
                    mod_revision: r2
                }
            );
        }
        other => panic!("expected a delete, got {other:?}"),
    }
}

async fn concurrent_writers_lose_no_update(store: &Arc<dyn Store>) {
    const WRITERS: usize = 100;
    const INCREMENTS: usize = 5;
    let start = store.create("/counter", b("0")).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .create(&format!("/writers/{writer:03}"), b("mine"))
                .await
                .unwrap();
            let mut conflicts = 0;
            for _ in 0..INCREMENTS {
                // The read-modify-write loop every Kubernetes client runs on a 409.
                for attempt in 0.. {
                    assert!(attempt < 10_000, "starved");
                    let kv = store.get("/counter").await.unwrap().unwrap();
                    let n: usize = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    match store
                        .update("/counter", b(&(n + 1).to_string()), kv.mod_revision)
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(other) => panic!("{other}"),
                    }
                }
            }
            conflicts
        });
    }
    let mut conflicts = 0;
    while let Some(result) = tasks.join_next().await {
        conflicts += result.unwrap();
    }
    let counter = store.get("/counter").await.unwrap().unwrap();
    assert_eq!(
        counter.value,
        b(&(WRITERS * INCREMENTS).to_string()),
        "no update was lost"
    );
    let writers = store
        .range(&RangeRequest::prefix("/writers/"))
        .await
        .unwrap();
    assert_eq!(writers.kvs.len(), WRITERS);
    assert_eq!(
        store.current_revision().await.unwrap(),
        start + (WRITERS * INCREMENTS + WRITERS) as Revision,
        "exactly one revision per successful write ({conflicts} conflicts wrote nothing)"
    );
}

async fn large_values(store: &Arc<dyn Store>) {
    let big = Bytes::from(
        (0..MAX_VALUE_BYTES)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut watch = store.watch("/big/", 0).await.unwrap();
    let r1 = store.create("/big/a", big.clone()).await.unwrap();
    assert_eq!(store.get("/big/a").await.unwrap().unwrap().value, big);
    let r2 = store.update("/big/a", big.clone(), r1).await.unwrap();
    match next_event(&mut watch).await {
        Event::Put { kv, .. } => assert_eq!(kv.value.len(), MAX_VALUE_BYTES),
        other => panic!("{other:?}"),
    }
    assert_eq!(next_event(&mut watch).await.revision(), r2);
    store.create("/big/b", big.clone()).await.unwrap();
    store.create("/big/c", big.clone()).await.unwrap();
    let all = store.range(&RangeRequest::prefix("/big/")).await.unwrap();
    assert_eq!(all.kvs.len(), 3);
    assert!(all.kvs.iter().all(|kv| kv.value == big));

    let too_big = Bytes::from(vec![0u8; MAX_VALUE_BYTES + 1]);
    match store.create("/big/d", too_big.clone()).await {
        Err(Error::ValueTooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES))
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    assert!(matches!(
        store.update("/big/a", too_big, r2).await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(store.get("/big/d").await.unwrap(), None);
    assert_eq!(store.get("/big/a").await.unwrap().unwrap().mod_revision, r2);
}

/// A snapshot taken, the store changed, the snapshot restored: its keys are the whole content
/// at a new revision, history is compacted there, and every watch open before ends with
/// `Compacted` without delivering anything of the restore.
async fn restore_makes_a_snapshot_the_whole_content(store: &Arc<dyn Store>) {
    use orrery::store::snapshot::{self, Snapshot};
    let a1 = store.create("/s/a", b("a1")).await.unwrap();
    store.create("/s/b", b("b1")).await.unwrap();
    let c1 = store.create("/s/c", b("c1")).await.unwrap();
    let taken = snapshot::take(&**store).await.unwrap();
    assert_eq!(taken.revision, c1);
    assert_eq!(
        taken.kvs,
        vec![
            ("/s/a".to_owned(), b("a1")),
            ("/s/b".to_owned(), b("b1")),
            ("/s/c".to_owned(), b("c1")),
        ]
    );
    // Through the file format and back.
    let taken = Snapshot::decode(&taken.encode()).unwrap();
    // After it: a changed, b deleted, d created.
    store.update("/s/a", b("a2"), a1).await.unwrap();
    let b_now = store.get("/s/b").await.unwrap().unwrap();
    store.delete("/s/b", b_now.mod_revision).await.unwrap();
    store.create("/s/d", b("d1")).await.unwrap();
    let before = store.current_revision().await.unwrap();
    let mut live = store.watch("/s/", 0).await.unwrap();
    let mut behind = store.watch("/s/", a1 + 1).await.unwrap();

    let restored = store.restore(&taken.kvs).await.unwrap();
    assert!(restored.revision > before, "{restored:?} after {before}");
    assert_eq!(
        (restored.written, restored.deleted, restored.unchanged),
        (2, 1, 1),
        "a and b written, d deleted, c unchanged"
    );
    let now = store.range(&RangeRequest::prefix("/s/")).await.unwrap();
    let content: Vec<(String, Bytes)> = now
        .kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    assert_eq!(content, taken.kvs);
    let c = now.kvs.iter().find(|kv| kv.key == "/s/c").unwrap();
    assert_eq!(c.mod_revision, c1, "an unchanged key is not rewritten");
    assert!(now.revision >= restored.revision);

    for (name, watch) in [("live", &mut live), ("behind", &mut behind)] {
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(item) = watch.next().await {
                match item {
                    Ok(event) => assert!(
                        event.revision() <= before,
                        "the {name} watch delivered the restore: {event:?}"
                    ),
                    Err(error) => return Some(error),
                }
            }
            None
        })
        .await
        .unwrap_or_else(|_| panic!("the {name} watch did not end"));
        assert!(
            matches!(end, Some(Error::Compacted { .. })),
            "the {name} watch ended with {end:?}"
        );
    }
    // History before the restore is gone; writes go on above it.
    assert!(
        matches!(
            store.watch("/s/", before).await.map(|_| ()),
            Err(Error::Compacted { .. })
        ) || matches!(
            store.watch("/s/", before).await.unwrap().next().await,
            Some(Err(Error::Compacted { .. }))
        )
    );
    let mut after = store.watch("/s/", 0).await.unwrap();
    let e = store.create("/s/e", b("e1")).await.unwrap();
    assert!(e > restored.revision);
    assert_eq!(next_event(&mut after).await.revision(), e);
    // Restoring what is already there changes nothing but the revision.
    let same = snapshot::take(&**store).await.unwrap();
    let again = store.restore(&same.kvs).await.unwrap();
    assert_eq!((again.written, again.deleted), (0, 0));
    assert_eq!(again.unchanged, same.kvs.len());
}
