//! The HorizontalPodAutoscaler controller (`horizontal-pod-autoscaler`), kube-controller-manager's
//! `pkg/controller/podautoscaler`: every sync period (`--horizontal-pod-autoscaler-sync-period`,
//! 15 s) and on every change of an HPA, it reads the target's scale subresource (so
//! Deployments, ReplicaSets, StatefulSets and ReplicationControllers alike), the pods its
//! selector matches and their metrics from `metrics.k8s.io` (all through the API server, as an
//! ordinary client), computes each Resource metric's proposal ([`replicas`]: cpu or memory,
//! Utilization of the requests or AverageValue, the 10% tolerance, unready and missing pods as
//! upstream treats them), takes the largest, normalizes it ([`normalize`]: the stabilization windows and the scale-up and
//! scale-down policies of `behavior`, or the legacy rules without one; then min and max),
//! and, when the count changes, writes the scale (a gated hop, so step mode holds it) and
//! records `SuccessfulRescale` (`New size: 4; reason: cpu resource utilization (percentage of
//! request) above target`). The status carries the current and desired replicas, each metric's
//! current value and the `AbleToScale`, `ScalingActive` and `ScalingLimited` conditions, with
//! upstream's reasons and messages. Pods, Object and External metrics are not served here (no
//! custom or external metrics API): such a metric fails as upstream fails it without one.
//! Every decision is a `DECIDE` hop with its numbers for the dashboard.

pub mod normalize;
pub mod replicas;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};

use super::workqueue::{Action, Key, WorkQueue, run_workers};
use super::{Context, api_message};
use crate::apimachinery::quantity;
use crate::flow::{Flow, FlowEvent};
use crate::informers::Informer;
use normalize::{Recommendation, ScaleEvent};
use replicas::{Metric, PodSample};

/// The controller's name.
pub const NAME: &str = "horizontal-pod-autoscaler";
const COMPONENT: &str = "controller/horizontal-pod-autoscaler";
/// How often every HPA is looked at, unless `--horizontal-pod-autoscaler-sync-period` says
/// otherwise.
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(15);

/// What went wrong syncing an HPA.
#[derive(Debug, thiserror::Error)]
pub enum HpaError {
    /// The status could not be written.
    #[error("failed to update status for {hpa}: {source}")]
    Status {
        /// `namespace/name`.
        hpa: String,
        /// The API's answer.
        source: kube::Error,
    },
}

/// What the controller remembers of one HPA between syncs (upstream keeps the same in memory).
#[derive(Default)]
struct Memory {
    recommendations: Vec<Recommendation>,
    scale_up_events: Vec<ScaleEvent>,
    scale_down_events: Vec<ScaleEvent>,
}

/// One metric's proposal.
struct Proposal {
    replicas: i32,
    /// `cpu resource utilization (percentage of request)`.
    name: String,
    status: MetricStatus,
    /// Current and target, for the hop (`45%` / `50%`).
    current: String,
    target: String,
}

/// The controller.
pub struct HorizontalController {
    client: kube::Client,
    flow: Flow,
    hpas: Informer<HorizontalPodAutoscaler>,
    queue: WorkQueue,
    sync_period: Duration,
    memory: Mutex<HashMap<Key, Memory>>,
}

/// The API resource of a scale target, from its `apiVersion` and `kind`.
fn target_resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match (group, kind) {
        ("apps", "Deployment") => "deployments",
        ("apps", "ReplicaSet") => "replicasets",
        ("apps", "StatefulSet") => "statefulsets",
        ("", "ReplicationController") => "replicationcontrollers",
        _ => return None,
    };
    Some(ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    })
}

fn condition(
    kind: &str,
    ok: bool,
    reason: &str,
    message: String,
) -> HorizontalPodAutoscalerCondition {
    HorizontalPodAutoscalerCondition {
        type_: kind.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_transition_time: Some(Time(Timestamp::now())),
    }
}

/// Sets a condition, keeping its transition time when its status does not change (upstream's
/// `setConditionInList`).
fn set_condition(
    list: &mut Vec<HorizontalPodAutoscalerCondition>,
    new: HorizontalPodAutoscalerCondition,
) {
    match list.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            let keep = old.status == new.status;
            let time = old.last_transition_time.clone();
            *old = new;
            if keep {
                old.last_transition_time = time;
            }
        }
        None => list.push(new),
    }
}

/// A pod's summed container usage of `resource`, in thousandths.
fn pod_usage(item: &Value, resource: &str) -> Option<i64> {
    item["containers"]
        .as_array()?
        .iter()
        .map(|c| {
            let text = c["usage"][resource].as_str()?;
            Some(quantity::parse_milli(text).ok()? as i64)
        })
        .sum()
}

/// Go's `time.ParseDuration` of a metrics `window` (`15s`, `1m0.5s`, `500ms`).
fn window(text: &str) -> Duration {
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_digit() || n == '.' {
                break;
            }
            unit.push(n);
            chars.next();
        }
        let value: f64 = number.parse().unwrap_or(0.0);
        number.clear();
        total += value
            * match unit.as_str() {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 1e-3,
                "us" | "µs" => 1e-6,
                "ns" => 1e-9,
                _ => 0.0,
            };
    }
    Duration::from_secs_f64(total.max(0.0))
}

impl HorizontalController {
    /// A controller on the shared informers of `ctx`, looking at every HPA each `sync_period`.
    pub fn new(ctx: &Context, sync_period: Duration) -> Self {
        let hpas = ctx.factory.informer::<HorizontalPodAutoscaler>();
        let queue = WorkQueue::new(NAME);
        {
            let queue = queue.clone();
            hpas.add_handler(move |change| queue.add(Key::of(change.object())));
        }
        let client = ctx.client(NAME);
        HorizontalController {
            client,
            flow: ctx.flow.clone(),
            hpas,
            queue,
            sync_period,
            memory: Mutex::default(),
        }
    }

    /// Waits for the cache, then syncs HPAs as their keys come up.
    pub async fn run(self) {
        self.hpas.synced().await;
        let this = Arc::new(self);
        run_workers(this.queue.clone(), 2, |key| {
            let this = this.clone();
            async move { this.sync(key).await }
        })
        .await;
    }

    async fn event(&self, hpa: &HorizontalPodAutoscaler, kind: &str, reason: &str, message: &str) {
        super::event(&self.client, hpa, NAME, kind, reason, message).await;
    }

    fn hop(&self, verb: &str, hpa: &HorizontalPodAutoscaler, detail: String) -> FlowEvent {
        let mut e = FlowEvent::new(COMPONENT, "apiserver", verb)
            .object(
                "HorizontalPodAutoscaler",
                hpa.metadata.namespace.as_deref().unwrap_or_default(),
                hpa.metadata.name.as_deref().unwrap_or_default(),
            )
            .detail(detail);
        e.uid = hpa.metadata.uid.clone().unwrap_or_default();
        e
    }

    /// The pods' metrics of `resource` from the metrics API, by pod name.
    async fn pod_metrics(
        &self,
        namespace: &str,
        selector: &str,
        resource: &str,
    ) -> Result<BTreeMap<String, Metric>, String> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("labelSelector", selector)
            .finish();
        let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods?{query}");
        let request = http::Request::get(&path)
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let list: Value = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"))?;
        let mut out = BTreeMap::new();
        for item in list["items"].as_array().into_iter().flatten() {
            let (Some(name), Some(value)) =
                (item["metadata"]["name"].as_str(), pod_usage(item, resource))
            else {
                continue;
            };
            let timestamp = item["timestamp"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(Timestamp::now);
            out.insert(
                name.to_owned(),
                Metric {
                    value_milli: value,
                    timestamp,
                    window: window(item["window"].as_str().unwrap_or_default()),
                },
            );
        }
        Ok(out)
    }

    /// One Resource metric's proposal (upstream's `computeStatusForResourceMetric`).
    async fn resource_proposal(
        &self,
        namespace: &str,
        selector: &str,
        current: i32,
        spec: &MetricSpec,
        pods: &[Pod],
    ) -> Result<Proposal, String> {
        let source = spec
            .resource
            .as_ref()
            .ok_or("metric has no resource source")?;
        let resource = source.name.as_str();
        let metrics = self
            .pod_metrics(namespace, selector, resource)
            .await
            .map_err(|e| format!("failed to get {resource} utilization: {e}"))?;
        let samples: Vec<PodSample> = pods
            .iter()
            .map(|p| PodSample::from_pod(p, resource))
            .collect();
        let now = Timestamp::now();
        let target = &source.target;
        if let Some(utilization) = target.average_utilization {
            let r = replicas::resource_replicas_utilization(
                current,
                utilization,
                resource,
                &metrics,
                &samples,
                replicas::DEFAULT_TOLERANCE,
                now,
            )
            .map_err(|e| format!("failed to get {resource} utilization: {e}"))?;
            let average = quantity_of(resource, r.raw_average_milli);
            return Ok(Proposal {
                replicas: r.replicas,
                name: format!("{resource} resource utilization (percentage of request)"),
                status: MetricStatus {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricStatus {
                        name: resource.to_owned(),
                        current: MetricValueStatus {
                            average_utilization: Some(r.utilization),
                            average_value: Some(average),
                            value: None,
                        },
                    }),
                    ..MetricStatus::default()
                },
                current: format!("{}%", r.utilization),
                target: format!("{utilization}%"),
            });
        }
        let Some(average) = &target.average_value else {
            return Err(
                "invalid resource metric source: neither a utilization target nor a value target was set"
                    .to_owned(),
            );
        };
        let target_milli = quantity::parse_milli(&average.0).map_err(|e| e.to_string())? as i64;
        let r = replicas::resource_replicas_average_value(
            current,
            target_milli,
            resource,
            &metrics,
            &samples,
            replicas::DEFAULT_TOLERANCE,
            now,
        )
        .map_err(|e| format!("failed to get {resource} usage: {e}"))?;
        let value = quantity_of(resource, r.average_milli);
        Ok(Proposal {
            replicas: r.replicas,
            name: format!("{resource} resource"),
            status: MetricStatus {
                type_: "Resource".into(),
                resource: Some(ResourceMetricStatus {
                    name: resource.to_owned(),
                    current: MetricValueStatus {
                        average_utilization: None,
                        average_value: Some(value.clone()),
                        value: None,
                    },
                }),
                ..MetricStatus::default()
            },
            current: value.0,
            target: average.0.clone(),
        })
    }

    async fn sync(&self, key: Key) -> Result<Action, HpaError> {
        let Some(hpa) = self.hpas.get(&key.namespace, &key.name) else {
            self.memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            return Ok(Action::Done);
        };
        let hpa = (*hpa).clone();
        self.reconcile(&key, hpa).await?;
        Ok(Action::RequeueAfter(self.sync_period))
    }

    async fn reconcile(&self, key: &Key, hpa: HorizontalPodAutoscaler) -> Result<(), HpaError> {
        let namespace = key.namespace.clone();
        let spec = hpa.spec.clone().unwrap_or_default();
        let mut status = hpa.status.clone().unwrap_or_default();
        let mut conditions = status.conditions.take().unwrap_or_default();
        let target = &spec.scale_target_ref;
        let reference = format!("{}/{}", target.kind, target.name);
        let api_version = target.api_version.clone().unwrap_or_default();
        let Some(resource) = target_resource(&api_version, &target.kind) else {
            let message = format!(
                "the HPA controller was unable to get the target's current scale: no matches for kind \"{}\" in group \"{}\"",
                target.kind,
                api_version.split_once('/').map_or("", |(g, _)| g)
            );
            return self
                .failed_get_scale(&hpa, status, conditions, message)
                .await;
        };
        let scales: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &namespace, &resource);
        let scale = match scales.get_scale(&target.name).await {
            Ok(scale) => scale,
            Err(error) => {
                let message = format!(
                    "the HPA controller was unable to get the target's current scale: {}",
                    api_message(&error)
                );
                return self
                    .failed_get_scale(&hpa, status, conditions, message)
                    .await;
            }
        };
        set_condition(
            &mut conditions,
            condition(
                "AbleToScale",
                true,
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale".into(),
            ),
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        status.current_replicas = Some(scale.status.as_ref().map_or(0, |s| s.replicas));
        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;
        let now = Timestamp::now();

        let mut desired;
        let mut rescale_reason = String::new();
        let mut decided = json!({"current": current, "min": min, "max": max});
        if current == 0 && min != 0 {
            desired = 0;
            set_condition(
                &mut conditions,
                condition(
                    "ScalingActive",
                    false,
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero".into(),
                ),
            );
        } else if current > max {
            rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
            desired = max;
        } else if current < min {
            rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
            desired = min;
        } else {
            let metric_specs = spec.metrics.clone().unwrap_or_default();
            let pods = if selector.is_empty() {
                Vec::new()
            } else {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                api.list(&ListParams::default().labels(&selector))
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
            };
            let mut best: Option<Proposal> = None;
            let mut statuses = Vec::new();
            let mut errors = Vec::new();
            for metric in &metric_specs {
                let proposal = match metric.type_.as_str() {
                    "Resource" if !selector.is_empty() => {
                        self.resource_proposal(&namespace, &selector, current, metric, &pods)
                            .await
                    }
                    "Resource" => Err("selector is required".to_owned()),
                    other => Err(format!(
                        "unable to get metric {other}: no custom or external metrics API is served"
                    )),
                };
                match proposal {
                    Ok(p) => {
                        statuses.push(p.status.clone());
                        if best.as_ref().is_none_or(|b| p.replicas > b.replicas) {
                            best = Some(p);
                        }
                    }
                    Err(e) => {
                        statuses.push(MetricStatus {
                            type_: String::new(),
                            ..MetricStatus::default()
                        });
                        errors.push(e);
                    }
                }
            }
            if let Some(first) = errors.first() {
                let reason = if metric_specs.first().is_some_and(|m| m.type_ == "Resource") {
                    "FailedGetResourceMetric"
                } else {
                    "FailedGetExternalMetric"
                };
                self.event(&hpa, "Warning", reason, first).await;
                let invalid = format!(
                    "invalid metrics ({} invalid out of {}), first error is: {first}",
                    errors.len(),
                    metric_specs.len()
                );
                self.event(&hpa, "Warning", "FailedComputeMetricsReplicas", &invalid)
                    .await;
                if best.is_none() {
                    set_condition(
                        &mut conditions,
                        condition(
                            "ScalingActive",
                            false,
                            reason,
                            format!("the HPA was unable to compute the replica count: {first}"),
                        ),
                    );
                    status.current_metrics = None;
                    status.conditions = Some(conditions);
                    let detail = format!("{reference}: no decision ({first})");
                    self.flow.emit(
                        self.hop("DECIDE", &hpa, detail)
                            .data(json!({"current": current, "desired": current, "error": first})),
                    );
                    return self.write_status(&hpa, status).await;
                }
            }
            let best = best.expect("a proposal, or returned above");
            status.current_metrics = Some(
                statuses
                    .into_iter()
                    .filter(|s| !s.type_.is_empty())
                    .collect(),
            );
            set_condition(
                &mut conditions,
                condition(
                    "ScalingActive",
                    true,
                    "ValidMetricFound",
                    format!(
                        "the HPA was able to successfully calculate a replica count from {}",
                        best.name
                    ),
                ),
            );
            let proposed = best.replicas;
            let normalized = {
                let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
                let memory = memory.entry(key.clone()).or_default();
                match &spec.behavior {
                    None => normalize::normalize_legacy(
                        &mut memory.recommendations,
                        now,
                        normalize::DOWNSCALE_STABILIZATION_WINDOW,
                        proposed,
                        current,
                        min,
                        max,
                    ),
                    Some(behavior) => normalize::normalize_with_behavior(
                        &mut memory.recommendations,
                        &memory.scale_up_events,
                        &memory.scale_down_events,
                        now,
                        behavior,
                        proposed,
                        current,
                        min,
                        max,
                    ),
                }
            };
            set_condition(
                &mut conditions,
                condition(
                    "AbleToScale",
                    true,
                    normalized.able_reason,
                    normalized.able_message.into(),
                ),
            );
            set_condition(
                &mut conditions,
                condition(
                    "ScalingLimited",
                    normalized.limited,
                    normalized.reason,
                    normalized.message.into(),
                ),
            );
            desired = normalized.replicas;
            if desired > current {
                rescale_reason = format!("{} above target", best.name);
            } else if desired < current {
                rescale_reason = "All metrics below target".into();
            }
            decided = json!({
                "current": current,
                "proposed": proposed,
                "desired": desired,
                "min": min,
                "max": max,
                "metric": best.name,
                "value": best.current,
                "target": best.target,
                "limit": normalized.reason,
            });
            let why = if desired == current {
                "no change".to_owned()
            } else {
                rescale_reason.clone()
            };
            let detail = format!(
                "{reference}: {} {}/{} → {proposed} proposed, {desired} desired ({why}; {})",
                best.name, best.current, best.target, normalized.reason
            );
            self.flow
                .emit(self.hop("DECIDE", &hpa, detail).data(decided.clone()));
        }
        if desired != current && !(current == 0 && min != 0) {
            // The scale is this controller's decision: in step mode it waits here.
            self.flow
                .gate_emit(
                    self.hop(
                        "SCALE",
                        &hpa,
                        format!("{reference} {current} → {desired}: {rescale_reason}"),
                    )
                    .data(decided),
                )
                .await;
            let new_scale = kube::core::subresource::Scale {
                metadata: scale.metadata.clone(),
                spec: Some(kube::core::subresource::ScaleSpec {
                    replicas: Some(desired),
                }),
                status: None,
            };
            match scales
                .replace_scale(&target.name, &PostParams::default(), &new_scale)
                .await
            {
                Ok(_) => {
                    let message = format!("New size: {desired}; reason: {rescale_reason}");
                    self.event(&hpa, "Normal", "SuccessfulRescale", &message)
                        .await;
                    set_condition(
                        &mut conditions,
                        condition(
                            "AbleToScale",
                            true,
                            "SucceededRescale",
                            format!(
                                "the HPA controller was able to update the target scale to {desired}"
                            ),
                        ),
                    );
                    let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
                    let memory = memory.entry(key.clone()).or_default();
                    normalize::store_scale_event(
                        spec.behavior.as_ref(),
                        &mut memory.scale_up_events,
                        &mut memory.scale_down_events,
                        current,
                        desired,
                        now,
                    );
                    status.last_scale_time = Some(Time(now));
                }
                Err(error) => {
                    let message = format!(
                        "New size: {desired}; reason: {rescale_reason}; error: {}",
                        api_message(&error)
                    );
                    self.event(&hpa, "Warning", "FailedRescale", &message).await;
                    set_condition(
                        &mut conditions,
                        condition(
                            "AbleToScale",
                            false,
                            "FailedUpdateScale",
                            format!(
                                "the HPA controller was unable to update the target scale: {}",
                                api_message(&error)
                            ),
                        ),
                    );
                    desired = current;
                }
            }
        }
        status.desired_replicas = desired;
        status.observed_generation = hpa.metadata.generation;
        status.conditions = Some(conditions);
        self.write_status(&hpa, status).await
    }

    /// The target's scale could not be read: an event, `AbleToScale` false, and the status.
    async fn failed_get_scale(
        &self,
        hpa: &HorizontalPodAutoscaler,
        mut status: HorizontalPodAutoscalerStatus,
        mut conditions: Vec<HorizontalPodAutoscalerCondition>,
        message: String,
    ) -> Result<(), HpaError> {
        self.event(hpa, "Warning", "FailedGetScale", &message).await;
        set_condition(
            &mut conditions,
            condition("AbleToScale", false, "FailedGetScale", message),
        );
        status.conditions = Some(conditions);
        self.write_status(hpa, status).await
    }

    async fn write_status(
        &self,
        hpa: &HorizontalPodAutoscaler,
        status: HorizontalPodAutoscalerStatus,
    ) -> Result<(), HpaError> {
        if hpa.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = hpa.clone();
        updated.status = Some(status);
        let namespace = hpa.metadata.namespace.as_deref().unwrap_or_default();
        let name = hpa.metadata.name.as_deref().unwrap_or_default();
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), namespace);
        api.replace_status(name, &PostParams::default(), &updated)
            .await
            .map(|_| ())
            .map_err(|source| HpaError::Status {
                hpa: format!("{namespace}/{name}"),
                source,
            })
    }
}

/// A usage in thousandths as a quantity: CPU in millicores (`250m`), anything else in whole
/// units (bytes).
fn quantity_of(
    resource: &str,
    milli: i64,
) -> k8s_openapi::apimachinery::pkg::api::resource::Quantity {
    let text = if resource == "cpu" {
        format!("{milli}m")
    } else {
        (milli / 1000).to_string()
    };
    k8s_openapi::apimachinery::pkg::api::resource::Quantity(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_as_go_durations() {
        assert_eq!(window("15s"), Duration::from_secs(15));
        assert_eq!(window("1m0.5s"), Duration::from_millis(60_500));
        assert_eq!(window("500ms"), Duration::from_millis(500));
        assert_eq!(window(""), Duration::ZERO);
    }

    #[test]
    fn a_pods_usage_is_its_containers_summed() {
        let item = json!({"containers": [
            {"name": "a", "usage": {"cpu": "250m", "memory": "64Mi"}},
            {"name": "b", "usage": {"cpu": "150000000n", "memory": "1Ki"}},
        ]});
        assert_eq!(pod_usage(&item, "cpu"), Some(400));
        assert_eq!(pod_usage(&item, "memory"), Some(((64 << 20) + 1024) * 1000));
        assert_eq!(pod_usage(&json!({"containers": []}), "cpu"), Some(0));
    }

    #[test]
    fn conditions_keep_their_time_while_their_status_holds() {
        let mut list = Vec::new();
        let mut first = condition("AbleToScale", true, "A", "a".into());
        first.last_transition_time = Some(Time(Timestamp::UNIX_EPOCH));
        set_condition(&mut list, first);
        set_condition(&mut list, condition("AbleToScale", true, "B", "b".into()));
        assert_eq!(list[0].reason.as_deref(), Some("B"));
        assert_eq!(
            list[0].last_transition_time,
            Some(Time(Timestamp::UNIX_EPOCH))
        );
        set_condition(&mut list, condition("AbleToScale", false, "C", "c".into()));
        assert_ne!(
            list[0].last_transition_time,
            Some(Time(Timestamp::UNIX_EPOCH))
        );
        assert_eq!(
            target_resource("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(
            target_resource("v1", "ReplicationController")
                .unwrap()
                .plural,
            "replicationcontrollers"
        );
        assert!(target_resource("apps/v1", "DaemonSet").is_none());
    }
}
