//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which `kubectl create
//! namespace|deployment|configmap|secret|...` sends: the `k8s\0` envelope and its
//! `runtime.Unknown` wrapper are unpacked, and the object is turned into the JSON the rest of the
//! API server works with, by walking the message with Kubernetes' own descriptors (built from
//! `proto/` by `build.rs`).
//!
//! Kubernetes' protobuf field names are its JSON names; what needs care is the few types whose
//! JSON form is not a message (`IntOrString`, `Quantity`, `Time`, `MicroTime`, `Duration`,
//! `RawExtension`), 64-bit integers (numbers in Kubernetes JSON) and bytes (base64). Go writes
//! every non-pointer field to protobuf, empty or not; the JSON made here has every field the
//! message carried, and the API server's normalisation then leaves out the zeros Go's JSON omits
//! ([`crate::apimachinery::wire`]), keeping a pointer's explicit zero (`replicas: 0`).

use base64::Engine;

use protobuf::reflect::{MessageDescriptor, MessageRef, ReflectFieldRef, ReflectValueRef};
use serde_json::{Map, Value, json};

use super::errors::ApiError;
use super::resources::Resource;

/// The media type.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

fn bad(message: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("the protobuf body could not be decoded: {message}"))
}

fn message(full_name: &str) -> Option<MessageDescriptor> {
    crate::apimachinery::gotypes::descriptor(full_name)
}

/// Decodes a protobuf request body for `resource` into its JSON form.
pub(crate) fn decode(resource: &Resource, body: &[u8]) -> Result<Value, ApiError> {
    decode_kind(resource.group, resource.version, resource.kind, body)
}

/// Decodes a protobuf request body holding a `kind` of `group`/`version` (a subresource's
/// kind, such as `TokenRequest`).
pub(crate) fn decode_kind(
    group: &str,
    version: &str,
    kind: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let payload = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("it does not start with the k8s\\0 magic number"))?;
    let unknown_descriptor = message("apimachinery.pkg.runtime.Unknown")
        .ok_or_else(|| bad("no descriptor for runtime.Unknown"))?;
    let unknown = unknown_descriptor.parse_from_bytes(payload).map_err(bad)?;
    let unknown = to_json(&MessageRef::from(&*unknown));
    let raw = unknown["raw"]
        .as_str()
        .ok_or_else(|| bad("the envelope holds no object"))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(bad)?;
    let package = crate::apimachinery::gotypes::package(group, version).unwrap_or_default();
    let descriptor = message(&format!("{package}.{kind}")).ok_or(ApiError::UnsupportedMediaType)?;
    let object = descriptor.parse_from_bytes(&raw).map_err(bad)?;
    let mut object = to_json(&MessageRef::from(&*object));
    if !object.is_object() {
        return Err(bad("the object is not a message"));
    }
    // `runtime.Unknown` embeds its TypeMeta inline, so its fields come out flattened.
    let type_meta = match &unknown["typeMeta"] {
        Value::Object(_) => &unknown["typeMeta"],
        _ => &unknown,
    };
    if let Some(api_version) = type_meta["apiVersion"].as_str() {
        object["apiVersion"] = json!(api_version);
    }
    if let Some(kind) = type_meta["kind"].as_str() {
        object["kind"] = json!(kind);
    }
    Ok(object)
}

fn to_json(message: &MessageRef<'_>) -> Value {
    let descriptor = message.descriptor_dyn();
    let name = descriptor.full_name().to_owned();
    let field = |n: &str| {
        descriptor
            .field_by_name(n)
            .and_then(|f| f.get_singular(&**message))
    };
    if name.ends_with("intstr.IntOrString") {
        return if matches!(field("type"), Some(ReflectValueRef::I64(1))) {
            match field("strVal") {
                Some(ReflectValueRef::String(s)) => json!(s),
                _ => json!(""),
            }
        } else {
            match field("intVal") {
                Some(ReflectValueRef::I32(i)) => json!(i),
                _ => json!(0),
            }
        };
    }
    if name.ends_with("resource.Quantity") {
        return match field("string") {
            Some(ReflectValueRef::String(s)) => json!(s),
            _ => json!("0"),
        };
    }
    if name.ends_with("meta.v1.Time") || name.ends_with("meta.v1.MicroTime") {
        let micro = name.ends_with("MicroTime");
        let seconds = match field("seconds") {
            Some(ReflectValueRef::I64(s)) => s,
            _ => 0,
        };
        let nanos = match field("nanos") {
            Some(ReflectValueRef::I32(n)) if micro => n,
            _ => 0,
        };
        if seconds == 0 && nanos == 0 {
            // Go's zero time, which its JSON writes as null.
            return Value::Null;
        }
        let time = jiff::Timestamp::new(seconds, nanos).unwrap_or_default();
        let format = if micro {
            "%Y-%m-%dT%H:%M:%S%.6fZ"
        } else {
            "%Y-%m-%dT%H:%M:%SZ"
        };
        return json!(time.strftime(format).to_string());
    }
    if name.ends_with("meta.v1.Duration") {
        let nanos = match field("duration") {
            Some(ReflectValueRef::I64(n)) => n,
            _ => 0,
        };
        return json!(jiff::SignedDuration::from_nanos(nanos).to_string());
    }
    if name.ends_with("runtime.RawExtension") {
        return match field("raw") {
            Some(ReflectValueRef::Bytes(raw)) => serde_json::from_slice(raw).unwrap_or(Value::Null),
            _ => Value::Null,
        };
    }
    let schema = crate::apimachinery::gotypes::schema().message(&name);
    let inline =
        |field: &str| schema.is_some_and(|m| m.fields.iter().any(|f| f.name == field && f.inline));
    let mut out = Map::new();
    for f in descriptor.fields() {
        let value = match f.get_reflect(&**message) {
            // Present on the wire: Go writes every non-pointer field, zero or not, and a
            // pointer only when set; which zeros its JSON omits is for the API server's
            // normalisation to say, which knows the Go declarations.
            ReflectFieldRef::Optional(v) => match v.value() {
                Some(v) => value_to_json(v),
                None => continue,
            },
            ReflectFieldRef::Repeated(items) => {
                if items.is_empty() {
                    continue;
                }
                Value::Array(items.into_iter().map(value_to_json).collect())
            }
            ReflectFieldRef::Map(map) => {
                if map.is_empty() {
                    continue;
                }
                let mut object = Map::new();
                for (k, v) in &map {
                    let key = match value_to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    object.insert(key, value_to_json(v));
                }
                Value::Object(object)
            }
        };
        match value {
            // An embedded struct's fields are the outer object's in Go's JSON.
            Value::Object(fields) if inline(f.name()) => out.extend(fields),
            value => {
                out.insert(f.name().to_owned(), value);
            }
        }
    }
    Value::Object(out)
}

fn value_to_json(value: ReflectValueRef<'_>) -> Value {
    match value {
        ReflectValueRef::U32(v) => json!(v),
        ReflectValueRef::U64(v) => json!(v),
        ReflectValueRef::I32(v) => json!(v),
        ReflectValueRef::I64(v) => json!(v),
        ReflectValueRef::F32(v) => json!(v),
        ReflectValueRef::F64(v) => json!(v),
        ReflectValueRef::Bool(v) => json!(v),
        ReflectValueRef::String(v) => json!(v),
        ReflectValueRef::Bytes(v) => json!(base64::engine::general_purpose::STANDARD.encode(v)),
        ReflectValueRef::Enum(descriptor, v) => descriptor
            .value_by_number(v)
            .map_or(json!(v), |e| json!(e.name())),
        ReflectValueRef::Message(m) => to_json(&m),
    }
}

#[cfg(test)]
mod tests {
    use protobuf::MessageDyn;
    use protobuf::reflect::ReflectValueBox;

    use super::*;
    use crate::apiserver::resources::{RESOURCES, find};

    fn new(name: &str) -> Box<dyn MessageDyn> {
        message(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .new_instance()
    }

    fn set(m: &mut dyn MessageDyn, field: &str, value: ReflectValueBox) {
        let f = m
            .descriptor_dyn()
            .field_by_name(field)
            .unwrap_or_else(|| panic!("no field {field}"));
        f.set_singular_field(m, value);
    }

    fn push(m: &mut dyn MessageDyn, field: &str, value: ReflectValueBox) {
        let f = m.descriptor_dyn().field_by_name(field).unwrap();
        f.mut_repeated(m).push(value);
    }

    /// What kubectl sends: the magic number, then a runtime.Unknown around the object.
    fn envelope(api_version: &str, kind: &str, object: &dyn MessageDyn) -> Vec<u8> {
        let mut type_meta = new("apimachinery.pkg.runtime.TypeMeta");
        set(
            &mut *type_meta,
            "apiVersion",
            ReflectValueBox::String(api_version.into()),
        );
        set(
            &mut *type_meta,
            "kind",
            ReflectValueBox::String(kind.into()),
        );
        let mut unknown = new("apimachinery.pkg.runtime.Unknown");
        set(
            &mut *unknown,
            "typeMeta",
            ReflectValueBox::Message(type_meta),
        );
        set(
            &mut *unknown,
            "raw",
            ReflectValueBox::Bytes(object.write_to_bytes_dyn().unwrap()),
        );
        let mut body = MAGIC.to_vec();
        body.extend(unknown.write_to_bytes_dyn().unwrap());
        body
    }

    #[test]
    fn every_served_kind_has_a_message() {
        // CustomResourceDefinitions are served as JSON and YAML only: the apiextensions
        // `generated.proto` is not vendored yet.
        for r in RESOURCES
            .iter()
            .filter(|r| r.group != "apiextensions.k8s.io")
        {
            assert!(
                message(&format!(
                    "{}.{}",
                    crate::apimachinery::gotypes::package(r.group, r.version).unwrap_or_default(),
                    r.kind
                ))
                .is_some(),
                "{}",
                r.plural
            );
        }
    }

    #[test]
    fn embedded_inline_structs_are_flattened() {
        let mut number = new("api.networking.v1.ServiceBackendPort");
        set(&mut *number, "number", ReflectValueBox::I32(80));
        let mut service = new("api.networking.v1.IngressServiceBackend");
        set(&mut *service, "name", ReflectValueBox::String("svc".into()));
        set(&mut *service, "port", ReflectValueBox::Message(number));
        let mut backend = new("api.networking.v1.IngressBackend");
        set(&mut *backend, "service", ReflectValueBox::Message(service));
        let mut path = new("api.networking.v1.HTTPIngressPath");
        set(&mut *path, "path", ReflectValueBox::String("/bar".into()));
        set(
            &mut *path,
            "pathType",
            ReflectValueBox::String("Prefix".into()),
        );
        set(&mut *path, "backend", ReflectValueBox::Message(backend));
        let mut http = new("api.networking.v1.HTTPIngressRuleValue");
        push(&mut *http, "paths", ReflectValueBox::Message(path));
        let mut value = new("api.networking.v1.IngressRuleValue");
        set(&mut *value, "http", ReflectValueBox::Message(http));
        let mut rule = new("api.networking.v1.IngressRule");
        set(
            &mut *rule,
            "host",
            ReflectValueBox::String("foo.com".into()),
        );
        set(
            &mut *rule,
            "ingressRuleValue",
            ReflectValueBox::Message(value),
        );
        let mut spec = new("api.networking.v1.IngressSpec");
        push(&mut *spec, "rules", ReflectValueBox::Message(rule));
        let mut ingress = new("api.networking.v1.Ingress");
        set(&mut *ingress, "spec", ReflectValueBox::Message(spec));
        let ingresses = find("networking.k8s.io", "v1", "ingresses").unwrap();
        let object = decode(
            ingresses,
            &envelope("networking.k8s.io/v1", "Ingress", &*ingress),
        )
        .unwrap();
        assert_eq!(
            object["spec"]["rules"][0],
            json!({"host": "foo.com", "http": {"paths": [{"path": "/bar", "pathType": "Prefix", "backend": {"service": {"name": "svc", "port": {"number": 80}}}}]}})
        );
    }

    #[test]
    fn decodes_a_deployment_as_kubectl_sends_it() {
        let mut port = new("api.core.v1.ContainerPort");
        set(&mut *port, "containerPort", ReflectValueBox::I32(80));
        let mut container = new("api.core.v1.Container");
        set(
            &mut *container,
            "name",
            ReflectValueBox::String("web".into()),
        );
        set(
            &mut *container,
            "image",
            ReflectValueBox::String("nginx:1.25".into()),
        );
        push(&mut *container, "ports", ReflectValueBox::Message(port));
        let mut pod_spec = new("api.core.v1.PodSpec");
        push(
            &mut *pod_spec,
            "containers",
            ReflectValueBox::Message(container),
        );
        let mut template = new("api.core.v1.PodTemplateSpec");
        set(&mut *template, "spec", ReflectValueBox::Message(pod_spec));
        let mut spec = new("api.apps.v1.DeploymentSpec");
        set(&mut *spec, "replicas", ReflectValueBox::I32(3));
        set(&mut *spec, "template", ReflectValueBox::Message(template));
        let mut meta = new("apimachinery.pkg.apis.meta.v1.ObjectMeta");
        set(&mut *meta, "name", ReflectValueBox::String("web".into()));
        set(
            &mut *meta,
            "generateName",
            ReflectValueBox::String(String::new()),
        );
        let mut time = new("apimachinery.pkg.apis.meta.v1.Time");
        set(&mut *time, "seconds", ReflectValueBox::I64(1_700_000_000));
        set(
            &mut *meta,
            "creationTimestamp",
            ReflectValueBox::Message(time),
        );
        let mut deployment = new("api.apps.v1.Deployment");
        set(&mut *deployment, "metadata", ReflectValueBox::Message(meta));
        set(&mut *deployment, "spec", ReflectValueBox::Message(spec));

        let deployments = find("apps", "v1", "deployments").unwrap();
        let object = decode(
            deployments,
            &envelope("apps/v1", "Deployment", &*deployment),
        )
        .unwrap();
        assert_eq!(object["apiVersion"], "apps/v1");
        assert_eq!(object["kind"], "Deployment");
        assert_eq!(object["metadata"]["name"], "web");
        assert_eq!(
            object["metadata"]["creationTimestamp"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(object["spec"]["replicas"], 3);
        let canonical = deployments.canonical(object.clone()).unwrap();
        assert!(
            canonical["metadata"].get("generateName").is_none(),
            "empty strings are left out"
        );
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            80
        );
        let typed = (deployments.normalize)(object).unwrap();
        assert_eq!(
            typed["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.25"
        );
        assert!(decode(deployments, b"{}").is_err());
        assert!(decode(deployments, b"k8s\0\xff\xff").is_err());
    }

    #[test]
    fn special_types_take_their_json_form() {
        let mut secret = new("api.core.v1.Secret");
        let data = secret.descriptor_dyn().field_by_name("data").unwrap();
        data.mut_map(&mut *secret).insert(
            ReflectValueBox::String("password".into()),
            ReflectValueBox::Bytes(b"hunter2".to_vec()),
        );
        set(
            &mut *secret,
            "type",
            ReflectValueBox::String("Opaque".into()),
        );
        let json = to_json(&MessageRef::from(&*secret));
        assert_eq!(json["data"]["password"], "aHVudGVyMg==");
        assert_eq!(json["type"], "Opaque");
        let mut target = new("apimachinery.pkg.util.intstr.IntOrString");
        set(&mut *target, "type", ReflectValueBox::I64(1));
        set(
            &mut *target,
            "strVal",
            ReflectValueBox::String("http".into()),
        );
        let mut port = new("api.core.v1.ServicePort");
        set(&mut *port, "port", ReflectValueBox::I32(80));
        set(&mut *port, "targetPort", ReflectValueBox::Message(target));
        let json = to_json(&MessageRef::from(&*port));
        assert_eq!(json, json!({"port": 80, "targetPort": "http"}));
        // Go writes non-pointer zeros; pointer zeros that mean something stay.
        let mut spec = new("api.apps.v1.DeploymentSpec");
        set(&mut *spec, "replicas", ReflectValueBox::I32(0));
        set(&mut *spec, "minReadySeconds", ReflectValueBox::I32(0));
        set(&mut *spec, "paused", ReflectValueBox::Bool(false));
        let mut written = Vec::new();
        crate::apimachinery::wire::write_as(
            &to_json(&MessageRef::from(&*spec)),
            "api.apps.v1.DeploymentSpec",
            &mut written,
        );
        let written: Value = serde_json::from_slice(&written).unwrap();
        assert_eq!(written["replicas"], 0);
        assert!(written.get("minReadySeconds").is_none());
        assert!(written.get("paused").is_none());
        let mut quantity = new("apimachinery.pkg.api.resource.Quantity");
        set(
            &mut *quantity,
            "string",
            ReflectValueBox::String("500m".into()),
        );
        assert_eq!(to_json(&MessageRef::from(&*quantity)), json!("500m"));
    }
}
