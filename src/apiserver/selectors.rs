//! Label and field selectors, parsed and matched as the real API server does.
//!
//! Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`, `a>1`,
//! `a<1`, joined by commas. Field selectors: `path=value`, `path==value`, `path!=value` over the
//! fields each resource supports (`metadata.name` and `metadata.namespace` everywhere).

use std::collections::BTreeMap;

use serde_json::Value;

use super::errors::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl LabelSelector {
    pub(crate) fn parse(s: &str) -> Result<Self, ApiError> {
        let bad = |part: &str| {
            ApiError::BadRequest(format!(
                "unable to parse requirement: invalid label selector: {part:?}"
            ))
        };
        let mut requirements = Vec::new();
        for part in split_top_level(s) {
            let requirement = if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("==") {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once('=') {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, set)) = part.split_once(" notin ") {
                Requirement::NotIn(
                    key.trim().to_owned(),
                    parse_set(set).ok_or_else(|| bad(part))?,
                )
            } else if let Some((key, set)) = part.split_once(" in ") {
                Requirement::In(
                    key.trim().to_owned(),
                    parse_set(set).ok_or_else(|| bad(part))?,
                )
            } else if let Some((key, n)) = part.split_once('>') {
                Requirement::GreaterThan(
                    key.trim().to_owned(),
                    n.trim().parse().map_err(|_| bad(part))?,
                )
            } else if let Some((key, n)) = part.split_once('<') {
                Requirement::LessThan(
                    key.trim().to_owned(),
                    n.trim().parse().map_err(|_| bad(part))?,
                )
            } else {
                Requirement::Exists(part.to_owned())
            };
            let key = match &requirement {
                Requirement::Equals(k, _)
                | Requirement::NotEquals(k, _)
                | Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::DoesNotExist(k)
                | Requirement::GreaterThan(k, _)
                | Requirement::LessThan(k, _) => k,
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(bad(part));
            }
            requirements.push(requirement);
        }
        Ok(LabelSelector(requirements))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's labels satisfy every requirement.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, set) => labels.get(k).is_some_and(|v| set.contains(v)),
            Requirement::NotIn(k, set) => labels.get(k).is_none_or(|v| !set.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::GreaterThan(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Requirement::LessThan(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        })
    }

    /// Matches the labels of a JSON object.
    pub(crate) fn matches_object(&self, object: &Value) -> bool {
        if self.is_empty() {
            return true;
        }
        self.matches(&labels_of(object))
    }
}

/// An object's `metadata.labels`.
pub(crate) fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A parsed field selector.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

/// The fields each kind can be selected on, besides `metadata.name` and `metadata.namespace`.
fn selectable(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
        ],
        "Secret" => &["type"],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "ReplicaSet" | "ReplicationController" => &["status.replicas"],
        "Job" => &["status.successful"],
        _ => &[],
    }
}

impl FieldSelector {
    pub(crate) fn parse(s: &str, kind: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace")
                && !selectable(kind).contains(&field)
            {
                return Err(ApiError::BadRequest(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(FieldSelector(terms))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every term looks only at `metadata` (so metadata alone can be matched).
    pub(crate) fn only_metadata(&self) -> bool {
        self.0
            .iter()
            .all(|(field, _, _)| field.starts_with("metadata."))
    }

    /// Matches terms that look only at `metadata.name` and `metadata.namespace`.
    /// The value this selector requires `field` to equal, if it requires one.
    pub(crate) fn required(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, equal, _)| f == field && *equal)
            .map(|(_, _, value)| value.as_str())
    }

    pub(crate) fn matches_metadata(&self, name: &str, namespace: &str) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = if field == "metadata.name" {
                name
            } else {
                namespace
            };
            (actual == value) == *equal
        })
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let mut node = object;
            for part in field.split('.') {
                node = &node[part];
            }
            let actual = match node {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Object(source) if field == "source" => source
                    .get("component")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

/// The label and field selectors of a request's `labelSelector` and `fieldSelector` parameters.
pub(crate) fn from_params(
    params: &std::collections::HashMap<String, String>,
    kind: &str,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let get = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    Ok((
        LabelSelector::parse(get("labelSelector"))?,
        FieldSelector::parse(get("fieldSelector"), kind)?,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        for (selector, expected) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=db", false),
            ("app in (web, db)", true),
            ("app notin (web,db)", false),
            ("missing notin (a)", true),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier in (front),!missing", true),
            ("n>4", true),
            ("n<5", false),
        ] {
            let parsed = LabelSelector::parse(selector).unwrap();
            assert_eq!(parsed.matches(&l), expected, "{selector}");
        }
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}});
        for (selector, expected) in [
            ("metadata.name=p", true),
            ("metadata.namespace!=ns", false),
            ("spec.nodeName=node-1,status.phase!=Failed", true),
            ("spec.nodeName=", false),
            ("status.podIP=", true),
        ] {
            assert_eq!(
                FieldSelector::parse(selector, "Pod").unwrap().matches(&pod),
                expected,
                "{selector}"
            );
        }
        let err = FieldSelector::parse("spec.bogus=1", "Pod").unwrap_err();
        assert_eq!(err.to_string(), "field label not supported: spec.bogus");
        let event = json!({"involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet"}});
        assert!(
            FieldSelector::parse(
                "involvedObject.kind=Pod,involvedObject.name=p,source=kubelet",
                "Event"
            )
            .unwrap()
            .matches(&event)
        );
    }
}
