//! What only the embedded store promises: durability across restarts and `kill -9`, group
//! commits, history that survives a restart, and watches that fall back to disk.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use orrery::store::embedded::{EmbeddedOptions, EmbeddedStore};
use orrery::store::{Error, Event, RangeRequest, Store, WatchStream};

async fn next_event(watch: &mut WatchStream) -> Result<Event, Error> {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a watch event within 10 s")
        .expect("the watch to go on")
}

#[tokio::test]
async fn restart_keeps_keys_revisions_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let (r1, r2, r3);
    {
        let store = EmbeddedStore::open(&path).unwrap();
        r1 = store.create("/k/a", "1".into()).await.unwrap();
        r2 = store.update("/k/a", "2".into(), r1).await.unwrap();
        r3 = store.create("/k/b", "1".into()).await.unwrap();
        store.compact(r2).await.unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), r3);
    assert_eq!(store.compacted_revision(), r2);
    let a = store.get("/k/a").await.unwrap().unwrap();
    assert_eq!(
        (a.value, a.create_revision, a.mod_revision),
        (Bytes::from("2"), r1, r2)
    );
    // Watches resume across the restart from any revision that was not compacted.
    let mut watch = store.watch("/k/", r2).await.unwrap();
    assert_eq!(next_event(&mut watch).await.unwrap().revision(), r2);
    assert_eq!(next_event(&mut watch).await.unwrap().revision(), r3);
    assert!(matches!(
        store.watch("/k/", r1).await,
        Err(Error::Compacted { .. })
    ));
    // And revisions carry on from where they were.
    assert_eq!(store.create("/k/c", "1".into()).await.unwrap(), r3 + 1);
    assert_eq!(next_event(&mut watch).await.unwrap().revision(), r3 + 1);
}

#[tokio::test]
async fn a_second_open_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let _first = EmbeddedStore::open(&path).unwrap();
    let error = EmbeddedStore::open(&path)
        .err()
        .expect("a second open fails");
    assert!(error.to_string().contains("already open"), "{error}");
}

#[tokio::test]
async fn an_empty_store_file_is_refused_and_a_missing_one_is_made_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    std::fs::write(&path, b"").unwrap();
    let error = EmbeddedStore::open(&path)
        .err()
        .expect("an empty file is no store");
    assert!(matches!(error, Error::EmptyFile { .. }), "{error}");
    assert!(error.to_string().contains("the file is empty"), "{error}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");

    // A missing file is a new store, whole on disk (no `.new` left) and open again after.
    std::fs::remove_file(&path).unwrap();
    let store = EmbeddedStore::open(&path).unwrap();
    let revision = store.create("/k/a", "1".into()).await.unwrap();
    drop(store);
    assert!(std::fs::metadata(&path).unwrap().len() > 0);
    assert!(!dir.path().join("store.redb.new").exists());
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(
        store.get("/k/a").await.unwrap().unwrap().mod_revision,
        revision
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..64 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..20 {
                store
                    .create(&format!("/g/{writer:02}/{i:02}"), "v".into())
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    let writes = 64 * 20;
    let commits = store.commit_count();
    assert!(
        commits < writes / 2,
        "{writes} writes took {commits} commits: no group commit"
    );
}

#[tokio::test]
async fn a_watcher_behind_compaction_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    let r1 = store.create("/k", "1".into()).await.unwrap();
    let mut watch = store.watch("/", r1).await.unwrap();
    assert_eq!(next_event(&mut watch).await.unwrap().revision(), r1);
    let mut last = r1;
    for _ in 0..5 {
        last = store.update("/k", "n".into(), last).await.unwrap();
    }
    store.compact(last).await.unwrap();
    // The watcher had read only up to r1; r1 + 1 .. last - 1 are gone.
    assert!(matches!(
        next_event(&mut watch).await,
        Err(Error::Compacted { .. })
    ));
    assert!(
        watch.next().await.is_none(),
        "the watch ends after the error"
    );
}

#[tokio::test]
async fn old_history_is_read_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    // Room in memory for a few events only.
    let options = EmbeddedOptions {
        history_memory_bytes: 2048,
        ..Default::default()
    };
    let store = EmbeddedStore::open_with(&dir.path().join("store.redb"), options).unwrap();
    let start = store.current_revision().await.unwrap() + 1;
    for i in 0..200 {
        store
            .create(&format!("/h/{i:03}"), Bytes::from(vec![b'x'; 100]))
            .await
            .unwrap();
    }
    let mut watch = store.watch("/h/", start).await.unwrap();
    for i in 0..200 {
        let event = next_event(&mut watch).await.unwrap();
        assert_eq!(
            (event.key(), event.revision()),
            (format!("/h/{i:03}").as_str(), start + i)
        );
    }
}

#[tokio::test]
async fn range_at_past_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    let a1 = store.create("/p/a", "a1".into()).await.unwrap();
    let b1 = store.create("/p/b", "b1".into()).await.unwrap();
    let a2 = store.update("/p/a", "a2".into(), a1).await.unwrap();
    store.delete("/p/b", b1).await.unwrap();
    store.create("/p/c", "c1".into()).await.unwrap();
    let at = |revision| RangeRequest {
        at_revision: Some(revision),
        ..RangeRequest::prefix("/p/")
    };
    let values = |r: orrery::store::RangeResult| {
        r.kvs
            .into_iter()
            .map(|kv| format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)))
            .collect::<Vec<_>>()
    };
    assert_eq!(values(store.range(&at(a1)).await.unwrap()), ["/p/a=a1"]);
    assert_eq!(
        values(store.range(&at(b1)).await.unwrap()),
        ["/p/a=a1", "/p/b=b1"]
    );
    assert_eq!(
        values(store.range(&at(a2)).await.unwrap()),
        ["/p/a=a2", "/p/b=b1"]
    );
    assert_eq!(
        values(store.range(&RangeRequest::prefix("/p/")).await.unwrap()),
        ["/p/a=a2", "/p/c=c1"]
    );
    let page = RangeRequest {
        limit: Some(1),
        start_after: Some("/p/a".into()),
        ..at(a2)
    };
    let page = store.range(&page).await.unwrap();
    assert_eq!(
        (values(page.clone()), page.more),
        (vec!["/p/b=b1".to_owned()], false)
    );
}

/// Starts `orrery store fill`, reads its acknowledgements until `wanted` (or 20 s), then kills it
/// with SIGKILL and returns every key it acknowledged, with the acknowledged revision.
fn fill_and_kill(state_dir: &Path, prefix: &str, wanted: usize) -> Vec<(String, u64)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(state_dir)
        .args([
            "store",
            "fill",
            prefix,
            "--count",
            "1000000",
            "--writers",
            "16",
            "--value-size",
            "512",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start orrery store fill");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.len() < wanted && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        acked.push(line);
    }
    child.kill().expect("SIGKILL the writer"); // std's kill sends SIGKILL
    child.wait().unwrap();
    // Acknowledgements printed before the kill still count: read the pipe to its end.
    acked.extend(lines.map_while(Result::ok));
    acked
        .into_iter()
        .filter_map(|line| {
            // A line cut off by the kill is not an acknowledgement.
            let (key, revision) = line.split_once(' ')?;
            Some((key.to_owned(), revision.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut all_acked = Vec::new();
    // Three rounds: kill, reopen and check, and write on top of the recovered store again.
    for (round, wanted) in [(0, 300), (1, 2000), (2, 50)] {
        let acked = fill_and_kill(dir.path(), &format!("/crash/{round}/"), wanted);
        assert!(
            acked.len() >= wanted.min(50),
            "round {round}: only {} acknowledgements",
            acked.len()
        );
        all_acked.extend(acked);

        let path = orrery::store::embedded_path(dir.path());
        let store = EmbeddedStore::open(&path).expect("the store opens cleanly after SIGKILL");
        for (key, revision) in &all_acked {
            let kv = store
                .get(key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged key {key} was lost"));
            assert_eq!(
                kv.mod_revision, *revision,
                "{key} has the acknowledged revision"
            );
        }
        // The store is consistent: every key it holds is within its revision, and it takes writes.
        let current = store.current_revision().await.unwrap();
        let everything = store.range(&RangeRequest::prefix("/crash/")).await.unwrap();
        assert!(everything.kvs.len() >= all_acked.len());
        assert!(everything.kvs.iter().all(|kv| kv.mod_revision <= current));
        assert_eq!(
            store
                .create(&format!("/after/{round}"), "ok".into())
                .await
                .unwrap(),
            current + 1
        );
    }
}
