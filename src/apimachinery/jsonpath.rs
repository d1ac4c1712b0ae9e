//! The JSONPath subset Kubernetes evaluates against objects where one value is wanted:
//! custom resources' `additionalPrinterColumns` (client-go's `jsonpath` with missing keys
//! allowed, of which the table convertor takes the first result). A path is a sequence of
//! `.field`, `['quoted key']` / `["quoted key"]`, `[index]` (negative from the end) and
//! `[*]` / `.*` (every element or value); `{...}` around it is allowed, as templates write it.

use serde_json::Value;

/// One step of a path.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `.name` or `['name']`.
    Field(String),
    /// `[2]`, `[-1]`.
    Index(i64),
    /// `[*]` or `.*`.
    All,
}

/// Why a path could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JsonPathError {
    /// The path has a part that is none of the supported steps.
    #[error("unrecognized JSONPath {path:?}: {reason}")]
    Unrecognized {
        /// The whole path.
        path: String,
        /// What is wrong at the first bad step.
        reason: String,
    },
}

/// A parsed path.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `.spec.containers[0].name`, `.metadata.labels['app.kubernetes.io/name']`, ...
    pub fn parse(path: &str) -> Result<JsonPath, JsonPathError> {
        let bad = |reason: &str| JsonPathError::Unrecognized {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let mut rest = path.trim();
        if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            rest = inner.trim();
        }
        rest = rest.strip_prefix('$').unwrap_or(rest);
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                if after.is_empty() {
                    break;
                }
                if let Some(after_star) = after.strip_prefix('*') {
                    steps.push(Step::All);
                    rest = after_star;
                    continue;
                }
                let end = after.find(['.', '[']).unwrap_or(after.len());
                if end == 0 {
                    return Err(bad("empty field name"));
                }
                steps.push(Step::Field(after[..end].to_owned()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let after = after.trim_start();
                if let Some(q) = after.chars().next().filter(|c| *c == '\'' || *c == '"') {
                    // A quoted key may hold `]` or `.`: it ends at its closing quote.
                    let body = &after[1..];
                    let end = body.find(q).ok_or_else(|| bad("unclosed quote"))?;
                    let tail = body[end + 1..].trim_start();
                    rest = tail.strip_prefix(']').ok_or_else(|| bad("expected ]"))?;
                    steps.push(Step::Field(body[..end].to_owned()));
                    continue;
                }
                let close = after.find(']').ok_or_else(|| bad("unclosed ["))?;
                let inner = after[..close].trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else {
                    let i: i64 = inner
                        .parse()
                        .map_err(|_| bad("only indexes, * and quoted keys are supported in []"))?;
                    steps.push(Step::Index(i));
                }
                rest = &after[close + 1..];
            } else {
                return Err(bad("expected . or ["));
            }
        }
        Ok(JsonPath { steps })
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Every value the path reaches in `value`; missing keys and indexes give none.
    pub fn find<'a>(&self, value: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![value];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in current {
                match step {
                    Step::Field(name) => {
                        if let Some(found) = v.as_object().and_then(|o| o.get(name)) {
                            next.push(found);
                        }
                    }
                    Step::Index(i) => {
                        if let Some(items) = v.as_array() {
                            let len = items.len() as i64;
                            let at = if *i < 0 { len + i } else { *i };
                            if (0..len).contains(&at) {
                                next.push(&items[at as usize]);
                            }
                        }
                    }
                    Step::All => match v {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(map) => next.extend(map.values()),
                        _ => {}
                    },
                }
            }
            current = next;
        }
        current
    }

    /// The first value the path reaches, if any.
    pub fn first<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        self.find(value).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_reach_fields_keys_and_items() {
        let object = json!({
            "spec": {"replicas": 3, "containers": [{"name": "a"}, {"name": "b"}]},
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "status": {"conditions": [{"type": "Ready"}]},
        });
        let get = |p: &str| JsonPath::parse(p).expect(p).first(&object).cloned();
        assert_eq!(get(".spec.replicas"), Some(json!(3)));
        assert_eq!(get("{.spec.containers[1].name}"), Some(json!("b")));
        assert_eq!(get(".spec.containers[-1].name"), Some(json!("b")));
        assert_eq!(
            get(".metadata.labels['app.kubernetes.io/name']"),
            Some(json!("web"))
        );
        assert_eq!(
            get(".metadata.labels[\"app.kubernetes.io/name\"]"),
            Some(json!("web"))
        );
        assert_eq!(get(".status.conditions[0].type"), Some(json!("Ready")));
        assert_eq!(get(".spec.containers[*].name"), Some(json!("a")));
        assert_eq!(get(".spec.missing.deeper"), None);
        assert_eq!(get(".spec.containers[5]"), None);
        assert_eq!(
            JsonPath::parse(".spec.containers[?(@.name=='a')]"),
            Err(JsonPathError::Unrecognized {
                path: ".spec.containers[?(@.name=='a')]".into(),
                reason: "only indexes, * and quoted keys are supported in []".into(),
            })
        );
        assert!(JsonPath::parse("spec").is_err());
    }
}
