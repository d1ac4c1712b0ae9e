//! The access reviews: questions to the authenticator and authorizer that are created and
//! answered, never stored. `SelfSubjectAccessReview` (`kubectl auth can-i`),
//! `SubjectAccessReview` and `LocalSubjectAccessReview` (may this user?),
//! `SelfSubjectRulesReview` (`kubectl auth can-i --list`) and `SelfSubjectReview`
//! (`kubectl auth whoami`), as `pkg/registry/authorization` and `authentication` answer them.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Attributes, UserInfo};
use crate::apiserver::ApiServer;
use crate::apiserver::errors::{ApiError, Cause};
use crate::apiserver::resources::Resource;

/// Whether `resource` is one of the reviews this module answers.
pub(crate) fn is_review(resource: &Resource) -> bool {
    matches!(
        resource.kind,
        "SelfSubjectAccessReview"
            | "SubjectAccessReview"
            | "LocalSubjectAccessReview"
            | "SelfSubjectRulesReview"
            | "SelfSubjectReview"
    )
}

fn invalid(resource: &Resource, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        group: resource.group.into(),
        kind: resource.kind.into(),
        name: String::new(),
        causes,
    }
}

fn user_info_json(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// The attributes a review's spec asks about.
fn spec_attributes(resource: &Resource, spec: &Value) -> Result<Attributes, ApiError> {
    let resource_attributes = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    match (resource_attributes, non_resource) {
        (Some(r), None) => {
            let s = |field: &str| r[field].as_str().unwrap_or_default().to_owned();
            Ok(Attributes {
                verb: s("verb"),
                resource_request: true,
                namespace: s("namespace"),
                api_group: s("group"),
                resource: s("resource"),
                subresource: s("subresource"),
                name: s("name"),
                path: String::new(),
            })
        }
        (None, Some(n)) => Ok(Attributes {
            verb: n["verb"].as_str().unwrap_or_default().to_owned(),
            path: n["path"].as_str().unwrap_or_default().to_owned(),
            ..Attributes::default()
        }),
        (Some(_), Some(_)) => Err(invalid(
            resource,
            vec![Cause::invalid(
                "spec.nonResourceAttributes",
                &json!(format!("{non_resource:?}")),
                "cannot be specified in combination with resourceAttributes",
            )],
        )),
        (None, None) => Err(invalid(
            resource,
            vec![Cause::invalid(
                "spec.resourceAttributes",
                &json!("null"),
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        )),
    }
}

/// Answers a create of a review (`namespace`: the path's, for the local and rules reviews).
pub(crate) async fn create(
    api: &Arc<ApiServer>,
    resource: &'static Resource,
    namespace: Option<&str>,
    requester: &UserInfo,
    mut object: Value,
) -> Result<Value, ApiError> {
    let store = api.store_arc();
    let spec = object.get("spec").cloned().unwrap_or(json!({}));
    let status = match resource.kind {
        "SelfSubjectReview" => json!({"userInfo": user_info_json(requester)}),
        "SelfSubjectRulesReview" => {
            let namespace = spec["namespace"].as_str().unwrap_or_default();
            let rules = api.authorizer().rbac().rules(&store).await;
            let (mut rules, errors) = rules.rules_for(requester, namespace);
            rules.dedup();
            let mut resource_rules = Vec::new();
            let mut non_resource_rules = Vec::new();
            for rule in rules {
                if rule
                    .non_resource_urls
                    .as_ref()
                    .is_some_and(|u| !u.is_empty())
                {
                    non_resource_rules.push(
                        json!({"verbs": rule.verbs, "nonResourceURLs": rule.non_resource_urls}),
                    );
                }
                if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
                    let mut r = json!({"verbs": rule.verbs, "apiGroups": rule.api_groups.unwrap_or_default(), "resources": rule.resources});
                    if let Some(names) = rule.resource_names.filter(|n| !n.is_empty()) {
                        r["resourceNames"] = json!(names);
                    }
                    resource_rules.push(r);
                }
            }
            let mut status = json!({
                "resourceRules": resource_rules,
                "nonResourceRules": non_resource_rules,
                "incomplete": !errors.is_empty(),
            });
            if !errors.is_empty() {
                status["evaluationError"] = json!(errors.join(", "));
            }
            status
        }
        _ => {
            let mut attributes = spec_attributes(resource, &spec)?;
            let subject = match resource.kind {
                "SelfSubjectAccessReview" => requester.clone(),
                _ => {
                    let user = spec["user"].as_str().unwrap_or_default();
                    let groups: Vec<String> =
                        serde_json::from_value(spec["groups"].clone()).unwrap_or_default();
                    if user.is_empty() && groups.is_empty() {
                        return Err(invalid(
                            resource,
                            vec![Cause::invalid(
                                "spec.user",
                                &json!(""),
                                "at least one of user or group must be specified",
                            )],
                        ));
                    }
                    UserInfo {
                        name: user.to_owned(),
                        uid: spec["uid"].as_str().unwrap_or_default().to_owned(),
                        groups,
                        extra: serde_json::from_value(spec["extra"].clone()).unwrap_or_default(),
                    }
                }
            };
            if resource.kind == "LocalSubjectAccessReview" {
                let ns = namespace.unwrap_or_default();
                if attributes.namespace != ns {
                    return Err(invalid(
                        resource,
                        vec![Cause::invalid(
                            "spec.resourceAttributes.namespace",
                            &json!(attributes.namespace),
                            "must match metadata.namespace",
                        )],
                    ));
                }
                attributes.namespace = ns.to_owned();
            }
            let decision = api
                .authorizer()
                .authorize(&store, &subject, &attributes)
                .await;
            let mut status = json!({"allowed": decision.allowed});
            if !decision.reason.is_empty() {
                status["reason"] = json!(decision.reason);
            }
            status
        }
    };
    if let Some(map) = object.as_object_mut() {
        map.insert("status".into(), status);
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("creationTimestamp".into(), Value::Null);
            if let Some(ns) = namespace.filter(|_| resource.namespaced) {
                meta.insert("namespace".into(), json!(ns));
            }
        }
        map.insert("apiVersion".into(), json!(resource.api_version()));
        map.insert("kind".into(), json!(resource.kind));
    }
    Ok(object)
}
