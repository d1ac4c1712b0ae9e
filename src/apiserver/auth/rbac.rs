//! RBAC: the Roles, ClusterRoles and their bindings, followed from the store as kube-apiserver's
//! RBAC authorizer follows them through informers, and the decisions made from them
//! (`rbac.go`'s `Authorize`, `RulesFor`), with the escalation check that keeps a user from
//! granting what they do not hold (`ConfirmNoEscalation`, `BindingAuthorized`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
use serde_json::Value;

use super::{Attributes, Decision, UserInfo};
use crate::apiserver::follow;
use crate::store::{KeyValue, Revision, Store};

/// The four kinds, in the order their followers and revisions are kept.
const KINDS: [(&str, &str); 4] = [
    ("ClusterRole", "/registry/clusterroles/"),
    ("Role", "/registry/roles/"),
    ("ClusterRoleBinding", "/registry/clusterrolebindings/"),
    ("RoleBinding", "/registry/rolebindings/"),
];

/// A binding's role and subjects.
#[derive(Clone, Debug)]
pub(crate) struct Binding {
    name: String,
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

/// Every RBAC object, at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    cluster_roles: BTreeMap<String, Vec<PolicyRule>>,
    /// namespace → name → rules.
    roles: BTreeMap<String, BTreeMap<String, Vec<PolicyRule>>>,
    cluster_bindings: BTreeMap<String, Binding>,
    /// namespace → name → binding.
    bindings: BTreeMap<String, BTreeMap<String, Binding>>,
}

fn rules_of(object: &Value) -> Vec<PolicyRule> {
    serde_json::from_value(object["rules"].clone()).unwrap_or_default()
}

fn binding_of(object: &Value) -> Option<Binding> {
    Some(Binding {
        name: object["metadata"]["name"].as_str()?.to_owned(),
        namespace: object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        role_ref: serde_json::from_value(object["roleRef"].clone()).ok()?,
        subjects: serde_json::from_value(object["subjects"].clone()).unwrap_or_default(),
    })
}

/// `(namespace, name)` from a store key under `prefix`.
fn key_parts<'a>(prefix: &str, key: &'a str, namespaced: bool) -> Option<(&'a str, &'a str)> {
    let rest = key.strip_prefix(prefix)?;
    if namespaced {
        rest.split_once('/')
    } else {
        Some(("", rest))
    }
}

impl Snapshot {
    fn apply(&mut self, kind: usize, key: &str, object: Option<&Value>) {
        let (_, prefix) = KINDS[kind];
        let Some((namespace, name)) = key_parts(prefix, key, kind % 2 == 1) else {
            return;
        };
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        match (kind, object) {
            (0, Some(o)) => {
                self.cluster_roles.insert(name, rules_of(o));
            }
            (0, None) => {
                self.cluster_roles.remove(&name);
            }
            (1, Some(o)) => {
                self.roles
                    .entry(namespace)
                    .or_default()
                    .insert(name, rules_of(o));
            }
            (1, None) => {
                if let Some(roles) = self.roles.get_mut(&namespace) {
                    roles.remove(&name);
                }
            }
            (2, Some(o)) => match binding_of(o) {
                Some(b) => {
                    self.cluster_bindings.insert(name, b);
                }
                None => {
                    self.cluster_bindings.remove(&name);
                }
            },
            (2, None) => {
                self.cluster_bindings.remove(&name);
            }
            (_, Some(o)) => {
                let bindings = self.bindings.entry(namespace).or_default();
                match binding_of(o) {
                    Some(b) => bindings.insert(name, b),
                    None => bindings.remove(&name),
                };
            }
            (_, None) => {
                if let Some(bindings) = self.bindings.get_mut(&namespace) {
                    bindings.remove(&name);
                }
            }
        }
    }

    fn clear(&mut self, kind: usize) {
        match kind {
            0 => self.cluster_roles.clear(),
            1 => self.roles.clear(),
            2 => self.cluster_bindings.clear(),
            _ => self.bindings.clear(),
        }
    }

    /// A ClusterRole's rules.
    pub(crate) fn cluster_role_rules(&self, name: &str) -> Option<&Vec<PolicyRule>> {
        self.cluster_roles.get(name)
    }

    /// The rules a binding's roleRef names, or why there are none.
    fn role_rules(&self, binding: &Binding) -> Result<&Vec<PolicyRule>, String> {
        let r = &binding.role_ref;
        let found = match r.kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&r.name),
            "Role" => self
                .roles
                .get(&binding.namespace)
                .and_then(|roles| roles.get(&r.name)),
            _ => None,
        };
        found.ok_or_else(|| {
            format!(
                "{}.rbac.authorization.k8s.io {:?} not found",
                r.kind.to_ascii_lowercase(),
                r.name
            )
        })
    }

    /// Every binding that applies in `namespace` (the cluster's first), with the subject
    /// that names `user`.
    fn visit<'a>(
        &'a self,
        user: &UserInfo,
        namespace: &str,
        mut visitor: impl FnMut(&'a Binding, &'a Subject, Result<&'a Vec<PolicyRule>, String>) -> bool,
    ) {
        let namespaced = (!namespace.is_empty())
            .then(|| self.bindings.get(namespace))
            .flatten();
        let all = self
            .cluster_bindings
            .values()
            .chain(namespaced.into_iter().flat_map(|b| b.values()));
        for binding in all {
            let Some(subject) = binding
                .subjects
                .iter()
                .find(|s| applies_to(user, s, &binding.namespace))
            else {
                continue;
            };
            if !visitor(binding, subject, self.role_rules(binding)) {
                return;
            }
        }
    }

    /// RBAC's decision on `attributes` for `user`.
    pub(crate) fn authorize(&self, user: &UserInfo, attributes: &Attributes) -> Decision {
        let mut errors = Vec::new();
        let mut allowed = None;
        self.visit(
            user,
            &attributes.namespace,
            |binding, subject, rules| match rules {
                Ok(rules) if rules.iter().any(|r| rule_allows(attributes, r)) => {
                    allowed = Some(describe(binding, subject));
                    false
                }
                Ok(_) => true,
                Err(e) => {
                    errors.push(e);
                    true
                }
            },
        );
        match allowed {
            Some(source) => Decision {
                allowed: true,
                reason: format!("RBAC: allowed by {source}"),
            },
            None => Decision {
                allowed: false,
                reason: match errors.len() {
                    0 => String::new(),
                    1 => format!("RBAC: {}", errors[0]),
                    _ => format!("RBAC: [{}]", errors.join(", ")),
                },
            },
        }
    }

    /// Every rule that applies to `user` in `namespace` (`RulesFor`), and whether some binding
    /// named a role that does not exist.
    pub(crate) fn rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> (Vec<PolicyRule>, Vec<String>) {
        let mut all = Vec::new();
        let mut errors = Vec::new();
        self.visit(user, namespace, |_, _, rules| {
            match rules {
                Ok(rules) => all.extend(rules.iter().cloned()),
                Err(e) => errors.push(e),
            }
            true
        });
        // A kubelet's rules come from the Node authorizer, not from a binding.
        if user.node().is_some()
            && let Some(rules) = self.cluster_roles.get(super::policy::NODE_ROLE)
        {
            all.extend(rules.iter().cloned());
        }
        (all, errors)
    }
}

/// `appliesToUser`.
fn applies_to(user: &UserInfo, subject: &Subject, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let namespace = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            user.name == format!("system:serviceaccount:{namespace}:{}", subject.name)
        }
        _ => false,
    }
}

/// `ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`, as upstream's describers say it.
fn describe(binding: &Binding, subject: &Subject) -> String {
    let subject = match subject.kind.as_str() {
        "ServiceAccount" => {
            let namespace = subject.namespace.as_deref().unwrap_or(&binding.namespace);
            format!(
                "ServiceAccount {:?}",
                format!("{}/{namespace}", subject.name)
            )
        }
        kind => format!("{kind} {:?}", subject.name),
    };
    let r = &binding.role_ref;
    if binding.namespace.is_empty() {
        format!(
            "ClusterRoleBinding {:?} of {} {:?} to {subject}",
            binding.name, r.kind, r.name
        )
    } else {
        format!(
            "RoleBinding {:?} of {} {:?} to {subject}",
            format!("{}/{}", binding.name, binding.namespace),
            r.kind,
            r.name
        )
    }
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == value)
}

/// `RuleAllows`.
pub(crate) fn rule_allows(a: &Attributes, rule: &PolicyRule) -> bool {
    if !(has(&rule.verbs, "*") || has(&rule.verbs, &a.verb)) {
        return false;
    }
    if !a.resource_request {
        return rule
            .non_resource_urls
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|url| url_matches(url, &a.path));
    }
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    if !(has(groups, "*") || has(groups, &a.api_group)) {
        return false;
    }
    let combined = a.combined_resource();
    let resources = rule.resources.as_deref().unwrap_or_default();
    let resource_ok = resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => has(names, &a.name),
    }
}

fn url_matches(rule: &str, path: &str) -> bool {
    rule == "*"
        || rule == path
        || rule
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// The RBAC objects as the followers last saw them: a snapshot replaced whole on each change,
/// so a decision reads one consistent set.
#[derive(Default)]
pub(crate) struct Objects(Mutex<Arc<Snapshot>>);

impl Objects {
    fn publish(&self, change: impl FnOnce(&mut Snapshot)) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (**guard).clone();
        change(&mut next);
        *guard = Arc::new(next);
    }
}

impl follow::State for Objects {
    const KINDS: &'static [(&'static str, &'static str)] = &KINDS;

    fn reset(&self, kind: usize, objects: &[KeyValue]) {
        self.publish(|s| {
            s.clear(kind);
            for kv in objects {
                if let Ok(object) = serde_json::from_slice::<Value>(&kv.value) {
                    s.apply(kind, &kv.key, Some(&object));
                }
            }
        });
    }

    fn apply(&self, kind: usize, key: &str, value: Option<&[u8]>) {
        let object: Option<Value> = value.and_then(|v| serde_json::from_slice(v).ok());
        self.publish(|s| s.apply(kind, key, object.as_ref()));
    }
}

/// The RBAC objects, followed from the store from the first request that needs them.
#[derive(Default)]
pub(crate) struct Rbac {
    following: follow::Following<Objects>,
}

impl Rbac {
    /// The RBAC objects as they are now.
    pub(crate) async fn rules(&self, store: &Arc<dyn Store>) -> Arc<Snapshot> {
        let objects = self.following.state(store).await;
        objects.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Notes that this API server wrote an object of `kind` at `revision`.
    pub(crate) fn written(&self, kind: &str, revision: Revision) {
        self.following.written(kind, revision);
    }

    /// Waits (a few seconds at most) until every RBAC write this server made is in the rules,
    /// so the next request is decided by them: what a client that just made a RoleBinding
    /// expects.
    pub(crate) async fn caught_up(&self, store: &Arc<dyn Store>) {
        self.following
            .caught_up(store, Duration::from_secs(5))
            .await;
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// The escalation check of a write to a Role, ClusterRole or binding by the request's user
/// (none: the API server's own write): a user may only grant what they hold, unless allowed to
/// `escalate` (roles) or `bind` (bindings) it, as `ConfirmNoEscalation` and
/// `BindingAuthorized` decide. `old`: the object an update replaces (an update that changes no
/// rules, roleRef or subjects is not checked).
pub(crate) async fn confirm_no_escalation(
    api: &crate::apiserver::ApiServer,
    resource: &crate::apiserver::resources::Resource,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), crate::apiserver::errors::ApiError> {
    use crate::apiserver::errors::{ApiError, Cause};
    if resource.group != "rbac.authorization.k8s.io" {
        return Ok(());
    }
    let Some(user) = super::requester() else {
        return Ok(());
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
    let binding = resource.kind.ends_with("Binding");
    if let Some(old) = old {
        if binding && old["roleRef"] != object["roleRef"] {
            return Err(ApiError::Invalid {
                group: resource.group.into(),
                kind: resource.kind.into(),
                name: name.into(),
                causes: vec![Cause::invalid_shown(
                    "roleRef",
                    &go_role_ref(&object["roleRef"]),
                    "cannot change roleRef",
                )],
            });
        }
        let fields: &[&str] = if binding {
            &["roleRef", "subjects"]
        } else {
            &["rules", "aggregationRule"]
        };
        if fields.iter().all(|f| old[*f] == object[*f]) {
            return Ok(());
        }
    }
    if user.in_group(super::MASTERS) {
        return Ok(());
    }
    let store = api.store_arc();
    let authorizer = api.authorizer();
    let forbidden = |detail: String| ApiError::Forbidden {
        resource: resource.qualified(),
        name: name.into(),
        detail,
    };
    let wanted: Vec<PolicyRule> = if binding {
        let role_ref: RoleRef =
            serde_json::from_value(object["roleRef"].clone()).unwrap_or_default();
        let plural = if role_ref.kind == "ClusterRole" {
            "clusterroles"
        } else {
            "roles"
        };
        let bind =
            Attributes::resource("bind", resource.group, plural, namespace).named(&role_ref.name);
        if authorizer.authorize(&store, &user, &bind).await.allowed {
            return Ok(());
        }
        let snapshot = authorizer.rbac().rules(&store).await;
        let probe = Binding {
            name: name.into(),
            namespace: namespace.into(),
            role_ref,
            subjects: vec![],
        };
        match snapshot.role_rules(&probe) {
            Ok(rules) => rules.clone(),
            Err(e) => return Err(forbidden(e)),
        }
    } else {
        let escalate = Attributes::resource("escalate", resource.group, resource.plural, namespace)
            .named(name);
        if authorizer.authorize(&store, &user, &escalate).await.allowed {
            return Ok(());
        }
        if object.get("aggregationRule").is_some_and(|a| !a.is_null()) {
            return Err(forbidden(
                "must have cluster-admin privileges to use an aggregationRule".into(),
            ));
        }
        serde_json::from_value(object["rules"].clone()).unwrap_or_default()
    };
    let snapshot = authorizer.rbac().rules(&store).await;
    let (owner, _) = snapshot.rules_for(&user, namespace);
    let missing = uncovered(&owner, &wanted);
    if missing.is_empty() {
        return Ok(());
    }
    let missing: Vec<String> = missing.iter().map(compact).collect();
    Err(forbidden(format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_quoted(&user.groups),
        missing.join("\n")
    )))
}

/// A roleRef as Go's `%#v` prints the struct in a field error.
fn go_role_ref(role_ref: &Value) -> String {
    let s = |f: &str| role_ref[f].as_str().unwrap_or_default().to_owned();
    format!(
        "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
        s("apiGroup"),
        s("kind"),
        s("name")
    )
}

/// One verb on one group, resource and name: what [`covers`] compares.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let one = |v: &str| Some(vec![v.to_owned()]);
    for verb in &rule.verbs {
        for group in rule.api_groups.as_deref().unwrap_or_default() {
            for resource in rule.resources.as_deref().unwrap_or_default() {
                let names = rule.resource_names.as_deref().unwrap_or_default();
                if names.is_empty() {
                    out.push(PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: one(group),
                        resources: one(resource),
                        ..PolicyRule::default()
                    });
                }
                for name in names {
                    out.push(PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: one(group),
                        resources: one(resource),
                        resource_names: one(name),
                        ..PolicyRule::default()
                    });
                }
            }
        }
        for url in rule.non_resource_urls.as_deref().unwrap_or_default() {
            out.push(PolicyRule {
                verbs: vec![verb.clone()],
                non_resource_urls: one(url),
                ..PolicyRule::default()
            });
        }
    }
    out
}

/// Whether `owner` covers one broken-down rule (`ruleCovers`).
fn rule_covers(owner: &PolicyRule, servant: &PolicyRule) -> bool {
    let all =
        |set: &[String], covered: &[String]| has(set, "*") || covered.iter().all(|c| has(set, c));
    let opt = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    if !all(&owner.verbs, &servant.verbs) {
        return false;
    }
    let owner_urls = opt(&owner.non_resource_urls);
    let servant_urls = opt(&servant.non_resource_urls);
    if !servant_urls
        .iter()
        .all(|u| owner_urls.iter().any(|o| url_matches(o, u)))
    {
        return false;
    }
    if !all(&opt(&owner.api_groups), &opt(&servant.api_groups)) {
        return false;
    }
    let owner_resources = opt(&owner.resources);
    let resources_ok = has(&owner_resources, "*")
        || opt(&servant.resources).iter().all(|r| {
            has(&owner_resources, r)
                || r.split_once('/')
                    .is_some_and(|(_, sub)| has(&owner_resources, &format!("*/{sub}")))
        });
    if !resources_ok {
        return false;
    }
    let owner_names = opt(&owner.resource_names);
    owner_names.is_empty()
        || opt(&servant.resource_names)
            .iter()
            .all(|n| has(&owner_names, n))
}

/// The rules of `servant` that `owner` does not cover (`Covers`), broken down.
pub(crate) fn uncovered(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    servant
        .iter()
        .flat_map(breakdown)
        .filter(|s| !owner.iter().any(|o| rule_covers(o, s)))
        .collect()
}

/// A rule as `rbacv1helpers.CompactString` writes it:
/// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
pub(crate) fn compact(rule: &PolicyRule) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut parts = Vec::new();
    for (name, value) in [
        ("APIGroups", &rule.api_groups),
        ("Resources", &rule.resources),
        ("ResourceNames", &rule.resource_names),
        ("NonResourceURLs", &rule.non_resource_urls),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{name}:[{}]", list(v)));
        }
    }
    parts.push(format!("Verbs:[{}]", list(&rule.verbs)));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        PolicyRule {
            verbs: v(verbs),
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            ..PolicyRule::default()
        }
    }

    #[test]
    fn rules_match_as_upstream() {
        let a = Attributes::resource("get", "", "pods", "default").named("web");
        assert!(rule_allows(&a, &rule(&["get"], &[""], &["pods"])));
        assert!(rule_allows(&a, &rule(&["*"], &["*"], &["*"])));
        assert!(!rule_allows(&a, &rule(&["list"], &[""], &["pods"])));
        assert!(!rule_allows(&a, &rule(&["get"], &["apps"], &["pods"])));
        let mut exec = Attributes::resource("create", "", "pods", "default").named("web");
        exec.subresource = "exec".into();
        assert!(!rule_allows(&exec, &rule(&["create"], &[""], &["pods"])));
        assert!(rule_allows(
            &exec,
            &rule(&["create"], &[""], &["pods/exec"])
        ));
        assert!(rule_allows(&exec, &rule(&["create"], &[""], &["*/exec"])));
        let mut named = rule(&["get"], &[""], &["pods"]);
        named.resource_names = Some(vec!["db".into()]);
        assert!(!rule_allows(&a, &named));
        let path = Attributes {
            verb: "get".into(),
            path: "/apis/apps".into(),
            ..Attributes::default()
        };
        let urls = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec!["/apis/*".into()]),
            ..PolicyRule::default()
        };
        assert!(rule_allows(&path, &urls));
    }

    #[test]
    fn escalation_finds_what_is_not_held() {
        let owner = vec![rule(&["get", "list"], &[""], &["pods", "pods/*"])];
        let wanted = vec![rule(&["get", "delete"], &[""], &["pods", "pods/log"])];
        let missing = uncovered(&owner, &wanted);
        let text: Vec<String> = missing.iter().map(compact).collect();
        assert_eq!(
            text,
            [
                // `pods/*` is no wildcard to RBAC: only `*/log` would cover `pods/log`.
                "{APIGroups:[\"\"], Resources:[\"pods/log\"], Verbs:[\"get\"]}",
                "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}",
                "{APIGroups:[\"\"], Resources:[\"pods/log\"], Verbs:[\"delete\"]}"
            ]
        );
        assert!(uncovered(&[rule(&["*"], &["*"], &["*"])], &wanted).is_empty());
    }
}
