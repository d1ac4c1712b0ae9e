//! The HorizontalPodAutoscaler's replica calculator for Resource metrics (`cpu`, `memory`), as
//! kube-controller-manager's `replica_calculator.go` computes it: which pods count (`groupPods`:
//! failed and deleting pods dropped, pending and not-yet-ready pods set aside, pods without a
//! sample "missing"), the usage ratio against the target (`GetResourceUtilizationRatio` for
//! Utilization targets, `GetMetricUsageRatio` for AverageValue targets), the tolerance, and the
//! rebalance that assumes missing pods at 100% (or the target) on a scale-down and at 0% on a
//! scale-up, with set-aside pods at 0% on a scale-up. Pure functions over plain data: the
//! controller lists the pods ([`PodSample::from_pod`]) and the samples of `metrics.k8s.io`, and
//! passes the clock in.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

/// The tolerance within which the usage ratio leaves the replica count alone
/// (`--horizontal-pod-autoscaler-tolerance`).
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// How long after a pod starts its CPU samples may still be those of its start-up
/// (`--horizontal-pod-autoscaler-cpu-initialization-period`).
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(5 * 60);

/// How long after a pod starts an unready pod counts as never having been ready
/// (`--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

/// The status of a pod's `Ready` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyStatus {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown` (or any other value): upstream treats it as "not False".
    Unknown,
}

/// One container's request for the resource being scaled on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRequest {
    /// The container's name.
    pub name: String,
    /// Its request in milli-units (millicores, millibytes), `None` when it requests none.
    pub request_milli: Option<i64>,
}

/// What the calculator reads of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSample {
    /// The pod's name, the key of its metric sample.
    pub name: String,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`).
    pub phase: String,
    /// The status of its `Ready` condition, `None` when it has none.
    pub ready: Option<ReadyStatus>,
    /// The `Ready` condition's `lastTransitionTime` (`None` reads as Go's zero time, as upstream
    /// reads an unset time).
    pub ready_transition: Option<Timestamp>,
    /// Whether it has a `deletionTimestamp`.
    pub deleting: bool,
    /// `status.startTime`.
    pub start_time: Option<Timestamp>,
    /// Its containers' requests for the resource: the regular containers, then the restartable
    /// (sidecar) init containers.
    pub containers: Vec<ContainerRequest>,
}

impl PodSample {
    /// What the calculator reads of `pod` when scaling on `resource`.
    pub fn from_pod(pod: &Pod, resource: &str) -> PodSample {
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        let mut containers = Vec::new();
        if let Some(spec) = pod.spec.as_ref() {
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            for c in spec.containers.iter().chain(sidecars) {
                let request = c
                    .resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get(resource))
                    .map(|q| {
                        crate::apimachinery::quantity::parse_milli(&q.0)
                            .map(|m| m.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
                            .unwrap_or(0)
                    });
                containers.push(ContainerRequest {
                    name: c.name.clone(),
                    request_milli: request,
                });
            }
        }
        PodSample {
            name: pod.metadata.name.clone().unwrap_or_default(),
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
            ready: ready.map(|c| match c.status.as_str() {
                "True" => ReadyStatus::True,
                "False" => ReadyStatus::False,
                _ => ReadyStatus::Unknown,
            }),
            ready_transition: ready
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            containers,
        }
    }
}

/// One pod's sample from the resource metrics API: the sum over its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The usage, in milli-units.
    pub value_milli: i64,
    /// When the sample was taken (the end of its window).
    pub timestamp: Timestamp,
    /// The window the sample averages over.
    pub window: Duration,
}

/// What a Utilization target recommends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtilizationRecommendation {
    /// The recommended replica count.
    pub replicas: i32,
    /// The current utilization, in percent of the requests (`currentAverageUtilization`).
    pub utilization: i32,
    /// The current average usage per pod, in milli-units (`currentAverageValue`).
    pub raw_average_milli: i64,
    /// When the metrics were taken (the first sample's timestamp, in pod-name order).
    pub timestamp: Timestamp,
}

/// What an AverageValue target recommends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AverageValueRecommendation {
    /// The recommended replica count.
    pub replicas: i32,
    /// The current average usage per pod, in milli-units (`currentAverageValue`).
    pub average_milli: i64,
    /// When the metrics were taken (the first sample's timestamp, in pod-name order).
    pub timestamp: Timestamp,
}

/// Why no recommendation could be computed, in upstream's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicasError {
    /// The metrics API returned no samples for the selector.
    #[error(
        "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
    )]
    NoMetrics {
        /// The resource scaled on.
        resource: String,
    },
    /// The selector matched no pod.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// Every sample belonged to a pod set aside.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoReadyMetrics,
    /// A container requests none of the resource, so utilization is undefined.
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        /// The resource scaled on.
        resource: String,
        /// The container without a request.
        container: String,
        /// Its pod.
        pod: String,
    },
    /// No sample belongs to a listed pod.
    #[error("no metrics returned matched known pods")]
    NoMatchingMetrics,
}

/// Go's zero `time.Time` (0001-01-01T00:00:00Z), which upstream reads for an unset time.
fn go_zero_time() -> Timestamp {
    Timestamp::from_second(-62_135_596_800).unwrap_or(Timestamp::MIN)
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// Whether `ratio` is within `tolerance` of 1 (upstream's `Tolerances.isWithin`).
fn is_within(tolerance: f64, ratio: f64) -> bool {
    (1.0 - tolerance) <= ratio && ratio <= (1.0 + tolerance)
}

/// `int32(math.Ceil(x))`, saturating instead of wrapping.
fn ceil_i32(x: f64) -> i32 {
    x.ceil() as i32
}

/// Upstream's `groupPods`: the pods counted, those set aside as unready (pending, or for CPU not
/// yet ready or still warming up), those without a sample, and those ignored (failed or being
/// deleted).
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

fn group_pods(
    pods: &[PodSample],
    metrics: &BTreeMap<String, Metric>,
    resource: &str,
    now: Timestamp,
) -> Groups {
    let mut groups = Groups {
        ready: 0,
        unready: BTreeSet::new(),
        missing: BTreeSet::new(),
        ignored: BTreeSet::new(),
    };
    for pod in pods {
        if pod.deleting || pod.phase == "Failed" {
            groups.ignored.insert(pod.name.clone());
            continue;
        }
        if pod.phase == "Pending" {
            groups.unready.insert(pod.name.clone());
            continue;
        }
        let Some(metric) = metrics.get(&pod.name) else {
            groups.missing.insert(pod.name.clone());
            continue;
        };
        if resource == "cpu" {
            let unready = match (pod.ready, pod.start_time) {
                (Some(status), Some(start)) => {
                    let transition = pod.ready_transition.unwrap_or_else(go_zero_time);
                    if plus(start, CPU_INITIALIZATION_PERIOD) > now {
                        // Still within the initialization period: the sample counts only once
                        // the pod is ready and a whole window has passed since it turned so.
                        status == ReadyStatus::False
                            || metric.timestamp < plus(transition, metric.window)
                    } else {
                        // Unready and never ready since it started.
                        status == ReadyStatus::False
                            && plus(start, INITIAL_READINESS_DELAY) > transition
                    }
                }
                _ => true,
            };
            if unready {
                groups.unready.insert(pod.name.clone());
                continue;
            }
        }
        groups.ready += 1;
    }
    groups
}

/// Upstream's `calculatePodRequestsFromContainers` for every pod: the sum of its containers'
/// requests, or the first container without one.
fn pod_requests(
    pods: &[PodSample],
    resource: &str,
) -> Result<BTreeMap<String, i64>, ReplicasError> {
    let mut requests = BTreeMap::new();
    for pod in pods {
        let mut sum: i64 = 0;
        for c in &pod.containers {
            let Some(request) = c.request_milli else {
                return Err(ReplicasError::MissingRequest {
                    resource: resource.to_owned(),
                    container: c.name.clone(),
                    pod: pod.name.clone(),
                });
            };
            sum = sum.saturating_add(request);
        }
        requests.insert(pod.name.clone(), sum);
    }
    Ok(requests)
}

/// Upstream's `GetResourceUtilizationRatio`: (usage ratio, utilization in percent, average usage).
fn utilization_ratio(
    metrics: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target_utilization: i32,
) -> Result<(f64, i32, i64), ReplicasError> {
    let (mut metrics_total, mut requests_total, mut entries) = (0i128, 0i128, 0i128);
    for (pod, value) in metrics {
        // Samples of pods that are not listed are extraneous.
        let Some(request) = requests.get(pod) else {
            continue;
        };
        metrics_total += i128::from(*value);
        requests_total += i128::from(*request);
        entries += 1;
    }
    if requests_total == 0 {
        return Err(ReplicasError::NoMatchingMetrics);
    }
    let percentage = metrics_total * 100 / requests_total;
    let utilization = percentage.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32;
    let average = (metrics_total / entries) as i64;
    Ok((
        f64::from(utilization) / f64::from(target_utilization),
        utilization,
        average,
    ))
}

/// Upstream's `GetMetricUsageRatio`: (usage ratio, average usage over every sample).
fn usage_ratio(metrics: &BTreeMap<String, i64>, target_milli: i64) -> (f64, i64) {
    let total: i128 = metrics.values().map(|v| i128::from(*v)).sum();
    let count = metrics.len().max(1) as i128;
    let average = (total / count) as i64;
    (average as f64 / target_milli as f64, average)
}

/// The samples, the pods listed, and the grouping, as both calculators start.
struct Prepared {
    values: BTreeMap<String, i64>,
    groups: Groups,
    timestamp: Timestamp,
}

fn prepare(
    resource: &str,
    metrics: &BTreeMap<String, Metric>,
    pods: &[PodSample],
    now: Timestamp,
) -> Result<Prepared, ReplicasError> {
    let Some(first) = metrics.values().next() else {
        return Err(ReplicasError::NoMetrics {
            resource: resource.to_owned(),
        });
    };
    if pods.is_empty() {
        return Err(ReplicasError::NoPods);
    }
    let groups = group_pods(pods, metrics, resource, now);
    let values: BTreeMap<String, i64> = metrics
        .iter()
        .filter(|(name, _)| !groups.ignored.contains(*name) && !groups.unready.contains(*name))
        .map(|(name, m)| (name.clone(), m.value_milli))
        .collect();
    if values.is_empty() {
        return Err(ReplicasError::NoReadyMetrics);
    }
    Ok(Prepared {
        values,
        groups,
        timestamp: first.timestamp,
    })
}

/// The replicas a Utilization target (`target_utilization` percent of the requests of
/// `resource`) recommends for pods now at `current_replicas`, as upstream's
/// `GetResourceReplicas` computes them (no container filter).
pub fn resource_replicas_utilization(
    current_replicas: i32,
    target_utilization: i32,
    resource: &str,
    metrics: &BTreeMap<String, Metric>,
    pods: &[PodSample],
    tolerance: f64,
    now: Timestamp,
) -> Result<UtilizationRecommendation, ReplicasError> {
    let Prepared {
        mut values,
        groups,
        timestamp,
    } = prepare(resource, metrics, pods, now)?;
    let requests = pod_requests(pods, resource)?;
    let (ratio, utilization, raw_average_milli) =
        utilization_ratio(&values, &requests, target_utilization)?;
    let done = |replicas| {
        Ok(UtilizationRecommendation {
            replicas,
            utilization,
            raw_average_milli,
            timestamp,
        })
    };

    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if is_within(tolerance, ratio) {
            return done(current_replicas);
        }
        return done(ceil_i32(ratio * groups.ready as f64));
    }

    if !groups.missing.is_empty() {
        if ratio < 1.0 {
            // On a scale-down, missing pods use all they request (or the target, above 100%).
            let fallback = i128::from(target_utilization.max(100));
            for pod in &groups.missing {
                let request = i128::from(requests.get(pod).copied().unwrap_or(0));
                let value = (request * fallback / 100).clamp(0, i128::from(i64::MAX)) as i64;
                values.insert(pod.clone(), value);
            }
        } else if ratio > 1.0 {
            // On a scale-up, missing pods use nothing.
            for pod in &groups.missing {
                values.insert(pod.clone(), 0);
            }
        }
    }
    if scale_up_with_unready {
        // On a scale-up, pods not yet ready use nothing.
        for pod in &groups.unready {
            values.insert(pod.clone(), 0);
        }
    }

    let (new_ratio, _, _) = utilization_ratio(&values, &requests, target_utilization)?;
    if is_within(tolerance, new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        // Too small a change, or one that would change the direction.
        return done(current_replicas);
    }
    let new_replicas = ceil_i32(new_ratio * values.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current_replicas)
        || (new_ratio > 1.0 && new_replicas < current_replicas)
    {
        return done(current_replicas);
    }
    done(new_replicas)
}

/// The replicas an AverageValue target (`target_average_milli` of `resource` per pod)
/// recommends for pods now at `current_replicas`, as upstream's `GetRawResourceReplicas`
/// (`calcPlainMetricReplicas`) computes them.
pub fn resource_replicas_average_value(
    current_replicas: i32,
    target_average_milli: i64,
    resource: &str,
    metrics: &BTreeMap<String, Metric>,
    pods: &[PodSample],
    tolerance: f64,
    now: Timestamp,
) -> Result<AverageValueRecommendation, ReplicasError> {
    let Prepared {
        mut values,
        groups,
        timestamp,
    } = prepare(resource, metrics, pods, now)?;
    let (ratio, average_milli) = usage_ratio(&values, target_average_milli);
    let done = |replicas| {
        Ok(AverageValueRecommendation {
            replicas,
            average_milli,
            timestamp,
        })
    };

    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if is_within(tolerance, ratio) {
            return done(current_replicas);
        }
        return done(ceil_i32(ratio * groups.ready as f64));
    }

    if !groups.missing.is_empty() {
        if ratio < 1.0 {
            // On a scale-down, missing pods use exactly the target.
            for pod in &groups.missing {
                values.insert(pod.clone(), target_average_milli);
            }
        } else if ratio > 1.0 {
            for pod in &groups.missing {
                values.insert(pod.clone(), 0);
            }
        }
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            values.insert(pod.clone(), 0);
        }
    }

    let (new_ratio, _) = usage_ratio(&values, target_average_milli);
    if is_within(tolerance, new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return done(current_replicas);
    }
    let new_replicas = ceil_i32(new_ratio * values.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current_replicas)
        || (new_ratio > 1.0 && new_replicas < current_replicas)
    {
        return done(current_replicas);
    }
    done(new_replicas)
}

#[cfg(test)]
mod tests {
    //! Ported from upstream's `replica_calculator_test.go`: each pod has two containers that
    //! each request the pod's listed request and each use the pod's listed level, so a pod
    //! requests and uses twice its numbers; unset start times and transition times are Go's
    //! zero time, as are the samples' timestamps, with a one-minute window. Upstream's tests
    //! use a 2-minute CPU initialization period; "cool" pods here started 10 minutes ago so that
    //! they are past the 5-minute production period.
    use super::*;

    const TARGET_NOW: i64 = 1_700_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(TARGET_NOW).unwrap()
    }
    fn hot() -> Option<Timestamp> {
        Some(now())
    }
    fn cool() -> Option<Timestamp> {
        Some(now() - jiff::SignedDuration::from_mins(10))
    }

    #[derive(Default)]
    struct Case {
        current: i32,
        /// Per-pod request in millicores (each of two containers); `None` for no requests.
        requests: Vec<i64>,
        /// Per-pod usage (each of two containers).
        levels: Vec<i64>,
        pod_names: Vec<&'static str>,
        readiness: Vec<ReadyStatus>,
        start: Vec<Option<Timestamp>>,
        phase: Vec<&'static str>,
        deleting: Vec<bool>,
        tolerance: Option<f64>,
    }

    impl Case {
        fn pods(&self) -> Vec<PodSample> {
            let count = (self.current as usize).max(self.phase.len());
            (0..count)
                .map(|i| {
                    let request = self.requests.get(i).copied();
                    PodSample {
                        name: format!("test-pod-{i}"),
                        phase: self.phase.get(i).copied().unwrap_or("Running").to_owned(),
                        ready: Some(self.readiness.get(i).copied().unwrap_or(ReadyStatus::True)),
                        ready_transition: None,
                        deleting: self.deleting.get(i).copied().unwrap_or(false),
                        start_time: self.start.get(i).copied().unwrap_or(Some(go_zero_time())),
                        containers: ["container1", "container2"]
                            .iter()
                            .map(|n| ContainerRequest {
                                name: (*n).to_owned(),
                                request_milli: request,
                            })
                            .collect(),
                    }
                })
                .collect()
        }

        fn metrics(&self) -> BTreeMap<String, Metric> {
            self.levels
                .iter()
                .enumerate()
                .map(|(i, level)| {
                    let name = self
                        .pod_names
                        .get(i)
                        .map(|n| (*n).to_owned())
                        .unwrap_or_else(|| format!("test-pod-{i}"));
                    let metric = Metric {
                        value_milli: 2 * level,
                        timestamp: go_zero_time(),
                        window: Duration::from_secs(60),
                    };
                    (name, metric)
                })
                .collect()
        }

        fn utilization(&self, target: i32) -> Result<(i32, i32, i64), ReplicasError> {
            let r = resource_replicas_utilization(
                self.current,
                target,
                "cpu",
                &self.metrics(),
                &self.pods(),
                self.tolerance.unwrap_or(DEFAULT_TOLERANCE),
                now(),
            )?;
            assert_eq!(r.timestamp, go_zero_time());
            Ok((r.replicas, r.utilization, r.raw_average_milli))
        }
    }

    use ReadyStatus::{False as F, True as T};

    /// Replicas, utilization, raw average value.
    type Expected = (i32, i32, i64);

    #[test]
    fn utilization_cases() {
        // (name, case, target, expected (replicas, utilization, raw value))
        let cases: Vec<(&str, Case, i32, Expected)> = vec![
            (
                "scale up",
                Case {
                    current: 3,
                    requests: vec![1000; 3],
                    levels: vec![300, 500, 700],
                    ..Default::default()
                },
                30,
                (5, 50, 1000),
            ),
            (
                "scale up: unready pod scales less",
                Case {
                    current: 3,
                    requests: vec![1000; 3],
                    levels: vec![300, 500, 700],
                    readiness: vec![F, T, T],
                    ..Default::default()
                },
                30,
                (4, 60, 1200),
            ),
            (
                "scale up: hot-CPU pod scales less",
                Case {
                    current: 3,
                    requests: vec![1000; 3],
                    levels: vec![300, 500, 700],
                    start: vec![hot(), cool(), cool()],
                    ..Default::default()
                },
                30,
                (4, 60, 1200),
            ),
            (
                "no scale: unready pods ignored",
                Case {
                    current: 3,
                    requests: vec![1000; 3],
                    levels: vec![400, 500, 700],
                    readiness: vec![T, F, F],
                    ..Default::default()
                },
                30,
                (3, 40, 800),
            ),
            (
                "no scale: hot-CPU pods ignored",
                Case {
                    current: 3,
                    requests: vec![1000; 3],
                    levels: vec![400, 500, 700],
                    readiness: vec![T, F, F],
                    start: vec![cool(), hot(), hot()],
                    ..Default::default()
                },
                30,
                (3, 40, 800),
            ),
            (
                "scale up: failed pods ignored",
                Case {
                    current: 2,
                    requests: vec![1000; 4],
                    levels: vec![500, 700],
                    readiness: vec![T, T, F, F],
                    phase: vec!["Running", "Running", "Failed", "Failed"],
                    ..Default::default()
                },
                30,
                (4, 60, 1200),
            ),
            (
                "scale up: pods being deleted are ignored",
                Case {
                    current: 2,
                    requests: vec![1000; 4],
                    levels: vec![500, 700],
                    readiness: vec![T, T, F, F],
                    phase: vec!["Running"; 4],
                    deleting: vec![false, false, true, true],
                    ..Default::default()
                },
                30,
                (4, 60, 1200),
            ),
            (
                "scale down",
                Case {
                    current: 5,
                    requests: vec![1000; 5],
                    levels: vec![100, 300, 500, 250, 250],
                    ..Default::default()
                },
                50,
                (3, 28, 560),
            ),
            (
                "scale down: exclude unready pods",
                Case {
                    current: 5,
                    requests: vec![1000; 5],
                    levels: vec![100, 300, 500, 250, 250],
                    readiness: vec![T, T, T, F, F],
                    ..Default::default()
                },
                50,
                (2, 30, 600),
            ),
            (
                "scale down: exclude unscheduled pods",
                Case {
                    current: 5,
                    requests: vec![1000; 5],
                    levels: vec![100],
                    readiness: vec![T, F, F, F, F],
                    phase: vec!["Running", "Pending", "Pending", "Pending", "Pending"],
                    ..Default::default()
                },
                50,
                (1, 10, 200),
            ),
            (
                "scale down: ignore hot-CPU pods",
                Case {
                    current: 5,
                    requests: vec![1000; 5],
                    levels: vec![100, 300, 500, 250, 250],
                    start: vec![cool(), cool(), cool(), hot(), hot()],
                    ..Default::default()
                },
                50,
                (2, 30, 600),
            ),
            (
                "scale down: failed pods ignored",
                Case {
                    current: 5,
                    requests: vec![1000; 7],
                    levels: vec![100, 300, 500, 250, 250],
                    readiness: vec![T, T, T, T, T, F, F],
                    phase: vec![
                        "Running", "Running", "Running", "Running", "Running", "Failed", "Failed",
                    ],
                    ..Default::default()
                },
                50,
                (3, 28, 560),
            ),
            (
                "scale down: still-running pods being deleted are ignored",
                Case {
                    current: 5,
                    requests: vec![1000; 7],
                    levels: vec![100, 300, 500, 250, 250],
                    readiness: vec![T, T, T, T, T, F, F],
                    phase: vec!["Running"; 7],
                    deleting: vec![false, false, false, false, false, true, true],
                    ..Default::default()
                },
                50,
                (3, 28, 560),
            ),
            // TestReplicaCalcResourceTolerance
            (
                "within default tolerance",
                Case {
                    current: 3,
                    requests: vec![900, 1000, 1100],
                    levels: vec![1010, 1030, 1020],
                    ..Default::default()
                },
                100,
                (3, 102, 2040),
            ),
            (
                "outside 0% tolerance",
                Case {
                    current: 3,
                    requests: vec![900, 1000, 1100],
                    levels: vec![909, 1010, 1111],
                    tolerance: Some(0.0),
                    ..Default::default()
                },
                100,
                (4, 101, 2020),
            ),
            // TestReplicaCalcResourceMissingMetrics
            (
                "superfluous metrics counted",
                Case {
                    current: 4,
                    requests: vec![1000; 4],
                    levels: vec![4000, 9500, 3000, 7000, 3200, 2000],
                    ..Default::default()
                },
                100,
                (24, 587, 11750),
            ),
            (
                "some pods missing metrics scales down",
                Case {
                    current: 4,
                    requests: vec![1000; 4],
                    levels: vec![400, 95],
                    ..Default::default()
                },
                100,
                (3, 24, 495),
            ),
            (
                "no change: metric equal to target",
                Case {
                    current: 2,
                    requests: vec![1000; 2],
                    levels: vec![1000],
                    ..Default::default()
                },
                100,
                (2, 100, 2000),
            ),
            (
                "no change: metric above target",
                Case {
                    current: 2,
                    requests: vec![1000; 2],
                    levels: vec![1900],
                    ..Default::default()
                },
                100,
                (2, 190, 3800),
            ),
            (
                "no change: metric below target",
                Case {
                    current: 2,
                    requests: vec![1000; 2],
                    levels: vec![600],
                    ..Default::default()
                },
                100,
                (2, 60, 1200),
            ),
            (
                "no change: unready pod metric missing",
                Case {
                    current: 3,
                    requests: vec![1000; 3],
                    levels: vec![100, 450],
                    readiness: vec![F, T, T],
                    ..Default::default()
                },
                50,
                (3, 45, 900),
            ),
            (
                "no change: hot-CPU pod metric missing",
                Case {
                    current: 3,
                    requests: vec![1000; 3],
                    levels: vec![100, 450],
                    start: vec![hot(), cool(), cool()],
                    ..Default::default()
                },
                50,
                (3, 45, 900),
            ),
            (
                "scale up: unready pod metric missing",
                Case {
                    current: 3,
                    requests: vec![1000; 3],
                    levels: vec![100, 2000],
                    readiness: vec![F, T, T],
                    ..Default::default()
                },
                50,
                (4, 200, 4000),
            ),
            (
                "scale down: unready pod metric missing",
                Case {
                    current: 4,
                    requests: vec![1000; 4],
                    levels: vec![100, 100, 100],
                    readiness: vec![F, T, T, T],
                    ..Default::default()
                },
                50,
                (3, 10, 200),
            ),
            (
                "scale down: target over 100",
                Case {
                    current: 4,
                    requests: vec![1000, 1000, 2000, 2000],
                    levels: vec![200, 100, 100],
                    readiness: vec![F, T, T, T],
                    ..Default::default()
                },
                300,
                (2, 6, 200),
            ),
            (
                "rolling update with maxSurge: extra pod missing metric",
                Case {
                    current: 2,
                    requests: vec![1000; 3],
                    levels: vec![100, 100],
                    phase: vec!["Running"; 3],
                    ..Default::default()
                },
                50,
                (2, 10, 200),
            ),
        ];
        for (name, case, target, expected) in cases {
            assert_eq!(case.utilization(target), Ok(expected), "{name}");
        }
    }

    #[test]
    fn utilization_errors() {
        let disjoint = Case {
            current: 1,
            requests: vec![1000],
            levels: vec![100],
            pod_names: vec!["an-older-pod-name"],
            ..Default::default()
        };
        assert_eq!(
            disjoint.utilization(100),
            Err(ReplicasError::NoMatchingMetrics)
        );
        assert_eq!(
            ReplicasError::NoMatchingMetrics.to_string(),
            "no metrics returned matched known pods"
        );

        let none = Case {
            current: 4,
            requests: vec![1000; 3],
            ..Default::default()
        };
        let err = none.utilization(100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to get metrics for resource cpu: no metrics returned from resource metrics API"
        );

        let no_request = Case {
            current: 1,
            levels: vec![200],
            ..Default::default()
        };
        let err = no_request.utilization(100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing request for cpu in container container1 of Pod test-pod-0"
        );

        let all_unready = Case {
            current: 2,
            requests: vec![1000; 2],
            levels: vec![100, 100],
            readiness: vec![F, F],
            ..Default::default()
        };
        assert_eq!(
            all_unready.utilization(50).unwrap_err().to_string(),
            "did not receive metrics for targeted pods (pods might be unready)"
        );

        let no_pods = resource_replicas_utilization(
            1,
            50,
            "cpu",
            &Case {
                levels: vec![100],
                ..Default::default()
            }
            .metrics(),
            &[],
            DEFAULT_TOLERANCE,
            now(),
        );
        assert_eq!(no_pods, Err(ReplicasError::NoPods));
    }

    /// Upstream's `TestReplicaCalcComputedToleranceAlgImplementation`.
    #[test]
    fn computed_tolerance() {
        let start_pods = 10;
        let used_total: i64 = 10 * 150;
        let requested_total: i64 = 2 * used_total;
        let requested_to_used = (requested_total / used_total) as f64;
        let per_pod = requested_total / 10;
        let requests = vec![
            per_pod + 100,
            per_pod - 100,
            per_pod + 10,
            per_pod - 10,
            per_pod + 2,
            per_pod - 2,
            per_pod + 1,
            per_pod - 1,
            per_pod,
            per_pod,
        ];
        let case = Case {
            current: start_pods,
            requests,
            levels: vec![used_total / 10; 10],
            ..Default::default()
        };
        let target = (1.0 / (requested_to_used * (1.0 - DEFAULT_TOLERANCE))).abs() + 0.01;
        let percent = (target * 100.0) as i32;
        let used_ratio = used_total as f64 / (requested_total as f64 * target);
        let final_pods = (used_ratio * f64::from(start_pods)).ceil() as i32;
        let utilization = (used_total * 100 / requested_total) as i32;
        assert_eq!(
            case.utilization(percent),
            Ok((final_pods, utilization, 2 * used_total / 10))
        );

        let target = (1.0 / (requested_to_used * (1.0 - DEFAULT_TOLERANCE))).abs() + 0.004;
        let percent = (target * 100.0) as i32;
        assert_eq!(
            case.utilization(percent),
            Ok((start_pods, utilization, 2 * used_total / 10))
        );
    }

    /// Upstream's `TestGroupPods`, for the cases about readiness and initialization.
    #[test]
    fn group_pods_readiness() {
        let minutes = |m: i64| now() - jiff::SignedDuration::from_secs(m);
        let pod = |phase: &str,
                   start: Option<Timestamp>,
                   ready: Option<(ReadyStatus, Timestamp)>| PodSample {
            name: "p".to_owned(),
            phase: phase.to_owned(),
            ready: ready.map(|r| r.0),
            ready_transition: ready.map(|r| r.1),
            deleting: false,
            start_time: start,
            containers: vec![],
        };
        let metric = |at: Timestamp, window: u64| {
            BTreeMap::from([(
                "p".to_owned(),
                Metric {
                    value_milli: 1,
                    timestamp: at,
                    window: Duration::from_secs(window),
                },
            )])
        };
        let ready_count = |p: PodSample, m: BTreeMap<String, Metric>, resource: &str| {
            let g = group_pods(&[p], &m, resource, now());
            (g.ready, g.unready.len(), g.missing.len(), g.ignored.len())
        };
        // A pod without a ready condition, for memory, counts.
        assert_eq!(
            ready_count(pod("Succeeded", None, None), metric(now(), 60), "memory"),
            (1, 0, 0, 0)
        );
        // For CPU it is unready.
        assert_eq!(
            ready_count(
                pod("Succeeded", Some(now()), None),
                metric(now(), 60),
                "cpu"
            ),
            (0, 1, 0, 0)
        );
        // Ready with a fresh sample during initialization counts.
        assert_eq!(
            ready_count(
                pod("Succeeded", Some(minutes(60)), Some((T, minutes(30)))),
                metric(now(), 30),
                "cpu"
            ),
            (1, 0, 0, 0)
        );
        // Ready without a fresh sample during initialization is unready.
        assert_eq!(
            ready_count(
                pod("Succeeded", Some(minutes(60)), Some((T, minutes(30)))),
                metric(now(), 60),
                "cpu"
            ),
            (0, 1, 0, 0)
        );
        // Unready after initialization and never ready since start: unready.
        assert_eq!(
            ready_count(
                pod(
                    "Succeeded",
                    Some(minutes(600)),
                    Some((F, minutes(600 - 10)))
                ),
                metric(go_zero_time(), 0),
                "cpu"
            ),
            (0, 1, 0, 0)
        );
        // Unready after initialization but ready once since: counts.
        assert_eq!(
            ready_count(
                pod("Succeeded", Some(minutes(600)), Some((F, minutes(540)))),
                metric(go_zero_time(), 0),
                "cpu"
            ),
            (1, 0, 0, 0)
        );
        // Pending pods are unready, failed pods ignored, pods without a sample missing.
        assert_eq!(
            ready_count(pod("Pending", None, None), metric(now(), 60), "memory"),
            (0, 1, 0, 0)
        );
        assert_eq!(
            ready_count(pod("Failed", None, None), metric(now(), 60), "memory"),
            (0, 0, 0, 1)
        );
        assert_eq!(
            ready_count(pod("Running", None, None), BTreeMap::new(), "memory"),
            (0, 0, 1, 0)
        );
    }

    /// Upstream's `TestReplicaCalcPodMetric` cases, through the AverageValue path (which
    /// `calcPlainMetricReplicas` shares); levels here are per pod, as custom metrics are.
    #[test]
    fn average_value_cases() {
        let run = |current: i32,
                   levels: &[i64],
                   target: i64,
                   readiness: Vec<ReadyStatus>,
                   start: Vec<Option<Timestamp>>,
                   phases: usize,
                   tolerance: f64| {
            let case = Case {
                current,
                requests: vec![1000; current.max(phases as i32) as usize],
                readiness,
                start,
                phase: vec!["Running"; phases],
                ..Default::default()
            };
            let metrics: BTreeMap<String, Metric> = levels
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let m = Metric {
                        value_milli: *l,
                        timestamp: go_zero_time(),
                        window: Duration::from_secs(60),
                    };
                    (format!("test-pod-{i}"), m)
                })
                .collect();
            // Custom pod metrics are not CPU: readiness only matters through pending/failed.
            resource_replicas_average_value(
                current,
                target,
                "memory",
                &metrics,
                &case.pods(),
                tolerance,
                now(),
            )
            .map(|r| (r.replicas, r.average_milli))
        };
        let d = DEFAULT_TOLERANCE;
        assert_eq!(
            run(3, &[20000, 10000, 30000], 15000, vec![], vec![], 0, d),
            Ok((4, 20000))
        );
        assert_eq!(
            run(5, &[12000; 5], 20000, vec![], vec![], 0, d),
            Ok((3, 12000))
        );
        assert_eq!(
            run(3, &[20000, 21000, 21000], 20000, vec![], vec![], 0, d),
            Ok((3, 20666))
        );
        assert_eq!(
            run(3, &[20000, 21000, 21000], 20000, vec![], vec![], 0, 0.01),
            Ok((4, 20666))
        );
        assert_eq!(
            run(5, &[20000, 19000, 21000], 20000, vec![], vec![], 0, d),
            Ok((5, 20000))
        );
        assert_eq!(
            run(2, &[10000, 10000], 17000, vec![], vec![], 3, d),
            Ok((2, 10000))
        );

        // Upstream's "unready hot-CPU pod scales less" reads pod metrics, where readiness does
        // not matter: all three pods count.
        let hot_unready = vec![T, T, F];
        let starts = vec![cool(), cool(), hot()];
        assert_eq!(
            run(3, &[50000, 10000, 30000], 15000, hot_unready, starts, 0, d),
            Ok((6, 30000))
        );
        // For CPU the unready, hot pod is set aside and counts as 0 on the scale-up.
        let case = Case {
            current: 3,
            requests: vec![1000; 3],
            readiness: vec![T, T, F],
            start: vec![cool(), cool(), hot()],
            ..Default::default()
        };
        let metrics: BTreeMap<String, Metric> = [50000, 10000, 30000]
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let m = Metric {
                    value_milli: *l,
                    timestamp: go_zero_time(),
                    window: Duration::from_secs(60),
                };
                (format!("test-pod-{i}"), m)
            })
            .collect();
        let r = resource_replicas_average_value(3, 15000, "cpu", &metrics, &case.pods(), d, now());
        assert_eq!(r.map(|r| (r.replicas, r.average_milli)), Ok((4, 30000)));
    }

    #[test]
    fn pod_sample_from_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {
                "containers": [
                    {"name": "web", "resources": {"requests": {"cpu": "250m"}}},
                    {"name": "log"},
                ],
                "initContainers": [
                    {"name": "init", "resources": {"requests": {"cpu": "1"}}},
                    {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "0.1"}}},
                ],
            },
            "status": {
                "phase": "Running",
                "startTime": "2024-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:01:00Z"}],
            },
        }))
        .unwrap();
        let sample = PodSample::from_pod(&pod, "cpu");
        assert_eq!(sample.name, "web-0");
        assert_eq!(sample.phase, "Running");
        assert!(sample.deleting);
        assert_eq!(sample.ready, Some(ReadyStatus::True));
        assert_eq!(
            sample.ready_transition,
            Some("2024-01-01T00:01:00Z".parse().unwrap())
        );
        let requests: Vec<(&str, Option<i64>)> = sample
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.request_milli))
            .collect();
        assert_eq!(
            requests,
            [("web", Some(250)), ("log", None), ("proxy", Some(100))]
        );
    }
}
