//! Whether a webhook is called for a request, as upstream's `predicates` decide
//! (`rules.Matcher`, `namespace.Matcher`, `object.Matcher`) and `ShouldCallHook` combines them:
//! a rule's operations, groups, versions, resources (`*`, `pods/status`, `*/status`, `pods/*`)
//! and scope; with `matchPolicy: Equivalent`, a rule that names another version of the same
//! stored resource (`autoscaling/v1` and `v2` HorizontalPodAutoscalers, core and
//! `events.k8s.io` Events), the webhook then seeing the object in that version; and the
//! namespace and object selectors against label sets.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::RuleWithOperations;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::Operation;
use crate::apiserver::resources::{RESOURCES, Resource, subresource_kind};

/// What a rule is matched against: the request's resource (or an equivalent), subresource,
/// operation and namespace.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target<'a> {
    pub(crate) resource: &'static Resource,
    pub(crate) subresource: &'a str,
    pub(crate) operation: Operation,
    /// The request's namespace: a Namespace's own name for requests on a Namespace.
    pub(crate) namespace: &'a str,
}

/// The resource and kind a webhook is called with (upstream's `WebhookInvocation`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Invocation {
    pub(crate) resource: &'static Resource,
    /// `(group, version, kind)` of the object the webhook sees.
    pub(crate) kind: (&'static str, &'static str, &'static str),
}

fn exact_or_wildcard(items: &[String], requested: &str) -> bool {
    items.iter().any(|i| i == "*" || i == requested)
}

/// `rules.Matcher.Matches`.
pub(crate) fn rule_matches(rule: &RuleWithOperations, target: &Target<'_>) -> bool {
    let resource = target.resource;
    let namespace_object =
        (resource.group, resource.version, resource.plural) == ("", "v1", "namespaces");
    let scope = match rule.scope.as_deref() {
        None | Some("*") => true,
        Some("Namespaced") => !namespace_object && !target.namespace.is_empty(),
        Some("Cluster") => namespace_object || target.namespace.is_empty(),
        Some(_) => false,
    };
    let operations = rule.operations.as_deref().unwrap_or_default();
    let operation = operations
        .iter()
        .any(|o| o == "*" || o == target.operation.as_str());
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    let versions = rule.api_versions.as_deref().unwrap_or_default();
    let resources = rule.resources.as_deref().unwrap_or_default();
    let resource_matches = resources.iter().any(|entry| {
        let (res, sub) = entry.split_once('/').unwrap_or((entry, ""));
        (res == "*" || res == resource.plural) && (sub == "*" || sub == target.subresource)
    });
    scope
        && operation
        && exact_or_wildcard(groups, resource.group)
        && exact_or_wildcard(versions, resource.version)
        && resource_matches
}

/// The other versions of `resource` this server serves, kept in the same storage (upstream's
/// `EquivalentResourceMapper`, keyed by the storage prefix), that have `subresource`.
pub(crate) fn equivalents(
    resource: &'static Resource,
    subresource: &str,
) -> impl Iterator<Item = &'static Resource> {
    let prefix = resource.key_prefix(None);
    let subresource = subresource.to_owned();
    RESOURCES.iter().filter(move |r| {
        *r != resource
            && r.key_prefix(None) == prefix
            && (subresource.is_empty() || r.subresources.contains(&subresource.as_str()))
    })
}

/// The first of `rules` that matches the request, else (for `Equivalent`) the first that
/// matches an equivalent resource: the resource and kind the webhook is called with.
pub(crate) fn invocation(
    rules: &[RuleWithOperations],
    equivalent: bool,
    target: &Target<'_>,
) -> Option<Invocation> {
    let kind_of = |r: &'static Resource| subresource_kind(r, target.subresource);
    if rules.iter().any(|rule| rule_matches(rule, target)) {
        return Some(Invocation {
            resource: target.resource,
            kind: kind_of(target.resource),
        });
    }
    if !equivalent {
        return None;
    }
    // Earlier rules first, as upstream honours them.
    rules.iter().find_map(|rule| {
        equivalents(target.resource, target.subresource).find_map(|other| {
            let as_other = Target {
                resource: other,
                ..*target
            };
            rule_matches(rule, &as_other).then(|| Invocation {
                resource: other,
                kind: kind_of(other),
            })
        })
    })
}

/// Whether `selector` selects `labels` (an empty selector selects everything).
pub(crate) fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    crate::apimachinery::labels::is_empty(selector)
        || crate::apimachinery::labels::matches(selector, labels)
}

/// `object.Matcher`: the new object's labels or the old one's.
pub(crate) fn object_selected(
    selector: &LabelSelector,
    object: Option<&serde_json::Value>,
    old: Option<&serde_json::Value>,
) -> bool {
    if crate::apimachinery::labels::is_empty(selector) {
        return true;
    }
    [object, old].into_iter().flatten().any(|o| {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(o["metadata"]["labels"].clone()).unwrap_or_default();
        crate::apimachinery::labels::matches(selector, &labels)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::find;
    use serde_json::json;

    fn rule(value: serde_json::Value) -> RuleWithOperations {
        serde_json::from_value(value).unwrap()
    }

    fn target<'a>(
        resource: &'static Resource,
        sub: &'a str,
        op: Operation,
        ns: &'a str,
    ) -> Target<'a> {
        Target {
            resource,
            subresource: sub,
            operation: op,
            namespace: ns,
        }
    }

    #[test]
    fn rules_match_as_upstreams() {
        let pods = find("", "v1", "pods").unwrap();
        let namespaces = find("", "v1", "namespaces").unwrap();
        let nodes = find("", "v1", "nodes").unwrap();
        let create = target(pods, "", Operation::Create, "default");
        let status = target(pods, "status", Operation::Update, "default");
        let check = |r: serde_json::Value, t: &Target<'_>| rule_matches(&rule(r), t);
        let pods_rule = json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]});
        assert!(check(pods_rule.clone(), &create));
        assert!(
            !check(pods_rule, &status),
            "pods does not cover pods/status"
        );
        assert!(check(
            json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["pods/status"]}),
            &status
        ));
        assert!(check(
            json!({"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*/status"]}),
            &status
        ));
        assert!(check(
            json!({"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/*"]}),
            &status
        ));
        assert!(
            !check(
                json!({"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*"]}),
                &status
            ),
            "* is every resource, not its subresources"
        );
        assert!(!check(
            json!({"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}),
            &create
        ));
        assert!(!check(
            json!({"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["pods"]}),
            &create
        ));
        let namespaced = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Namespaced"});
        let cluster = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"});
        assert!(check(namespaced.clone(), &create));
        assert!(!check(cluster.clone(), &create));
        // A Namespace's request carries its own name as the namespace, yet it is cluster-scoped.
        let ns = target(namespaces, "", Operation::Create, "team");
        assert!(!check(namespaced.clone(), &ns));
        assert!(check(cluster.clone(), &ns));
        let node = target(nodes, "", Operation::Create, "");
        assert!(!check(namespaced, &node));
        assert!(check(cluster, &node));
    }

    #[test]
    fn equivalent_versions_are_matched_only_with_equivalent() {
        let v2 = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        let v1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let rules = vec![rule(
            json!({"operations": ["CREATE"], "apiGroups": ["autoscaling"], "apiVersions": ["v1"], "resources": ["horizontalpodautoscalers"]}),
        )];
        let t = target(v2, "", Operation::Create, "default");
        assert!(invocation(&rules, false, &t).is_none());
        let called = invocation(&rules, true, &t).expect("called as v1");
        assert_eq!(called.resource, v1);
        assert_eq!(
            called.kind,
            ("autoscaling", "v1", "HorizontalPodAutoscaler")
        );
        let events = find("", "v1", "events").unwrap();
        assert!(equivalents(events, "").any(|r| r.group == "events.k8s.io"));
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(equivalents(pods, "").count(), 0);
        let exact = invocation(
            &[rule(json!({"operations": ["CREATE"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}))],
            true,
            &t,
        )
        .unwrap();
        assert_eq!(
            exact.resource, v2,
            "the request's own version when a rule matches it"
        );
    }

    #[test]
    fn selectors_read_labels_of_either_object() {
        let selector: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"team": "a"}})).unwrap();
        let a = json!({"metadata": {"labels": {"team": "a"}}});
        let b = json!({"metadata": {"labels": {"team": "b"}}});
        assert!(object_selected(&selector, Some(&a), None));
        assert!(!object_selected(&selector, Some(&b), None));
        assert!(
            object_selected(&selector, Some(&b), Some(&a)),
            "the old object's labels count"
        );
        assert!(object_selected(&selector, None, Some(&a)));
        assert!(object_selected(&LabelSelector::default(), None, None));
        let labels = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
        assert!(selects(&selector, &labels));
        assert!(!selects(&selector, &BTreeMap::new()));
        let expression: LabelSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}),
        )
        .unwrap();
        assert!(selects(&expression, &BTreeMap::new()));
    }
}
