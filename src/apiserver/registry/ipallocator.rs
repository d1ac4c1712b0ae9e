//! Services' cluster IPs and node ports, reserved in the store as kube-apiserver reserves them,
//! so two Services never share one however many are created at once:
//!
//! - a cluster IP is an `IPAddress` object (`networking.k8s.io/v1`, named by the address,
//!   its `parentRef` the Service), as v1.33's allocator keeps them (`MultiCIDRServiceAllocator`,
//!   `pkg/registry/core/service/ipallocator`): creating the object *is* the reservation, and
//!   the store's create refuses a name that exists;
//! - node ports are a bitmap in one `RangeAllocation` at `/registry/ranges/servicenodeports`
//!   (`portallocator`), changed by compare-and-swap on its revision.
//!
//! What a Service gets is released when it is deleted, or when an update drops it; a create or
//! update that fails after reserving releases what it reserved.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use base64::Engine;
use serde_json::{Value, json};

use crate::apiserver::errors::{ApiError, Cause, from_store};
use crate::apiserver::resources;
use crate::apiserver::{ApiServer, decode};

/// The service network, kube-apiserver's default `--service-cluster-ip-range`.
pub(crate) const SERVICE_NETWORK: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 0);
/// Its prefix length.
const SERVICE_PREFIX: u32 = 12;
/// Its size (a /12).
const SERVICE_ADDRESSES: u32 = 1 << (32 - SERVICE_PREFIX);
/// The low band kept for Services that ask for their address (KEP-3070: `min(max(16, size/16),
/// 256)` addresses): `kubernetes` at 10.96.0.1 and `kube-dns` at 10.96.0.10 live there, and
/// dynamic allocation takes it only when the rest is full.
const STATIC_BAND: u32 = 256;
/// kube-apiserver's default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;
/// Where the node port bitmap is kept.
const NODE_PORT_KEY: &str = "/registry/ranges/servicenodeports";
/// How often a reservation that lost a race is tried again before giving up.
const ATTEMPTS: usize = 1000;

/// What one create or update reserved, to release if its write fails.
#[derive(Debug, Default)]
pub(crate) struct Reserved {
    ip: Option<Ipv4Addr>,
    ports: BTreeSet<i64>,
}

impl Reserved {
    fn is_empty(&self) -> bool {
        self.ip.is_none() && self.ports.is_empty()
    }
}

/// A random offset into the dynamic band.
fn rand_offset() -> u32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The order addresses are tried in, as kube-apiserver's allocator tries them: from a random
/// place in the upper (dynamic) band, on (wrapping), then the static band. The network and
/// broadcast addresses are never given.
fn candidates(random: u32) -> impl Iterator<Item = Ipv4Addr> {
    let dynamic = SERVICE_ADDRESSES - 1 - STATIC_BAND;
    let start = random % dynamic;
    (0..dynamic)
        .map(move |i| STATIC_BAND + (start + i) % dynamic)
        .chain(1..STATIC_BAND)
        .map(|n| Ipv4Addr::from(u32::from(SERVICE_NETWORK) + n))
}

fn in_range(ip: Ipv4Addr) -> bool {
    let offset = u32::from(ip).wrapping_sub(u32::from(SERVICE_NETWORK));
    offset > 0 && offset < SERVICE_ADDRESSES - 1
}

fn range_words() -> String {
    format!("{SERVICE_NETWORK}/{SERVICE_PREFIX}")
}

fn service_invalid(service: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        group: String::new(),
        kind: "Service".into(),
        name: service["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .into(),
        causes,
    }
}

/// Whether a Service of this type has a cluster IP.
fn wants_ip(service: &Value) -> bool {
    service["spec"]["type"].as_str() != Some("ExternalName")
        && service["spec"]["clusterIP"].as_str() != Some("None")
}

fn wants_node_ports(service: &Value) -> bool {
    matches!(
        service["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    )
}

fn ip_of(service: &Value) -> Option<Ipv4Addr> {
    service["spec"]["clusterIP"].as_str()?.parse().ok()
}

fn node_ports_of(service: &Value) -> BTreeSet<i64> {
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_i64())
        .filter(|n| *n != 0)
        .collect()
}

/// Gives `service` (new, or `old` updated to it) what its type needs and it lacks: a cluster
/// IP (the one it asks for, or a free one) and node ports, reserved in the store. A dry run
/// checks and picks, but reserves nothing.
pub(crate) async fn allocate(
    api: &ApiServer,
    service: &mut Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<Reserved, ApiError> {
    let mut reserved = Reserved::default();
    let result = allocate_into(api, service, old, dry_run, &mut reserved).await;
    if result.is_err() && !dry_run {
        release_reserved(api, &reserved).await;
    }
    result.map(|()| reserved)
}

async fn allocate_into(
    api: &ApiServer,
    service: &mut Value,
    old: Option<&Value>,
    dry_run: bool,
    reserved: &mut Reserved,
) -> Result<(), ApiError> {
    let old_ip = old.and_then(ip_of);
    if wants_ip(service) {
        match service["spec"]["clusterIP"]
            .as_str()
            .filter(|s| !s.is_empty())
        {
            Some(given) => {
                let ip: Ipv4Addr = given.parse().map_err(|_| {
                    service_invalid(
                        service,
                        vec![Cause::invalid(
                            "spec.clusterIPs[0]",
                            &json!(given),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )],
                    )
                })?;
                if Some(ip) != old_ip {
                    reserve_ip(api, service, ip, dry_run).await?;
                    if !dry_run {
                        reserved.ip = Some(ip);
                    }
                }
                service["spec"]["clusterIPs"] = json!([given]);
            }
            None => {
                let ip = match old_ip {
                    Some(ip) => ip,
                    None => {
                        let ip = reserve_free_ip(api, service, dry_run).await?;
                        if !dry_run {
                            reserved.ip = Some(ip);
                        }
                        ip
                    }
                };
                service["spec"]["clusterIP"] = json!(ip.to_string());
                service["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
        }
    } else if let Some(ip) = service["spec"]["clusterIP"].as_str().map(str::to_owned) {
        service["spec"]["clusterIPs"] = json!([ip]);
    }
    if wants_node_ports(service) {
        let held = old.map(node_ports_of).unwrap_or_default();
        reserve_node_ports(api, service, &held, dry_run, reserved).await?;
        if service["spec"]["externalTrafficPolicy"].is_null() {
            service["spec"]["externalTrafficPolicy"] = json!("Cluster");
        }
    }
    Ok(())
}

fn ip_addresses() -> &'static resources::Resource {
    resources::find("networking.k8s.io", "v1", "ipaddresses").expect("served")
}

/// The IPAddress object that reserves `ip` for `service`.
fn ip_address(service: &Value, ip: Ipv4Addr) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": ip.to_string(),
            "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv4",
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
            },
        },
        "spec": {"parentRef": {
            "group": "",
            "resource": "services",
            "namespace": service["metadata"]["namespace"],
            "name": service["metadata"]["name"],
        }},
    })
}

/// Creates `ip`'s IPAddress, or says (in upstream's words) why it cannot be had.
async fn reserve_ip(
    api: &ApiServer,
    service: &Value,
    ip: Ipv4Addr,
    dry_run: bool,
) -> Result<(), ApiError> {
    let refuse = |why: String| {
        service_invalid(
            service,
            vec![Cause::invalid_shown(
                "spec.clusterIPs",
                &format!("[]string{{\"{ip}\"}}"),
                format!("failed to allocate IP {ip}: {why}"),
            )],
        )
    };
    if !in_range(ip) {
        return Err(refuse(format!(
            "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
            range_words()
        )));
    }
    match try_reserve_ip(api, service, ip, dry_run).await? {
        true => Ok(()),
        false => Err(refuse("provided IP is already allocated".into())),
    }
}

/// Creates `ip`'s IPAddress: `false` when another Service (or anyone) holds it.
async fn try_reserve_ip(
    api: &ApiServer,
    service: &Value,
    ip: Ipv4Addr,
    dry_run: bool,
) -> Result<bool, ApiError> {
    let resource = ip_addresses();
    if dry_run {
        let existing = api
            .store()
            .get(&resource.key(None, &ip.to_string()))
            .await
            .map_err(|e| from_store(e, "ipaddresses.networking.k8s.io", &ip.to_string()))?;
        return Ok(existing.is_none());
    }
    let mut warnings = Vec::new();
    // Boxed: a Service's create creates its IPAddress through the same path.
    match Box::pin(super::store::create_object(
        api,
        resource,
        None,
        ip_address(service, ip),
        Some("ipallocator"),
        false,
        &mut warnings,
    ))
    .await
    {
        Ok(_) => Ok(true),
        Err(ApiError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn reserve_free_ip(
    api: &ApiServer,
    service: &Value,
    dry_run: bool,
) -> Result<Ipv4Addr, ApiError> {
    for ip in candidates(rand_offset()).take(ATTEMPTS) {
        if try_reserve_ip(api, service, ip, dry_run).await? {
            return Ok(ip);
        }
    }
    Err(ApiError::Internal(format!(
        "failed to allocate a serviceIP: range is full ({})",
        range_words()
    )))
}

/// The node port bitmap as stored: one bit per port of [`NODE_PORTS`], port 30000 first.
struct Bitmap(Vec<u8>);

impl Bitmap {
    fn empty() -> Self {
        let ports = (NODE_PORTS.end() - NODE_PORTS.start() + 1) as usize;
        Bitmap(vec![0; ports.div_ceil(8)])
    }

    fn index(port: i64) -> usize {
        (port - NODE_PORTS.start()) as usize
    }

    fn has(&self, port: i64) -> bool {
        let i = Self::index(port);
        self.0[i / 8] & (1 << (i % 8)) != 0
    }

    fn set(&mut self, port: i64, on: bool) {
        let i = Self::index(port);
        if on {
            self.0[i / 8] |= 1 << (i % 8);
        } else {
            self.0[i / 8] &= !(1 << (i % 8));
        }
    }

    fn from_stored(object: &Value) -> Self {
        let mut bitmap = Self::empty();
        if let Some(data) = object["data"]
            .as_str()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        {
            for (i, byte) in data.into_iter().enumerate().take(bitmap.0.len()) {
                bitmap.0[i] = byte;
            }
        }
        bitmap
    }

    fn to_stored(&self) -> Value {
        json!({
            "kind": "RangeAllocation",
            "apiVersion": "v1",
            "metadata": {"name": "servicenodeports"},
            "range": format!("{}-{}", NODE_PORTS.start(), NODE_PORTS.end()),
            "data": base64::engine::general_purpose::STANDARD.encode(&self.0),
        })
    }
}

/// The stored bitmap and its revision; when none is stored yet (a cluster from before this
/// allocator), one made from the node ports the stored Services hold.
async fn read_bitmap(api: &ApiServer) -> Result<(Bitmap, Option<u64>), ApiError> {
    let store_error = |e| from_store(e, "services", "");
    if let Some(kv) = api.store().get(NODE_PORT_KEY).await.map_err(store_error)? {
        return Ok((Bitmap::from_stored(&decode(&kv)?), Some(kv.mod_revision)));
    }
    let services = resources::find("", "v1", "services").expect("served");
    let stored = api
        .store()
        .range(&crate::store::RangeRequest::prefix(
            services.key_prefix(None),
        ))
        .await
        .map_err(store_error)?;
    let mut bitmap = Bitmap::empty();
    for kv in &stored.kvs {
        for port in node_ports_of(&decode(kv)?) {
            if NODE_PORTS.contains(&port) {
                bitmap.set(port, true);
            }
        }
    }
    Ok((bitmap, None))
}

/// Writes `bitmap` if the stored one is still at `revision`: `false` if it moved on.
async fn write_bitmap(
    api: &ApiServer,
    bitmap: &Bitmap,
    revision: Option<u64>,
) -> Result<bool, ApiError> {
    let value = crate::apiserver::encode(bitmap.to_stored());
    let written = match revision {
        Some(revision) => api.store().update(NODE_PORT_KEY, value, revision).await,
        None => api.store().create(NODE_PORT_KEY, value).await,
    };
    match written {
        Ok(_) => Ok(true),
        Err(crate::store::Error::Conflict { .. } | crate::store::Error::AlreadyExists { .. }) => {
            Ok(false)
        }
        Err(e) => Err(from_store(e, "services", "")),
    }
}

/// Reserves every node port `service` asks for or lacks (those in `held` are its own already),
/// as one compare-and-swap of the bitmap.
async fn reserve_node_ports(
    api: &ApiServer,
    service: &mut Value,
    held: &BTreeSet<i64>,
    dry_run: bool,
    reserved: &mut Reserved,
) -> Result<(), ApiError> {
    for _ in 0..ATTEMPTS {
        let (mut bitmap, revision) = read_bitmap(api).await?;
        let mut taken = BTreeSet::new();
        let mut causes = Vec::new();
        let ports = service["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut assigned = Vec::with_capacity(ports.len());
        // Asked-for ports first, so a free pick never takes one a later port asks for.
        for (i, port) in ports.iter().enumerate() {
            let Some(asked) = port["nodePort"].as_i64().filter(|n| *n != 0) else {
                assigned.push(None);
                continue;
            };
            assigned.push(Some(asked));
            if held.contains(&asked) || taken.contains(&asked) {
                continue;
            }
            let field = format!("spec.ports[{i}].nodePort");
            if !NODE_PORTS.contains(&asked) {
                causes.push(Cause::invalid(
                    &field,
                    &json!(asked),
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORTS.start(),
                        NODE_PORTS.end()
                    ),
                ));
            } else if bitmap.has(asked) {
                causes.push(Cause::invalid(
                    &field,
                    &json!(asked),
                    "provided port is already allocated",
                ));
            } else {
                bitmap.set(asked, true);
                taken.insert(asked);
            }
        }
        if !causes.is_empty() {
            return Err(service_invalid(service, causes));
        }
        for slot in assigned.iter_mut().filter(|s| s.is_none()) {
            let free = NODE_PORTS
                .clone()
                .find(|p| !bitmap.has(*p))
                .ok_or_else(|| {
                    ApiError::Internal("failed to allocate a nodePort: range is full".into())
                })?;
            bitmap.set(free, true);
            taken.insert(free);
            *slot = Some(free);
        }
        if !taken.is_empty() && !dry_run && !write_bitmap(api, &bitmap, revision).await? {
            continue;
        }
        if let Some(list) = service["spec"]["ports"].as_array_mut() {
            for (port, node_port) in list.iter_mut().zip(assigned) {
                port["nodePort"] = json!(node_port);
            }
        }
        if !dry_run {
            reserved.ports.extend(taken);
        }
        return Ok(());
    }
    Err(ApiError::modified("services", ""))
}

/// Clears node ports from the bitmap.
async fn release_node_ports(api: &ApiServer, ports: &BTreeSet<i64>) {
    let ports: Vec<i64> = ports
        .iter()
        .copied()
        .filter(|p| NODE_PORTS.contains(p))
        .collect();
    if ports.is_empty() {
        return;
    }
    for _ in 0..ATTEMPTS {
        let Ok((mut bitmap, revision)) = read_bitmap(api).await else {
            return;
        };
        for port in &ports {
            bitmap.set(*port, false);
        }
        match write_bitmap(api, &bitmap, revision).await {
            Ok(false) => continue,
            Ok(true) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot release node ports {ports:?}");
                return;
            }
        }
    }
}

/// Deletes `ip`'s IPAddress if it is `service`'s.
async fn release_ip(api: &ApiServer, ip: Ipv4Addr, service: Option<&Value>) {
    let resource = ip_addresses();
    let name = ip.to_string();
    if let Some(service) = service {
        let Ok(Some(kv)) = api.store().get(&resource.key(None, &name)).await else {
            return;
        };
        let Ok(object) = decode(&kv) else { return };
        let parent = &object["spec"]["parentRef"];
        if parent["namespace"] != service["metadata"]["namespace"]
            || parent["name"] != service["metadata"]["name"]
        {
            return;
        }
    }
    let options = json!({});
    let params = Default::default();
    match Box::pin(super::store::delete_object(
        api, resource, None, &name, &options, &params,
    ))
    .await
    {
        Ok(_) | Err(ApiError::NotFound { .. }) => {}
        Err(error) => tracing::warn!(%error, "cannot release {name}"),
    }
}

/// Releases what a failed create or update reserved.
pub(crate) async fn release_reserved(api: &ApiServer, reserved: &Reserved) {
    if reserved.is_empty() {
        return;
    }
    if let Some(ip) = reserved.ip {
        release_ip(api, ip, None).await;
    }
    release_node_ports(api, &reserved.ports).await;
}

/// Releases what a deleted Service held.
pub(crate) async fn release(api: &ApiServer, service: &Value) {
    if let Some(ip) = ip_of(service) {
        release_ip(api, ip, Some(service)).await;
    }
    release_node_ports(api, &node_ports_of(service)).await;
}

/// After an update of `old` to `new` was written: releases what `new` no longer holds.
pub(crate) async fn release_dropped(api: &ApiServer, new: &Value, old: &Value) {
    if let Some(ip) = ip_of(old)
        && (ip_of(new) != Some(ip) || !wants_ip(new))
    {
        release_ip(api, ip, Some(old)).await;
    }
    let kept = if wants_node_ports(new) {
        node_ports_of(new)
    } else {
        BTreeSet::new()
    };
    let dropped: BTreeSet<i64> = node_ports_of(old).difference(&kept).copied().collect();
    release_node_ports(api, &dropped).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_cluster_ips_stay_out_of_the_static_band_until_the_rest_is_full() {
        let first = |random, used: &dyn Fn(u32) -> bool| {
            candidates(random)
                .find(|ip| !used(u32::from(*ip) - u32::from(SERVICE_NETWORK)))
                .map(|ip| ip.to_string())
        };
        let none = |_| false;
        assert_eq!(first(0, &none).as_deref(), Some("10.96.1.0"));
        let top = SERVICE_ADDRESSES - 2 - STATIC_BAND;
        assert_eq!(first(top, &none).as_deref(), Some("10.111.255.254"));
        // Wraps round past the top, never onto the broadcast address.
        let top_used = |n| n == SERVICE_ADDRESSES - 2;
        assert_eq!(first(top, &top_used).as_deref(), Some("10.96.1.0"));
        // With the dynamic band full, the static band is used, from its first address.
        let dynamic_full = |n| n >= STATIC_BAND;
        assert_eq!(first(7, &dynamic_full).as_deref(), Some("10.96.0.1"));
        let all = |_| true;
        assert_eq!(first(7, &all), None);
    }

    #[test]
    fn the_node_port_bitmap_round_trips_through_its_stored_form() {
        let mut bitmap = Bitmap::empty();
        bitmap.set(30000, true);
        bitmap.set(32767, true);
        bitmap.set(31000, true);
        bitmap.set(31000, false);
        let stored = bitmap.to_stored();
        assert_eq!(stored["range"], "30000-32767");
        let back = Bitmap::from_stored(&stored);
        assert!(back.has(30000) && back.has(32767) && !back.has(31000) && !back.has(30001));
    }
}
