//! `orrery bench store`: one workload against the embedded store and a real etcd on the same
//! machine, in one run, printed side by side.
//!
//! Both backends are durable on acknowledgement (etcd fsyncs its WAL on every commit; the embedded
//! store fsyncs every group commit), both keep their data under the same directory, and their
//! samples are interleaved, so the figures compare like with like. Every loop is bounded in count
//! and in time.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use super::percentile;
use crate::store::embedded::EmbeddedStore;
use crate::store::{RangeRequest, Store};

/// Options of `orrery bench store`.
#[derive(Clone, Debug, clap::Args)]
pub struct StoreBenchOptions {
    /// Compare with the etcd at this URL (its data must be on this machine for a fair
    /// comparison). Without it, a private etcd is started from the `etcd` binary, if there is
    /// one.
    #[arg(long)]
    pub etcd: Option<String>,
    /// Keep the data of both stores under this directory [default: the system's temp directory].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Sequential puts to time.
    #[arg(long, default_value_t = 1000)]
    pub sequential: usize,
    /// Puts per concurrency level.
    #[arg(long, default_value_t = 19_200)]
    pub concurrent: usize,
    /// Keys in the range.
    #[arg(long, default_value_t = 10_000)]
    pub range_keys: usize,
    /// Watch events to time.
    #[arg(long, default_value_t = 500)]
    pub watch_events: usize,
    /// Bytes per value (1 KiB is a typical Kubernetes object).
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
}

/// No part of the workload runs longer than this; a row cut short says so.
const ROW_TIME_LIMIT: Duration = Duration::from_secs(60);

/// The figures for one backend.
#[derive(Clone, Debug, Default)]
pub struct StoreFigures {
    /// Sequential put latency, median.
    pub put_p50: Duration,
    /// Sequential put latency, 99th percentile.
    pub put_p99: Duration,
    /// Puts per second with 16 concurrent writers.
    pub put_16: f64,
    /// Puts per second with 64 concurrent writers.
    pub put_64: f64,
    /// Time to range over all the range keys in one snapshot (median of 5).
    pub range: Duration,
    /// From issuing a put to a watcher receiving its event, median.
    pub watch_p50: Duration,
    /// The same, 99th percentile.
    pub watch_p99: Duration,
}

/// The benchmark's result: a table with a column per backend.
#[derive(Clone, Debug)]
pub struct StoreReport {
    options: StoreBenchOptions,
    embedded: StoreFigures,
    etcd: Result<(String, StoreFigures), String>,
}

fn value(size: usize, seed: usize) -> Bytes {
    let text = format!("{{\"kind\":\"ConfigMap\",\"seed\":{seed},\"data\":\"");
    let mut bytes = text.into_bytes();
    bytes.resize(size.saturating_sub(2).max(bytes.len()), b'x');
    bytes.extend_from_slice(b"\"}");
    Bytes::from(bytes)
}

/// Creates `total` keys from `writers` concurrent tasks; returns how many were written and how
/// long it took.
async fn concurrent_puts(
    store: &Arc<dyn Store>,
    prefix: &str,
    writers: usize,
    total: usize,
    value_size: usize,
) -> Result<(usize, Duration), String> {
    let started = Instant::now();
    let deadline = started + ROW_TIME_LIMIT;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let store = store.clone();
        let prefix = format!("{prefix}{writer:03}/");
        let count = total / writers;
        tasks.spawn(async move {
            let mut done = 0usize;
            for i in 0..count {
                if Instant::now() > deadline {
                    break;
                }
                store
                    .create(&format!("{prefix}{i:06}"), value(value_size, i))
                    .await?;
                done += 1;
            }
            Ok::<_, crate::store::Error>(done)
        });
    }
    let mut done = 0;
    while let Some(result) = tasks.join_next().await {
        done += result
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok((done, started.elapsed()))
}

/// Runs the whole workload against every store, interleaved: each sample (or each round, for
/// throughput) is taken from every store in turn, so that whatever else the machine does at the
/// time (a slow disk flush, another process) falls on all of them alike.
pub async fn measure(
    stores: &[Arc<dyn Store>],
    options: &StoreBenchOptions,
) -> Result<Vec<StoreFigures>, String> {
    let mut figures = vec![StoreFigures::default(); stores.len()];
    let err = |e: crate::store::Error| e.to_string();

    // Sequential puts, one store after the other for each key.
    let deadline = Instant::now() + ROW_TIME_LIMIT;
    let mut latencies = vec![Vec::with_capacity(options.sequential); stores.len()];
    for i in 0..options.sequential {
        if Instant::now() > deadline {
            break;
        }
        for (store, latencies) in stores.iter().zip(&mut latencies) {
            let started = Instant::now();
            store
                .create(&format!("/bench/seq/{i:06}"), value(options.value_size, i))
                .await
                .map_err(err)?;
            latencies.push(started.elapsed());
        }
    }
    for (figures, latencies) in figures.iter_mut().zip(&mut latencies) {
        latencies.sort();
        figures.put_p50 = percentile(latencies, 0.50);
        figures.put_p99 = percentile(latencies, 0.99);
    }

    // Concurrent puts, in rounds that alternate between the stores.
    const ROUNDS: usize = 4;
    for writers in [16, 64] {
        let mut totals = vec![(0usize, Duration::ZERO); stores.len()];
        for round in 0..ROUNDS {
            for (store, total) in stores.iter().zip(&mut totals) {
                let prefix = format!("/bench/c{writers}/{round}/");
                let per_round = options.concurrent / ROUNDS;
                let (done, took) =
                    concurrent_puts(store, &prefix, writers, per_round, options.value_size).await?;
                total.0 += done;
                total.1 += took;
            }
        }
        for (figures, (done, took)) in figures.iter_mut().zip(totals) {
            let rate = done as f64 / took.as_secs_f64().max(f64::EPSILON);
            if writers == 16 {
                figures.put_16 = rate;
            } else {
                figures.put_64 = rate;
            }
        }
    }

    // A range over `range_keys` keys, loaded with 64 writers first.
    let keys = options.range_keys / 64 * 64;
    for store in stores {
        concurrent_puts(store, "/bench/range/", 64, keys, options.value_size).await?;
    }
    let request = RangeRequest::prefix("/bench/range/");
    let mut times = vec![Vec::new(); stores.len()];
    for _ in 0..5 {
        for (store, times) in stores.iter().zip(&mut times) {
            let started = Instant::now();
            let result = store.range(&request).await.map_err(err)?;
            times.push(started.elapsed());
            if result.kvs.len() != keys {
                return Err(format!(
                    "range returned {} keys, expected {keys}",
                    result.kvs.len()
                ));
            }
        }
    }
    for (figures, times) in figures.iter_mut().zip(&mut times) {
        times.sort();
        figures.range = percentile(times, 0.5);
    }

    // Watch delivery: put, then wait for the store's watcher to see it.
    let mut watches = Vec::new();
    for store in stores {
        watches.push(store.watch("/bench/watch/", 0).await.map_err(err)?);
    }
    let deadline = Instant::now() + ROW_TIME_LIMIT;
    let mut latencies = vec![Vec::with_capacity(options.watch_events); stores.len()];
    for i in 0..options.watch_events {
        if Instant::now() > deadline {
            break;
        }
        for ((store, watch), latencies) in stores.iter().zip(&mut watches).zip(&mut latencies) {
            let key = format!("/bench/watch/{i:06}");
            let started = Instant::now();
            let put = store.create(&key, value(options.value_size, i));
            let seen = async {
                match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
                    Ok(Some(Ok(event))) if event.key() == key => Ok(started.elapsed()),
                    Ok(Some(Ok(event))) => Err(format!("unexpected event for {}", event.key())),
                    Ok(Some(Err(e))) => Err(e.to_string()),
                    Ok(None) => Err("watch ended".to_owned()),
                    Err(_) => Err("no watch event within 10 s".to_owned()),
                }
            };
            let (put, seen) = tokio::join!(put, seen);
            put.map_err(err)?;
            latencies.push(seen?);
        }
    }
    for (figures, latencies) in figures.iter_mut().zip(&mut latencies) {
        latencies.sort();
        figures.watch_p50 = percentile(latencies, 0.50);
        figures.watch_p99 = percentile(latencies, 0.99);
    }
    Ok(figures)
}

/// Something that keeps a benchmarked store alive (a private etcd process).
type Guard = Box<dyn std::any::Any + Send>;

/// Connects to the etcd to compare with: `--etcd URL`, or a private one started here.
#[cfg(feature = "etcd")]
async fn connect_etcd(
    options: &StoreBenchOptions,
    dir: &std::path::Path,
) -> Result<(String, Arc<dyn Store>, Option<Guard>), String> {
    use crate::store::etcd::{EtcdStore, LocalEtcd};
    let (label, endpoint, guard) = match &options.etcd {
        Some(url) => (url.clone(), url.clone(), None),
        None => {
            if !LocalEtcd::available() {
                return Err(
                    "no `etcd` binary (apt-get install etcd-server) and no --etcd URL".into(),
                );
            }
            let local = LocalEtcd::start(Some(dir))
                .await
                .map_err(|e| e.to_string())?;
            let endpoint = local.endpoint.clone();
            (
                format!("private etcd at {endpoint}"),
                endpoint,
                Some(Box::new(local) as Guard),
            )
        }
    };
    let store = EtcdStore::connect(std::slice::from_ref(&endpoint))
        .await
        .map_err(|e| e.to_string())?;
    Ok((label, Arc::new(store), guard))
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(
    _options: &StoreBenchOptions,
    _dir: &std::path::Path,
) -> Result<(String, Arc<dyn Store>, Option<Guard>), String> {
    Err(
        "this orrery was built without the `etcd` feature (cargo build --release --features etcd)"
            .into(),
    )
}

/// Runs `orrery bench store`.
pub async fn run_store_bench(options: &StoreBenchOptions) -> Result<StoreReport, String> {
    let parent = options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&parent)
        .map_err(|e| format!("cannot create a directory under {}: {e}", parent.display()))?;
    let path = dir.path().join("store.redb");
    let embedded = tokio::task::spawn_blocking(move || EmbeddedStore::open(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut stores: Vec<Arc<dyn Store>> = vec![Arc::new(embedded)];
    let etcd = connect_etcd(options, dir.path()).await;
    let (_guard, etcd_label) = match etcd {
        Ok((label, store, guard)) => {
            stores.push(store);
            (guard, Ok(label))
        }
        Err(why) => (None, Err(why)),
    };
    let mut figures = measure(&stores, options).await?.into_iter();
    let embedded = figures.next().unwrap_or_default();
    let etcd = etcd_label.map(|label| (label, figures.next().unwrap_or_default()));
    Ok(StoreReport {
        options: options.clone(),
        embedded,
        etcd,
    })
}

impl fmt::Display for StoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "orrery bench store: {}-byte values, durable on acknowledgement",
            o.value_size
        )?;
        match &self.etcd {
            Ok((label, _)) => writeln!(f, "etcd: {label}")?,
            Err(why) => writeln!(f, "etcd: not measured: {why}")?,
        }
        writeln!(f)?;
        let e = &self.embedded;
        let t = self.etcd.as_ref().ok().map(|(_, figures)| figures);
        writeln!(
            f,
            "| {:<44} | {:>10} | {:>10} | {:>17} |",
            "", "embedded", "etcd", "embedded gain"
        )?;
        writeln!(f, "|{:-<46}|{:->12}|{:->12}|{:->19}|", "", "", "", "")?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut row = |name: String, ours: f64, theirs: Option<f64>, lower_is_better: bool| {
            let (theirs_text, ratio) = match theirs {
                Some(theirs) if theirs > 0.0 && ours > 0.0 => {
                    let ratio = if lower_is_better {
                        theirs / ours
                    } else {
                        ours / theirs
                    };
                    (format!("{theirs:.2}"), format!("{ratio:.2}x"))
                }
                Some(theirs) => (format!("{theirs:.2}"), "-".to_owned()),
                None => ("-".to_owned(), "-".to_owned()),
            };
            writeln!(
                f,
                "| {name:<44} | {ours:>10.2} | {theirs_text:>10} | {ratio:>17} |"
            )
        };
        row(
            format!("sequential put p50 (ms, {} puts)", o.sequential),
            ms(e.put_p50),
            t.map(|t| ms(t.put_p50)),
            true,
        )?;
        row(
            "sequential put p99 (ms)".into(),
            ms(e.put_p99),
            t.map(|t| ms(t.put_p99)),
            true,
        )?;
        row(
            "put throughput, 16 writers (puts/s)".into(),
            e.put_16,
            t.map(|t| t.put_16),
            false,
        )?;
        row(
            "put throughput, 64 writers (puts/s)".into(),
            e.put_64,
            t.map(|t| t.put_64),
            false,
        )?;
        row(
            format!("range of {} keys (ms, median of 5)", o.range_keys / 64 * 64),
            ms(e.range),
            t.map(|t| ms(t.range)),
            true,
        )?;
        row(
            format!("watch put->event p50 (ms, {} events)", o.watch_events),
            ms(e.watch_p50),
            t.map(|t| ms(t.watch_p50)),
            true,
        )?;
        row(
            "watch put->event p99 (ms)".into(),
            ms(e.watch_p99),
            t.map(|t| ms(t.watch_p99)),
            true,
        )?;
        Ok(())
    }
}
