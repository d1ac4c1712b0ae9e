//! The elector's decisions on a paused clock, against a fake API server that keeps one Lease
//! (get, create, update with resourceVersion preconditions) and the Events written about it.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;
use crate::complog::Component;

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
const EVENTS_PATH: &str = "/api/v1/namespaces/kube-system/events";

/// The fake API server's state: the Lease (if any), its resourceVersion, the Events.
#[derive(Default)]
struct Server {
    lease: Option<Value>,
    version: u64,
    events: Vec<Value>,
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

impl Server {
    fn serve(&mut self, method: &http::Method, path: &str, body: &[u8]) -> (u16, Value) {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        // The one Lease it keeps, whatever its name.
        let lease_name = path.strip_prefix(&format!("{LEASE_PATH}/"));
        let named = match lease_name {
            Some(name) if !name.contains('/') => path.to_owned(),
            _ => format!("{LEASE_PATH}/{SCHEDULER_LEASE}"),
        };
        let not_found = || {
            status(
                404,
                "NotFound",
                &format!(
                    "leases.coordination.k8s.io \"{}\" not found",
                    lease_name.unwrap_or(SCHEDULER_LEASE)
                ),
            )
        };
        match (method.as_str(), path) {
            ("GET", p) if p == named => match &self.lease {
                Some(lease) => (200, lease.clone()),
                None => not_found(),
            },
            ("POST", LEASE_PATH) => {
                if self.lease.is_some() {
                    return status(409, "AlreadyExists", "already exists");
                }
                self.version += 1;
                let mut lease = body;
                lease["metadata"]["resourceVersion"] = json!(self.version.to_string());
                lease["metadata"]["uid"] = json!("lease-uid");
                self.lease = Some(lease.clone());
                (201, lease)
            }
            ("PUT", p) if p == named => {
                let Some(current) = &self.lease else {
                    return not_found();
                };
                if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return status(
                        409,
                        "Conflict",
                        "the object has been modified; please apply your changes to the latest version and try again",
                    );
                }
                self.version += 1;
                let mut lease = body;
                lease["metadata"]["resourceVersion"] = json!(self.version.to_string());
                self.lease = Some(lease.clone());
                (200, lease)
            }
            ("POST", EVENTS_PATH) => {
                self.events.push(body.clone());
                (201, body)
            }
            _ => status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        }
    }
}

/// How the fake API server treats one replica's requests.
#[derive(Clone, Default)]
struct Link(Arc<AtomicU8>);

impl Link {
    const UP: u8 = 0;
    /// Every request fails with 503.
    const FAILING: u8 = 1;
    /// Every request hangs.
    const HANGING: u8 = 2;

    fn set(&self, mode: u8) {
        self.0.store(mode, Ordering::SeqCst);
    }
}

type Shared = Arc<Mutex<Server>>;

fn client(server: &Shared, link: &Link) -> kube::Client {
    let (server, link) = (server.clone(), link.clone());
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let (server, link) = (server.clone(), link.clone());
        async move {
            let (code, value) = match link.0.load(Ordering::SeqCst) {
                Link::HANGING => std::future::pending().await,
                Link::FAILING => status(503, "ServiceUnavailable", "the server is unavailable"),
                _ => {
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    server
                        .lock()
                        .unwrap()
                        .serve(&parts.method, parts.uri.path(), &body)
                }
            };
            let body = Full::new(Bytes::from(serde_json::to_vec(&value).unwrap()));
            Ok::<_, Infallible>(
                http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    kube::Client::new(service, "default")
}

fn lease(server: &Shared) -> Value {
    server.lock().unwrap().lease.clone().unwrap_or(Value::Null)
}

fn version(server: &Shared) -> u64 {
    server.lock().unwrap().version
}

/// Replica `n` of the scheduler.
fn replica(n: u16, timings: Timings) -> Arc<Candidate> {
    let name = format!("scheduler-{n}");
    Candidate::new(
        SCHEDULER_LEASE,
        &identity("host", &name),
        &name,
        "default-scheduler",
        Instance::replica(Component::Scheduler, n),
        timings,
        true,
    )
}

/// Replica `n` of the controller manager, which does not give its Lease up when stopped.
fn manager(n: u16, timings: Timings) -> Arc<Candidate> {
    let name = format!("controller-manager-{n}");
    Candidate::new(
        CONTROLLER_MANAGER_LEASE,
        &identity("host", &name),
        &name,
        "kube-controller-manager",
        Instance::replica(Component::ControllerManager, n),
        timings,
        false,
    )
}

/// A replica's work: whether it runs, and how many times it started.
#[derive(Clone, Default)]
struct Work {
    active: Arc<AtomicBool>,
    starts: Arc<AtomicUsize>,
}

struct Doing(Work);

impl Drop for Doing {
    fn drop(&mut self) {
        self.0.active.store(false, Ordering::SeqCst);
    }
}

impl Work {
    fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }
}

/// Runs an elector for `candidate` whose work is `work`.
fn run(
    candidate: &Arc<Candidate>,
    server: &Shared,
    link: &Link,
    flow: &Flow,
    work: &Work,
) -> tokio::task::JoinHandle<()> {
    let elector = LeaderElector::new(candidate.clone(), client(server, link), flow.clone());
    let work = work.clone();
    tokio::spawn(elector.run(move || {
        let work = work.clone();
        async move {
            work.active.store(true, Ordering::SeqCst);
            work.starts.fetch_add(1, Ordering::SeqCst);
            let _doing = Doing(work);
            std::future::pending::<()>().await
        }
    }))
}

/// Waits (on the paused clock, 10 ms at a time) until `done`, for at most `limit`; how long
/// it took.
async fn within(limit: Duration, done: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() <= limit {
        if done() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// The flow's hops of `verb`, as (from, detail).
fn hops(flow: &Flow, verb: &str) -> Vec<(String, String)> {
    flow.subscribe(0)
        .0
        .into_iter()
        .filter(|e| e.verb == verb)
        .map(|e| (e.from, e.detail))
        .collect()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test(start_paused = true)]
async fn a_free_lease_is_taken_at_once_and_renewed_every_retry_period() {
    let (server, flow) = (Shared::default(), Flow::new());
    let a = replica(1, Timings::default());
    let work = Work::default();
    let task = run(&a, &server, &Link::default(), &flow, &work);
    assert!(within(secs(0.1), || work.active()).await.is_some());
    assert!(a.leading());
    let taken = lease(&server);
    assert_eq!(taken["spec"]["holderIdentity"], "host_scheduler-1");
    assert_eq!(taken["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(taken["spec"]["leaseTransitions"], 0);
    assert_eq!(
        taken["spec"]["acquireTime"], taken["spec"]["renewTime"],
        "{taken}"
    );
    let created = version(&server);
    tokio::time::sleep(secs(10.05)).await;
    // Every retry period (2 s): five renewals, the acquire time kept.
    assert_eq!(version(&server), created + 5);
    let renewed = lease(&server);
    assert_eq!(renewed["spec"]["acquireTime"], taken["spec"]["acquireTime"]);
    assert_ne!(renewed["spec"]["renewTime"], taken["spec"]["renewTime"]);
    assert_eq!(work.starts(), 1);
    let events = server.lock().unwrap().events.clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["reason"], "LeaderElection");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["message"], "host_scheduler-1 became leader");
    assert_eq!(event["source"]["component"], "default-scheduler");
    assert_eq!(
        event["involvedObject"],
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "namespace": "kube-system",
               "name": "kube-scheduler", "uid": "lease-uid"})
    );
    assert_eq!(
        hops(&flow, crate::flow::LEADER),
        [(
            "scheduler-1".to_owned(),
            "scheduler-1 became leader of kube-system/kube-scheduler, which it created".to_owned()
        )]
    );
    task.abort();
    assert!(
        within(secs(0.1), || !a.leading() && !work.active())
            .await
            .is_some()
    );
}

#[tokio::test(start_paused = true)]
async fn a_standby_waits_while_the_leader_renews_and_takes_over_once_it_stops() {
    let (server, flow) = (Shared::default(), Flow::new());
    let timings = Timings::default();
    let (a, b) = (replica(1, timings), replica(2, timings));
    let (work_a, work_b) = (Work::default(), Work::default());
    let task_a = run(&a, &server, &Link::default(), &flow, &work_a);
    assert!(within(secs(0.1), || work_a.active()).await.is_some());
    let _task_b = run(&b, &server, &Link::default(), &flow, &work_b);
    // A minute of standby: the leader renews, so the standby never acts.
    assert!(within(secs(60.0), || work_b.active()).await.is_none());
    assert!(!b.leading() && a.leading());
    assert_eq!(
        hops(&flow, crate::flow::STANDBY),
        [(
            "scheduler-2".to_owned(),
            "scheduler-2 is standby: kube-system/kube-scheduler is held by scheduler-1; it takes \
             over if the lease goes 15s without a renewal"
                .to_owned()
        )]
    );
    // The leader dies. Its last renewal was at most a retry period ago. The standby saw that
    // change at its next try (a jittered retry period later: at most 2.2 of them), takes over
    // once a lease duration has passed since, at its first try after that.
    task_a.abort();
    let took = within(secs(30.0), || work_b.active())
        .await
        .expect("the standby takes over");
    assert!(
        took >= secs(13.0) && took <= secs(15.0 + 2.0 * 4.4 + 0.1),
        "took {took:?}"
    );
    assert!(b.leading() && !a.leading());
    let taken = lease(&server);
    assert_eq!(taken["spec"]["holderIdentity"], "host_scheduler-2");
    assert_eq!(taken["spec"]["leaseTransitions"], 1);
    assert_eq!(taken["spec"]["acquireTime"], taken["spec"]["renewTime"]);
    let leaders = hops(&flow, crate::flow::LEADER);
    assert_eq!(
        leaders[1],
        (
            "scheduler-2".to_owned(),
            "scheduler-2 became leader of kube-system/kube-scheduler after scheduler-1's lease \
             expired (no renewal seen for 15s)"
                .to_owned()
        )
    );
    let messages: Vec<Value> = server
        .lock()
        .unwrap()
        .events
        .iter()
        .map(|e| e["message"].clone())
        .collect();
    assert_eq!(
        messages,
        [
            "host_scheduler-1 became leader",
            "host_scheduler-2 became leader"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn expiry_is_judged_by_when_the_candidate_saw_the_record_change_not_by_renew_time() {
    let (server, flow) = (Shared::default(), Flow::new());
    // A record renewed long ago by a holder that is gone, on a clock far behind.
    server.lock().unwrap().lease = Some(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kube-scheduler", "namespace": "kube-system", "resourceVersion": "7", "uid": "lease-uid"},
        "spec": {"holderIdentity": "elsewhere_scheduler-9", "leaseDurationSeconds": 15,
                 "acquireTime": "2000-01-01T00:00:00.000000Z", "renewTime": "2000-01-01T00:00:00.000000Z",
                 "leaseTransitions": 4},
    }));
    server.lock().unwrap().version = 7;
    let b = replica(2, Timings::default());
    let work = Work::default();
    let _task = run(&b, &server, &Link::default(), &flow, &work);
    // Not before a whole lease duration of its own observation.
    assert!(within(secs(14.9), || work.active()).await.is_none());
    let took = within(secs(5.0), || work.active())
        .await
        .expect("taken once a lease duration has passed");
    assert!(took <= secs(4.6), "took {took:?} more");
    let taken = lease(&server);
    assert_eq!(taken["spec"]["holderIdentity"], "host_scheduler-2");
    assert_eq!(taken["spec"]["leaseTransitions"], 5);
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_within_the_deadline_stops_acting() {
    let (server, flow) = (Shared::default(), Flow::new());
    let timings = Timings::default();
    let (a, b) = (replica(1, timings), replica(2, timings));
    let (work_a, work_b) = (Work::default(), Work::default());
    let link_a = Link::default();
    let _task_a = run(&a, &server, &link_a, &flow, &work_a);
    assert!(within(secs(0.1), || work_a.active()).await.is_some());
    let _task_b = run(&b, &server, &Link::default(), &flow, &work_b);
    tokio::time::sleep(secs(5.0)).await;
    // The API server stops answering the leader (its requests fail).
    link_a.set(Link::FAILING);
    // No renewal can have failed for a whole renew deadline yet...
    assert!(within(secs(9.9), || !work_a.active()).await.is_none());
    // ...but one has within a retry period more: it stops acting.
    assert!(within(secs(2.2), || !work_a.active()).await.is_some());
    assert!(!a.leading());
    assert_eq!(
        hops(&flow, crate::flow::LOST),
        [(
            "scheduler-1".to_owned(),
            "scheduler-1 lost kube-system/kube-scheduler: it could not renew it within the renew \
             deadline (10s); it stops acting and stands again"
                .to_owned()
        )]
    );
    // The standby takes over once the lease expires, counting the transition.
    assert!(within(secs(15.0), || work_b.active()).await.is_some());
    assert_eq!(lease(&server)["spec"]["leaseTransitions"], 1);
    // The old leader, answered again, stands as a candidate and stays standby.
    link_a.set(Link::UP);
    assert!(within(secs(30.0), || work_a.active()).await.is_none());
    assert_eq!(work_a.starts(), 1);
    assert!(
        hops(&flow, crate::flow::STANDBY)
            .iter()
            .any(|(from, detail)| from == "scheduler-1" && detail.contains("held by scheduler-2")),
        "{:?}",
        hops(&flow, crate::flow::STANDBY)
    );
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_hangs_is_given_up_at_the_deadline() {
    let (server, flow) = (Shared::default(), Flow::new());
    let a = replica(1, Timings::default());
    let work = Work::default();
    let link = Link::default();
    let _task = run(&a, &server, &link, &flow, &work);
    assert!(within(secs(0.1), || work.active()).await.is_some());
    link.set(Link::HANGING);
    assert!(within(secs(9.9), || !work.active()).await.is_none());
    assert!(within(secs(2.2), || !work.active()).await.is_some());
    assert!(!a.leading());
}

/// `a` leading and `b` standing by on `server`, five seconds after `a` took the Lease: each
/// one's task and work.
async fn leader_and_standby(
    (a, b): (&Arc<Candidate>, &Arc<Candidate>),
    server: &Shared,
    flow: &Flow,
) -> [(tokio::task::JoinHandle<()>, Work); 2] {
    let (work_a, work_b) = (Work::default(), Work::default());
    let task_a = run(a, server, &Link::default(), flow, &work_a);
    assert!(within(secs(0.1), || work_a.active()).await.is_some());
    let task_b = run(b, server, &Link::default(), flow, &work_b);
    tokio::time::sleep(secs(5.0)).await;
    [(task_a, work_a), (task_b, work_b)]
}

#[tokio::test(start_paused = true)]
async fn resigning_frees_the_lease_for_the_standby() {
    let (server, flow) = (Shared::default(), Flow::new());
    let timings = Timings::default();
    let (a, b) = (replica(1, timings), replica(2, timings));
    let [(_task_a, work_a), (_task_b, work_b)] = leader_and_standby((&a, &b), &server, &flow).await;
    a.resign().await;
    assert!(!work_a.active() && !a.leading());
    let freed = lease(&server);
    assert_eq!(freed["spec"]["holderIdentity"], "");
    assert_eq!(freed["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(hops(&flow, crate::flow::RESIGN).len(), 1);
    // No waiting for a lease duration: the standby's next try takes it.
    assert!(within(secs(4.5), || work_b.active()).await.is_some());
    let taken = lease(&server);
    assert_eq!(taken["spec"]["holderIdentity"], "host_scheduler-2");
    assert_eq!(taken["spec"]["leaseTransitions"], 1);
    assert!(
        hops(&flow, crate::flow::LEADER)[1]
            .1
            .ends_with("which no one held")
    );
    // A candidate that runs no elector resigns at once.
    replica(3, timings).resign().await;
}

#[tokio::test(start_paused = true)]
async fn a_clean_stop_gives_the_schedulers_lease_up_but_not_the_controller_managers() {
    let (server, flow) = (Shared::default(), Flow::new());
    let timings = Timings::default();
    let (a, b) = (replica(1, timings), replica(2, timings));
    let [(task_a, work_a), (_task_b, work_b)] = leader_and_standby((&a, &b), &server, &flow).await;
    // kube-scheduler stopped cleanly: it stops its work and frees the Lease before it ends.
    a.stop().await;
    task_a.abort();
    assert!(!work_a.active() && !a.leading());
    assert_eq!(lease(&server)["spec"]["holderIdentity"], "");
    let resigned = hops(&flow, crate::flow::RESIGN);
    assert_eq!(resigned.len(), 1);
    assert!(resigned[0].1.contains("as it was stopped"), "{resigned:?}");
    // The standby takes it at its next try (at most 2.2 retry periods), well within the lease
    // duration.
    assert!(within(secs(4.5), || work_b.active()).await.is_some());
    // Started again, the stopped replica competes again and stands by.
    let _again = run(&a, &server, &Link::default(), &flow, &work_a);
    tokio::time::sleep(secs(5.0)).await;
    assert!(!work_a.active() && work_b.active());
    assert_eq!(lease(&server)["spec"]["holderIdentity"], "host_scheduler-2");

    // kube-controller-manager stopped cleanly does nothing on its way out: its standby waits
    // for the Lease to expire.
    let (server, flow) = (Shared::default(), Flow::new());
    let (m, n) = (manager(1, timings), manager(2, timings));
    let [(task_m, _), (_task_n, work_n)] = leader_and_standby((&m, &n), &server, &flow).await;
    m.stop().await;
    task_m.abort();
    assert_eq!(
        lease(&server)["spec"]["holderIdentity"],
        "host_controller-manager-1"
    );
    assert!(hops(&flow, crate::flow::RESIGN).is_empty());
    // Its last renewal was at most a retry period before the stop; the standby saw it at most
    // 2.2 retry periods later and takes over at its first try a lease duration after that.
    assert!(within(secs(10.0), || work_n.active()).await.is_none());
    assert!(within(secs(15.0), || work_n.active()).await.is_some());
    // Going down, it does give its Lease up.
    n.resign().await;
    assert_eq!(lease(&server)["spec"]["holderIdentity"], "");
}

#[tokio::test(start_paused = true)]
async fn a_replica_started_again_takes_back_its_own_lease_at_once() {
    let (server, flow) = (Shared::default(), Flow::new());
    let timings = Timings::default();
    let (a, b) = (replica(1, timings), replica(2, timings));
    let (work_a, work_b) = (Work::default(), Work::default());
    let task_a = run(&a, &server, &Link::default(), &flow, &work_a);
    assert!(within(secs(0.1), || work_a.active()).await.is_some());
    let _task_b = run(&b, &server, &Link::default(), &flow, &work_b);
    let acquired = lease(&server)["spec"]["acquireTime"].clone();
    tokio::time::sleep(secs(3.0)).await;
    task_a.abort();
    tokio::time::sleep(secs(1.0)).await;
    // The same replica (the same identity) again, before its lease expires.
    let _again = run(&a, &server, &Link::default(), &flow, &work_a);
    assert!(within(secs(0.1), || work_a.active()).await.is_some());
    let held = lease(&server);
    assert_eq!(held["spec"]["holderIdentity"], "host_scheduler-1");
    assert_eq!(held["spec"]["leaseTransitions"], 0);
    assert_eq!(held["spec"]["acquireTime"], acquired);
    assert!(
        hops(&flow, crate::flow::LEADER)[1]
            .1
            .ends_with("again: the lease was still its own")
    );
    assert!(within(secs(30.0), || work_b.active()).await.is_none());
}

#[test]
fn timings_are_checked_as_upstream_checks_them() {
    let t = |lease: f64, renew: f64, retry: f64| Timings {
        lease_duration: secs(lease),
        renew_deadline: secs(renew),
        retry_period: secs(retry),
    };
    assert_eq!(Timings::default(), t(15.0, 10.0, 2.0));
    assert_eq!(Timings::default().validate(), Ok(()));
    assert_eq!(t(4.0, 3.0, 1.0).validate(), Ok(()));
    let error = |timings: Timings| timings.validate().unwrap_err().to_string();
    assert_eq!(
        error(t(10.0, 10.0, 2.0)),
        "leaderElection.leaseDuration: Invalid value: 10s: must be greater than `RenewDeadline`"
    );
    assert_eq!(
        error(t(0.0, 1.5, 0.0)),
        "[leaderElection.leaseDuration: Invalid value: 0s: must be greater than zero, \
         leaderElection.retryPeriod: Invalid value: 0s: must be greater than zero, \
         leaderElection.leaseDuration: Invalid value: 1.5s: must be greater than `RenewDeadline`]"
    );
    assert_eq!(
        error(t(15.0, 2.4, 2.0)),
        "renewDeadline must be greater than retryPeriod*JitterFactor"
    );
    assert_eq!(t(15.0, 2.5, 2.0).validate(), Ok(()));
}

#[test]
fn identities_name_their_replica() {
    let id = identity("orrery-control-plane", "scheduler-2");
    assert_eq!(id, "orrery-control-plane_scheduler-2");
    assert_eq!(replica_of(&id), "scheduler-2");
    assert_eq!(replica_of("some-host"), "some-host");
}
