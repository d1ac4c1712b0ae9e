//! A pod's `/etc/resolv.conf` by its `dnsPolicy`, as upstream's kubelet
//! (`pkg/kubelet/network/dns/dns.go`): `ClusterFirst` points at the cluster DNS with the
//! cluster's search domains before the host's and `ndots:5`; `Default` is the host's resolver
//! configuration; `None` is only the pod's `dnsConfig`; `ClusterFirstWithHostNet` is
//! ClusterFirst even for a hostNetwork pod (which otherwise gets Default). The pod's
//! `dnsConfig` is then merged in, and the result cut to the resolver's limits.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

/// The most nameservers a resolv.conf takes (glibc's `MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;
/// The most search domains (upstream's `MaxDNSSearchPaths`).
pub const MAX_SEARCHES: usize = 32;
/// The most characters of the search line (upstream's `MaxDNSSearchListChars`).
pub const MAX_SEARCH_CHARS: usize = 2048;

/// A resolver configuration: a resolv.conf's nameservers, search domains and options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// `nameserver` lines.
    pub servers: Vec<String>,
    /// The `search` line.
    pub searches: Vec<String>,
    /// The `options` line (`ndots:5`, `edns0`).
    pub options: Vec<String>,
}

impl DnsConfig {
    /// The host's configuration from its resolv.conf text. Loopback nameservers are left out:
    /// a pod in its own network namespace cannot reach the host's loopback.
    pub fn from_resolv_conf(text: &str) -> DnsConfig {
        let mut config = DnsConfig::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(server) = words.next()
                        && server.parse::<IpAddr>().is_ok_and(|ip| !ip.is_loopback())
                    {
                        config.servers.push(server.to_owned());
                    }
                }
                // The last search (or domain) line wins, as in glibc.
                Some("search" | "domain") => {
                    config.searches = words.map(str::to_owned).collect();
                }
                Some("options") => config.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        config
    }

    /// The host's configuration, from `/etc/resolv.conf`.
    pub fn host() -> DnsConfig {
        DnsConfig::from_resolv_conf(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        )
    }
}

fn omit_duplicates(list: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    list.into_iter()
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

/// Options merged by name, `dnsConfig`'s winning; in order of first appearance.
fn merge_options(existing: Vec<String>, pod: &[(String, Option<String>)]) -> Vec<String> {
    let mut merged: Vec<(String, Option<String>)> = Vec::new();
    let mut set =
        |name: &str, value: Option<String>| match merged.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => merged.push((name.to_owned(), value)),
        };
    for option in existing {
        match option.split_once(':') {
            Some((name, value)) => set(name, Some(value.to_owned())),
            None => set(&option, None),
        }
    }
    for (name, value) in pod {
        set(name, value.clone().filter(|v| !v.is_empty()));
    }
    merged
        .into_iter()
        .map(|(name, value)| match value {
            Some(value) => format!("{name}:{value}"),
            None => name,
        })
        .collect()
}

/// Cuts a configuration to what a resolver takes: 3 nameservers, 32 search domains in at most
/// 2048 characters.
fn fit_limits(mut config: DnsConfig) -> DnsConfig {
    config.servers.truncate(MAX_NAMESERVERS);
    config.searches.truncate(MAX_SEARCHES);
    while config.searches.join(" ").len() > MAX_SEARCH_CHARS {
        config.searches.pop();
    }
    config
}

/// The resolver configuration for `pod`, given the cluster DNS servers and domain and the
/// host's own configuration.
pub fn pod_dns(
    pod: &Pod,
    cluster_dns: &[IpAddr],
    cluster_domain: &str,
    host: &DnsConfig,
) -> DnsConfig {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    enum Kind {
        Cluster,
        Host,
        None,
    }
    let mut kind = match policy {
        "None" => Kind::None,
        "Default" => Kind::Host,
        "ClusterFirstWithHostNet" => Kind::Cluster,
        // ClusterFirst (and anything unknown, which validation rejects): the host's for a
        // hostNetwork pod.
        _ if host_network => Kind::Host,
        _ => Kind::Cluster,
    };
    // No cluster DNS configured: ClusterFirst falls back to Default, as upstream's kubelet.
    if matches!(kind, Kind::Cluster) && cluster_dns.is_empty() {
        kind = Kind::Host;
    }
    let mut config = match kind {
        Kind::None => DnsConfig::default(),
        Kind::Host => host.clone(),
        Kind::Cluster => {
            let domain = cluster_domain.trim_matches('.');
            let mut searches = Vec::new();
            if !domain.is_empty() {
                searches.push(format!("{namespace}.svc.{domain}"));
                searches.push(format!("svc.{domain}"));
                searches.push(domain.to_owned());
            }
            searches.extend(host.searches.iter().cloned());
            DnsConfig {
                servers: cluster_dns.iter().map(IpAddr::to_string).collect(),
                searches: omit_duplicates(searches),
                options: vec!["ndots:5".into()],
            }
        }
    };
    if let Some(pod_config) = spec.and_then(|s| s.dns_config.as_ref()) {
        config
            .servers
            .extend(pod_config.nameservers.iter().flatten().cloned());
        config.servers = omit_duplicates(config.servers);
        config
            .searches
            .extend(pod_config.searches.iter().flatten().cloned());
        config.searches = omit_duplicates(config.searches);
        let options: Vec<(String, Option<String>)> = pod_config
            .options
            .iter()
            .flatten()
            .filter_map(|o| Some((o.name.clone()?, o.value.clone())))
            .collect();
        config.options = merge_options(config.options, &options);
    }
    fit_limits(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn policies_as_upstream_kubelet() {
        let host = DnsConfig::from_resolv_conf(
            "nameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch corp.example\noptions edns0 ndots:2 # x\n",
        );
        assert_eq!(
            host,
            DnsConfig {
                servers: strings(&["192.0.2.1"]),
                searches: strings(&["corp.example"]),
                options: strings(&["edns0", "ndots:2"]),
            }
        );
        let dns: Vec<IpAddr> = vec!["10.96.0.10".parse().unwrap()];
        let cluster_first = DnsConfig {
            servers: strings(&["10.96.0.10"]),
            searches: strings(&[
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
            ]),
            options: strings(&["ndots:5"]),
        };
        let check = |spec: serde_json::Value, want: &DnsConfig| {
            assert_eq!(
                &pod_dns(&pod(spec.clone()), &dns, "cluster.local", &host),
                want,
                "{spec}"
            );
        };
        let c = serde_json::json!({"containers": []});
        check(c.clone(), &cluster_first);
        check(
            serde_json::json!({"containers": [], "dnsPolicy": "ClusterFirst"}),
            &cluster_first,
        );
        check(
            serde_json::json!({"containers": [], "dnsPolicy": "Default"}),
            &host,
        );
        check(
            serde_json::json!({"containers": [], "hostNetwork": true}),
            &host,
        );
        check(
            serde_json::json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
            &cluster_first,
        );
        check(
            serde_json::json!({"containers": [], "dnsPolicy": "ClusterFirstWithHostNet"}),
            &cluster_first,
        );
        check(
            serde_json::json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.1.1.1"], "searches": ["a.example", "a.example"],
                "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]}}),
            &DnsConfig {
                servers: strings(&["1.1.1.1"]),
                searches: strings(&["a.example"]),
                options: strings(&["ndots:1", "edns0"]),
            },
        );
        // Merged: nameservers at most 3, searches deduplicated, options by name.
        check(
            serde_json::json!({"containers": [], "dnsConfig": {
                "nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9"],
                "searches": ["svc.cluster.local", "b.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "single-request-reopen"}]}}),
            &DnsConfig {
                servers: strings(&["10.96.0.10", "1.1.1.1", "8.8.8.8"]),
                searches: strings(&[
                    "shop.svc.cluster.local",
                    "svc.cluster.local",
                    "cluster.local",
                    "corp.example",
                    "b.example",
                ]),
                options: strings(&["ndots:2", "single-request-reopen"]),
            },
        );
        // No cluster DNS: ClusterFirst is Default.
        assert_eq!(pod_dns(&pod(c.clone()), &[], "cluster.local", &host), host);
        // Another cluster domain.
        assert_eq!(
            pod_dns(&pod(c), &dns, "k8s.test", &DnsConfig::default()).searches,
            strings(&["shop.svc.k8s.test", "svc.k8s.test", "k8s.test"])
        );
    }

    #[test]
    fn searches_fit_the_limits() {
        let searches: Vec<String> = (0..40)
            .map(|i| format!("d{i}.{}", "x".repeat(80)))
            .collect();
        let spec = serde_json::json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {"searches": searches}});
        let config = pod_dns(&pod(spec), &[], "cluster.local", &DnsConfig::default());
        assert!(config.searches.len() <= MAX_SEARCHES);
        assert!(config.searches.join(" ").len() <= MAX_SEARCH_CHARS);
        assert_eq!(config.searches[0], searches[0]);
    }
}
