//! The Go types behind the API, as far as what a client sees depends on them: for every message
//! of the served groups, its fields in Go struct order, what each holds (scalar, bytes, a
//! message, a list or a map of them), and the two facts of its Go declaration that decide how
//! `encoding/json` writes it: whether it is a pointer, and whether its tag says `omitempty`.
//!
//! Two sources are joined once, at first use: the descriptor set `build.rs` makes from the
//! Kubernetes `.proto` files in `proto/` (field order, kinds, message types: Kubernetes' proto
//! fields are declared in Go struct order and named by their JSON names), and `gofields.txt`,
//! the pointer/omitempty facts read off upstream's Go types (`k8s.io/api`,
//! `k8s.io/apimachinery`, v1.33), one line per field. Types whose Go form writes its own JSON
//! (`Time`, `Quantity`, `IntOrString`, ...) are marked [`Special`].

use std::collections::HashMap;
use std::sync::OnceLock;

use protobuf::Message as _;
use protobuf::reflect::{FileDescriptor, MessageDescriptor, RuntimeFieldType, RuntimeType};

static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds"));

/// Pointer and omitempty facts of the Go fields, from upstream's Go types.
static FACTS: &str = include_str!("gofields.txt");

/// Every message of the served API groups, as protobuf descriptors (also what protobuf request
/// bodies are decoded with).
pub fn descriptors() -> &'static [FileDescriptor] {
    static FILES: OnceLock<Vec<FileDescriptor>> = OnceLock::new();
    FILES.get_or_init(|| {
        let set = protobuf::descriptor::FileDescriptorSet::parse_from_bytes(DESCRIPTOR_SET)
            .expect("build.rs wrote a valid descriptor set");
        FileDescriptor::new_dynamic_fds(set.file, &[])
            .expect("the descriptor set is self-contained")
    })
}

/// The descriptor of a message by its full name (`api.apps.v1.Deployment`).
pub fn descriptor(full_name: &str) -> Option<MessageDescriptor> {
    // Descriptors name messages absolutely, with a leading dot.
    let dotted = format!(".{full_name}");
    descriptors()
        .iter()
        .find_map(|f| f.message_by_full_name(&dotted))
}

/// How a Go field is declared, as far as `encoding/json` cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decl {
    /// `*T` with `omitempty`: written when set, whatever it holds (an explicit `0` or `false`
    /// means something), left out when nil.
    Pointer,
    /// `*T` without `omitempty`: `null` when nil.
    PointerNoOmit,
    /// `T` with `omitempty`: left out when empty (`0`, `false`, `""`, an empty list or map);
    /// a struct is never empty to Go, so it is always written.
    OmitEmpty,
    /// `T` without `omitempty`: always written, its zero value included.
    Value,
}

/// A type whose Go form writes its own JSON instead of a struct's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// `metav1.Time`, `metav1.MicroTime`: an RFC 3339 string, `null` when zero.
    Time,
    /// `resource.Quantity`: a string, `"0"` when zero.
    Quantity,
    /// `intstr.IntOrString`: a number or a string, `0` when zero.
    IntOrString,
    /// `metav1.Duration`: Go's duration string, `"0s"` when zero.
    Duration,
    /// `metav1.GroupVersion`: `"group/version"`, `""` when zero.
    GroupVersion,
    /// Raw JSON (`runtime.RawExtension`, `runtime.Unknown`, `metav1.FieldsV1`) or a named list
    /// (`metav1.Verbs`): the value as it is, `null` when nil.
    Raw,
}

impl Special {
    /// What Go writes for the zero value.
    pub fn zero(self) -> &'static str {
        match self {
            Special::Time | Special::Raw => "null",
            Special::Quantity => "\"0\"",
            Special::IntOrString => "0",
            Special::Duration => "\"0s\"",
            Special::GroupVersion => "\"\"",
        }
    }
}

/// What a field holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    String,
    /// A number.
    Number,
    /// A boolean.
    Bool,
    /// `[]byte`: base64 in JSON.
    Bytes,
    /// A struct (or a [`Special`] type), by message name.
    Message(String),
    /// A list of what the inner kind says.
    List(Box<Kind>),
    /// A map with string keys, of what the inner kind says.
    Map(Box<Kind>),
}

/// One field of a message.
#[derive(Clone, Debug)]
pub struct Field {
    /// Its JSON name.
    pub name: String,
    /// What it holds.
    pub kind: Kind,
    /// How Go declares it.
    pub decl: Decl,
    /// An embedded struct with `json:",inline"` (`IngressRule`'s `IngressRuleValue`, `Probe`'s
    /// `ProbeHandler`): its fields are the outer object's in JSON.
    pub inline: bool,
}

/// One message: a Go struct, or a [`Special`] type.
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// The full name (`api.core.v1.PodSpec`).
    pub name: String,
    /// The fields in Go struct order.
    pub fields: Vec<Field>,
    /// Where the struct embeds `metav1.TypeMeta` inline (`kind`, `apiVersion`): before the
    /// field at this index (0 for every object kind), or `None` if it does not.
    pub type_meta: Option<usize>,
    /// Set for types with their own JSON form.
    pub special: Option<Special>,
}

impl Message {
    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Every message, by full name.
pub struct Schema {
    messages: HashMap<String, Message>,
}

/// What the facts table says of one field.
#[derive(Debug, Default)]
struct Facts {
    decls: HashMap<(String, String), Decl>,
    /// Fields whose Go type is a named slice or map wrapped in a proto message (`Verbs`).
    plain: HashMap<(String, String), Kind>,
    specials: HashMap<String, Special>,
    type_meta: HashMap<String, usize>,
    /// Embedded structs with `json:",inline"`, as the comments of the facts say.
    inline: std::collections::HashSet<(String, String)>,
}

/// Which [`Special`] a type with its own `MarshalJSON` is.
fn special_of(message: &str) -> Special {
    let short = message.rsplit('.').next().unwrap_or(message);
    match short {
        "Time" | "MicroTime" => Special::Time,
        "Quantity" | "QuantityValue" => Special::Quantity,
        "IntOrString" => Special::IntOrString,
        "Duration" => Special::Duration,
        "GroupVersion" => Special::GroupVersion,
        _ => Special::Raw,
    }
}

fn parse_facts(text: &str) -> Facts {
    let mut facts = Facts::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("#go-only ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [message, "-", "inline", type_meta, ..] = words.as_slice()
                && type_meta.ends_with("TypeMeta")
            {
                let index = seen.get(*message).copied().unwrap_or(0);
                facts.type_meta.insert((*message).to_owned(), index);
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (body, comment) = line.split_once(" # ").unwrap_or((line, ""));
        let words: Vec<&str> = body.split_whitespace().collect();
        match words.as_slice() {
            [message, "-", "custom", ..] => {
                facts
                    .specials
                    .insert((*message).to_owned(), special_of(message));
            }
            [message, field, class, go_type, ..] => {
                let decl = match *class {
                    "pointer" => Decl::Pointer,
                    "pointer-noomit" => Decl::PointerNoOmit,
                    "omitempty" => Decl::OmitEmpty,
                    "value" => Decl::Value,
                    _ => continue,
                };
                let key = ((*message).to_owned(), (*field).to_owned());
                if comment.contains("json:\",inline\"") {
                    facts.inline.insert(key.clone());
                }
                if go_type.ends_with("=slice") {
                    facts
                        .plain
                        .insert(key.clone(), Kind::List(Box::new(Kind::String)));
                } else if go_type.ends_with("=map") && !go_type.starts_with("ResourceList") {
                    facts
                        .plain
                        .insert(key.clone(), Kind::Map(Box::new(Kind::String)));
                }
                facts.decls.insert(key, decl);
                *seen.entry((*message).to_owned()).or_default() += 1;
            }
            _ => {}
        }
    }
    facts
}

fn kind_of(ty: &RuntimeType) -> Kind {
    match ty {
        RuntimeType::VecU8 => Kind::Bytes,
        RuntimeType::Message(m) => Kind::Message(m.full_name().to_owned()),
        RuntimeType::String => Kind::String,
        RuntimeType::Bool => Kind::Bool,
        _ => Kind::Number,
    }
}

/// The protobuf package of a Kubernetes API group's version (`apps`, `v1` -> `api.apps.v1`;
/// `rbac.authorization.k8s.io` -> `api.rbac.v1`); none for a group that is not Kubernetes' own
/// (`apps.example.com`, a custom resource's), whose types are not Go's.
pub fn package(group: &str, version: &str) -> Option<String> {
    let short = match group {
        "" => "core",
        _ if !group.contains('.') || group.ends_with(".k8s.io") => {
            group.split('.').next().unwrap_or(group)
        }
        _ => return None,
    };
    Some(format!("api.{short}.{version}"))
}

impl Schema {
    fn build() -> Schema {
        let facts = parse_facts(FACTS);
        let mut messages = HashMap::new();
        for file in descriptors() {
            for descriptor in file.messages() {
                add(&descriptor, &facts, &mut messages);
            }
        }
        Schema { messages }
    }

    /// The message named `full_name`.
    pub fn message(&self, full_name: &str) -> Option<&Message> {
        self.messages.get(full_name)
    }

    /// The message of an object of `apiVersion` and `kind` (`apps/v1`, `Deployment`), lists
    /// (`DeploymentList`) and the meta kinds (`Status`, `APIResourceList`, ...) included.
    pub fn for_object(&self, api_version: &str, kind: &str) -> Option<&Message> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        if group == "meta.k8s.io" {
            return self.message(&format!("apimachinery.pkg.apis.meta.v1.{kind}"));
        }
        package(group, version)
            .and_then(|package| self.message(&format!("{package}.{kind}")))
            .or_else(|| {
                (group.is_empty() || group == "meta.k8s.io")
                    .then(|| self.message(&format!("apimachinery.pkg.apis.meta.v1.{kind}")))
                    .flatten()
            })
    }

    /// Every message (for checks that the facts cover them).
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.messages.values()
    }
}

fn add(descriptor: &MessageDescriptor, facts: &Facts, messages: &mut HashMap<String, Message>) {
    for nested in descriptor.nested_messages() {
        if !nested.is_map_entry() {
            add(&nested, facts, messages);
        }
    }
    let name = descriptor.full_name().to_owned();
    let fields =
        descriptor
            .fields()
            .map(|f| {
                let key = (name.clone(), f.name().to_owned());
                let kind = facts.plain.get(&key).cloned().unwrap_or_else(|| {
                    match f.runtime_field_type() {
                        RuntimeFieldType::Singular(t) => kind_of(&t),
                        RuntimeFieldType::Repeated(t) => Kind::List(Box::new(kind_of(&t))),
                        RuntimeFieldType::Map(_, v) => Kind::Map(Box::new(kind_of(&v))),
                    }
                });
                Field {
                    name: f.name().to_owned(),
                    kind,
                    // A field the facts do not know is written as it is when present and left
                    // out when absent.
                    decl: facts.decls.get(&key).copied().unwrap_or(Decl::Pointer),
                    inline: facts.inline.contains(&key),
                }
            })
            .collect();
    messages.insert(
        name.clone(),
        Message {
            type_meta: facts.type_meta.get(&name).copied(),
            special: facts.specials.get(&name).copied(),
            name,
            fields,
        },
    );
}

/// The schema, built at first use.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(Schema::build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_every_message_has_its_go_facts() {
        let facts = parse_facts(FACTS);
        let mut missing = Vec::new();
        for message in schema().messages() {
            if message.special.is_some() {
                continue;
            }
            for field in &message.fields {
                if !facts
                    .decls
                    .contains_key(&(message.name.clone(), field.name.clone()))
                {
                    missing.push(format!("{} {}", message.name, field.name));
                }
            }
        }
        missing.sort();
        assert!(
            missing.is_empty(),
            "gofields.txt has no line for {} fields: {:?}",
            missing.len(),
            &missing[..missing.len().min(20)]
        );
    }

    #[test]
    fn objects_find_their_messages() {
        let s = schema();
        let deployment = s.for_object("apps/v1", "Deployment").expect("deployment");
        assert_eq!(deployment.name, "api.apps.v1.Deployment");
        assert_eq!(deployment.type_meta, Some(0));
        let names: Vec<&str> = deployment.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["metadata", "spec", "status"]);
        assert_eq!(
            s.for_object("v1", "Status").map(|m| m.name.as_str()),
            Some("apimachinery.pkg.apis.meta.v1.Status")
        );
        assert_eq!(
            s.for_object("v1", "PodList").map(|m| m.name.as_str()),
            Some("api.core.v1.PodList")
        );
        assert_eq!(
            s.for_object("events.k8s.io/v1", "Event")
                .map(|m| m.name.as_str()),
            Some("api.events.v1.Event")
        );
        assert_eq!(
            s.for_object("coordination.k8s.io/v1", "Lease")
                .map(|m| m.name.as_str()),
            Some("api.coordination.v1.Lease")
        );
        // A custom resource's group is not Kubernetes' own, whatever its first label.
        assert!(s.for_object("apps.example.com/v1", "Deployment").is_none());
        let status = s.message("api.apps.v1.DeploymentStatus").unwrap();
        assert_eq!(
            status.field("unavailableReplicas").map(|f| f.decl),
            Some(Decl::OmitEmpty)
        );
        let spec = s.message("api.apps.v1.DeploymentSpec").unwrap();
        assert_eq!(spec.field("replicas").map(|f| f.decl), Some(Decl::Pointer));
        let secret = s.message("api.core.v1.Secret").unwrap();
        assert_eq!(
            secret.field("data").map(|f| f.kind.clone()),
            Some(Kind::Map(Box::new(Kind::Bytes)))
        );
        assert_eq!(
            s.message("apimachinery.pkg.apis.meta.v1.Time")
                .and_then(|m| m.special),
            Some(Special::Time)
        );
    }
}

/// Go's `strconv.Quote`, enough for error messages.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `time.ParseDuration`, in nanoseconds (negative ones too), with its error words
/// (`time: invalid duration "x"`, `time: missing unit in duration "1"`).
pub fn parse_go_duration(text: &str) -> Result<i128, String> {
    let quoted = go_quote(text);
    let invalid = || format!("time: invalid duration {quoted}");
    let mut s = text;
    let negative = s.starts_with('-');
    s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !s.is_empty() {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (whole, rest) = s.split_at(digits);
        let (fraction, rest) = match rest.strip_prefix('.') {
            Some(r) => {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                r.split_at(n)
            }
            None => ("", rest),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let (unit, rest) = rest.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {quoted}"));
        }
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {quoted}",
                    go_quote(unit)
                ));
            }
        };
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(invalid)?;
        let mut place = scale;
        for d in fraction.bytes().take(30) {
            place /= 10;
            value += i128::from(d - b'0') * place;
        }
        total += value;
        if total > i128::from(i64::MAX) + i128::from(negative) {
            return Err(invalid());
        }
        s = rest;
    }
    Ok(if negative { -total } else { total })
}

/// A duration as Go's `time.Duration.String` writes it, which is how `metav1.Duration` goes on
/// the wire (`15.012s`, `1m30s`, `1h0m0s`, `500ms`, `0s`).
pub fn go_duration(d: std::time::Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let trimmed = |whole: u128, frac: u128, digits: usize| {
        let frac = format!("{frac:0digits$}");
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{frac}")
        }
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trimmed(nanos / 1_000, nanos % 1_000, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trimmed(nanos / 1_000_000, nanos % 1_000_000, 6));
    }
    let secs = nanos / 1_000_000_000;
    let seconds = format!("{}s", trimmed(secs % 60, nanos % 1_000_000_000, 9));
    match (secs / 3600, secs / 60 % 60) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod duration_tests {
    use std::time::Duration;

    #[test]
    fn durations_read_as_gos() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(15_012), "15.012s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_secs(20), "20s"),
        ] {
            assert_eq!(super::go_duration(d), text);
        }
    }
}
