//! API errors as the real API server reports them: a `metav1.Status` with the HTTP code, a
//! reason, a message in Kubernetes' own words and, for invalid objects, field causes.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

/// `errors.NewForbidden`'s message: the resource and name when there are any.
fn forbidden_message(resource: &str, name: &str, detail: &str) -> String {
    match (resource, name) {
        ("", _) => format!("forbidden: {detail}"),
        (_, "") => format!("{resource} is forbidden: {detail}"),
        _ => format!("{resource} \"{name}\" is forbidden: {detail}"),
    }
}

/// One reason an object is invalid, tied to a field path such as `spec.containers[0].name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueDuplicate`, ...
    pub(crate) reason: &'static str,
    pub(crate) field: String,
    /// The detail, such as `Required value` or `Invalid value: "A": must be lowercase`.
    pub(crate) message: String,
}

impl Cause {
    pub(crate) fn required(field: impl Into<String>) -> Self {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }

    /// `field.Required(path, detail)`: `Required value: <detail>`.
    pub(crate) fn required_because(field: impl Into<String>, detail: &str) -> Self {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: format!("Required value: {detail}"),
        }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        value: &Value,
        detail: impl AsRef<str>,
    ) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!(
                "Invalid value: {}: {}",
                display_value(value),
                detail.as_ref()
            ),
        }
    }

    /// `field.Invalid` of a value Go prints with `%#v` (a struct), given as Go prints it.
    pub(crate) fn invalid_shown(
        field: impl Into<String>,
        shown: &str,
        detail: impl AsRef<str>,
    ) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {shown}: {}", detail.as_ref()),
        }
    }

    pub(crate) fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {}", display_value(value)),
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let supported: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                display_value(value),
                supported.join(", ")
            ),
        }
    }

    /// `field.NotFound`: `Not found: "x"`.
    pub(crate) fn not_found(field: impl Into<String>, value: &Value) -> Self {
        Cause {
            reason: "FieldValueNotFound",
            field: field.into(),
            message: format!("Not found: {}", display_value(value)),
        }
    }

    pub(crate) fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {}", detail.into()),
        }
    }

    /// `field.TypeInvalid`: a value of the wrong JSON type, given as Go prints it.
    pub(crate) fn type_invalid(field: impl Into<String>, shown: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueTypeInvalid",
            field: field.into(),
            message: format!("Invalid value: {shown}: {detail}"),
        }
    }

    /// `field.NotSupported` of a value Go prints as `shown`, the supported values already
    /// written as strings (each is quoted, as upstream quotes them).
    pub(crate) fn not_supported_shown(
        field: impl Into<String>,
        shown: &str,
        supported: &[String],
    ) -> Self {
        let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {shown}: supported values: {}",
                supported.join(", ")
            ),
        }
    }

    /// `field.TooMany(path, actual, max)`: `Too many: 4: must have at most 3 items`.
    pub(crate) fn too_many(field: impl Into<String>, actual: i64, max: i64) -> Self {
        let items = if max == 1 { "item" } else { "items" };
        Cause {
            reason: "FieldValueTooMany",
            field: field.into(),
            message: format!("Too many: {actual}: must have at most {max} {items}"),
        }
    }

    /// `field.TooLong(path, _, max)`: `Too long: may not be more than 5 bytes`.
    pub(crate) fn too_long(field: impl Into<String>, max: i64) -> Self {
        let bytes = if max == 1 { "byte" } else { "bytes" };
        Cause {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: may not be more than {max} {bytes}"),
        }
    }

    /// `field.Duplicate` of a value Go prints as `shown`.
    pub(crate) fn duplicate_shown(field: impl Into<String>, shown: &str) -> Self {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {shown}"),
        }
    }
}

fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// What went wrong with an API request, in the terms of a `metav1.Status`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {detail}")]
    Conflict {
        resource: String,
        name: String,
        detail: String,
    },
    #[error("{}", invalid_message(group, kind, name, causes))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    #[error("{0}")]
    BadRequest(String),
    #[error("{}", forbidden_message(resource, name, detail))]
    Forbidden {
        resource: String,
        name: String,
        detail: String,
    },
    #[error("{0}")]
    Expired(String),
    /// 429, `errors.NewTooManyRequests` with causes (`(reason, message)`), such as an eviction
    /// a disruption budget refuses.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        causes: Vec<(&'static str, String)>,
        /// `details.retryAfterSeconds` and the `Retry-After` header (none when 0).
        retry_after: u32,
    },
    /// 413, `errors.NewRequestEntityTooLargeError`: a body over the API server's limit.
    #[error("Request entity too large: {0}")]
    RequestEntityTooLarge(String),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 405 with its own message (`errors.NewMethodNotSupported` whose message is replaced).
    #[error("{0}")]
    MethodNotAllowedWith(String),
    #[error("the server could not find the requested resource")]
    NoSuchPath,
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
    )]
    UnsupportedMediaType,
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Unavailable(String),
    #[error("Timeout: {0}")]
    Timeout(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// 500 with no reason (`StatusReasonUnknown`) and the error's own words: what
    /// `ErrorToAPIStatus` makes of an error that is not a Status, such as etcd's `etcdserver:
    /// request timed out` when it has no quorum (kubectl: `Error from server: <words>`).
    #[error("{0}")]
    Unknown(String),
    /// A `metav1.Status` made elsewhere and passed on whole, as kube-apiserver passes on an
    /// admission webhook's refusal (its code, reason, message and details), or
    /// `errors.NewInternalError` with its one cause.
    #[error("{}", .0["message"].as_str().unwrap_or_default())]
    Status(Box<Value>),
}

/// `errors.NewInvalid`: the kind qualified by its group (`Deployment.apps`), as
/// `GroupKind.String()` writes it.
fn invalid_message(group: &str, kind: &str, name: &str, causes: &[Cause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let list = if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    };
    if group.is_empty() {
        format!("{kind} \"{name}\" is invalid: {list}")
    } else {
        format!("{kind}.{group} \"{name}\" is invalid: {list}")
    }
}

/// What a compare-and-swap that lost says.
const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

impl ApiError {
    /// 409 Conflict: the object changed since the client read it.
    pub(crate) fn modified(resource: &str, name: &str) -> Self {
        ApiError::Conflict {
            resource: resource.into(),
            name: name.into(),
            detail: MODIFIED.into(),
        }
    }

    pub(crate) fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::NoSuchPath => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Expired(_) => StatusCode::GONE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestEntityTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed | ApiError::MethodNotAllowedWith(_) => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) | ApiError::Unknown(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Status(status) => status["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// `errors.NewInternalError(err)`: 500, `Internal error occurred: <err>`, and the error
    /// again as the one cause of its details.
    pub(crate) fn internal_with_cause(error: &str) -> Self {
        ApiError::Status(Box::new(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: {error}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": error}]},
            "code": 500,
        })))
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoSuchPath => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::Expired(_) => "Expired",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::MethodNotAllowed | ApiError::MethodNotAllowedWith(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType => "UnsupportedMediaType",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Internal(_) | ApiError::Status(_) => "InternalError",
            ApiError::Unknown(_) => "",
        }
    }

    /// The `metav1.Status` object for this error.
    pub(crate) fn status(&self) -> Value {
        if let ApiError::Status(status) = self {
            // As `ErrorToAPIStatus` writes a StatusError: its own kind and version, whatever
            // the Status said.
            let mut status = (**status).clone();
            status["kind"] = json!("Status");
            status["apiVersion"] = json!("v1");
            return status;
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        if self.reason().is_empty()
            && let Some(fields) = status.as_object_mut()
        {
            // `reason` is omitempty.
            fields.remove("reason");
        }
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. }
            | ApiError::Forbidden { resource, name, .. } => {
                let (kind, group) = match resource.split_once('.') {
                    Some((kind, group)) => (kind, group),
                    None => (resource.as_str(), ""),
                };
                // Go omits the empty ones: a non-resource path's refusal has `"details": {}`.
                let mut details = json!({});
                for (field, value) in [("name", name.as_str()), ("group", group), ("kind", kind)] {
                    if !value.is_empty() {
                        details[field] = json!(value);
                    }
                }
                Some(details)
            }
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                let mut details = json!({"name": name, "kind": kind, "causes": causes});
                if !group.is_empty() {
                    details["group"] = json!(group);
                }
                Some(details)
            }
            ApiError::TooManyRequests {
                causes,
                retry_after,
                ..
            } => {
                let mut details = json!({
                    "causes": causes
                        .iter()
                        .map(|(reason, message)| json!({"reason": reason, "message": message}))
                        .collect::<Vec<_>>()
                });
                if *retry_after > 0 {
                    details["retryAfterSeconds"] = json!(retry_after);
                }
                Some(details)
            }
            ApiError::ApplyConflict { causes, .. } => Some(json!({
                "causes": causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect::<Vec<_>>()
            })),
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

/// Maps store errors onto the API's, for the resource and object at hand.
pub(crate) fn from_store(error: crate::store::Error, resource: &str, name: &str) -> ApiError {
    use crate::store::Error as S;
    match error {
        S::NotFound { .. } => ApiError::NotFound {
            resource: resource.into(),
            name: name.into(),
        },
        S::AlreadyExists { .. } => ApiError::AlreadyExists {
            resource: resource.into(),
            name: name.into(),
        },
        S::Conflict { .. } => ApiError::modified(resource, name),
        S::Compacted {
            requested,
            compacted,
        } => ApiError::Expired(match compacted {
            Some(c) => format!("too old resource version: {requested} ({c})"),
            None => format!("too old resource version: {requested}"),
        }),
        S::FutureRevision { requested, current } => ApiError::Timeout(format!(
            "Too large resource version: {requested}, current: {current}"
        )),
        S::ValueTooLarge { .. } => ApiError::BadRequest("etcdserver: request is too large".into()),
        // What etcd said, as kube-apiserver passes on an etcd error it does not recognise.
        S::Unavailable { message, .. } => ApiError::Unknown(message),
        other => ApiError::Internal(other.to_string()),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = crate::apimachinery::wire::body(&self.status());
        let mut response = (
            self.code(),
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let ApiError::TooManyRequests { retry_after, .. } = &self
            && *retry_after > 0
        {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(*retry_after),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_like_the_real_servers() {
        let e = ApiError::NotFound {
            resource: "pods".into(),
            name: "nope".into(),
        };
        assert_eq!(e.to_string(), "pods \"nope\" not found");
        assert_eq!(
            e.status()["details"],
            json!({"name": "nope", "kind": "pods"})
        );
        let e = ApiError::AlreadyExists {
            resource: "deployments.apps".into(),
            name: "web".into(),
        };
        assert_eq!(
            e.status()["details"],
            json!({"name": "web", "kind": "deployments", "group": "apps"})
        );
        assert_eq!(e.status()["code"], 409);
        let e = ApiError::Invalid {
            group: String::new(),
            kind: "Pod".into(),
            name: "x".into(),
            causes: vec![Cause::required("spec.containers[0].image")],
        };
        assert_eq!(
            e.to_string(),
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
        let two = ApiError::Invalid {
            group: String::new(),
            kind: "Pod".into(),
            name: "x".into(),
            causes: vec![
                Cause::required("a"),
                Cause::invalid("b", &json!("B"), "bad"),
            ],
        };
        assert_eq!(
            two.to_string(),
            "Pod \"x\" is invalid: [a: Required value, b: Invalid value: \"B\": bad]"
        );
        assert_eq!(
            two.status()["details"]["causes"][1]["reason"],
            "FieldValueInvalid"
        );
    }

    #[test]
    fn an_etcd_without_quorum_is_passed_on_in_its_words() {
        // `convertStorageErrorOrNot`: 500, no reason, etcd's message.
        let e = from_store(
            crate::store::Error::Unavailable {
                endpoint: "http://127.0.0.1:2379".into(),
                message: "etcdserver: request timed out".into(),
                why: Some("no quorum: 1 of 3 members up".into()),
            },
            "configmaps",
            "c",
        );
        assert_eq!(
            e.status(),
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "etcdserver: request timed out",
                "code": 500,
            })
        );
    }
}
