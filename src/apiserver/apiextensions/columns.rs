//! A custom resource's table columns, as apiextensions-apiserver's `tableconvertor` makes
//! them: `Name`, then each of the version's `additionalPrinterColumns` (a version without any
//! gets `Age`, from `.metadata.creationTimestamp`), each cell the first value its JSONPath
//! ([`crate::apimachinery::jsonpath`]) reaches, formatted by the column's type: `string` as
//! the JSONPath template prints it (JSON for lists and maps), `integer` and `number` as
//! numbers, `boolean`, and `date` as an age (`5m`); a missing or mistyped value is `null`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;
use serde_json::{Value, json};

use crate::apimachinery::jsonpath::{JsonPath, JsonPathError};
use crate::apimachinery::printers::human_duration;

/// `metav1.ObjectMeta`'s documentation of `name`, the `Name` column's description.
const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `metav1.ObjectMeta`'s documentation of `creationTimestamp`, the default `Age` column's.
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One printer column, compiled.
#[derive(Clone, Debug)]
pub(crate) struct Column {
    definition: CustomResourceColumnDefinition,
    path: JsonPath,
}

/// A version's printer columns: its `additionalPrinterColumns`, or the `Age` column when it
/// has none (`serveDefaultColumnsIfEmpty`). A JSONPath outside the supported subset is an
/// error (`unrecognized column definition`), as upstream refuses to serve the version.
pub(crate) fn columns(
    defined: Option<&[CustomResourceColumnDefinition]>,
) -> Result<Vec<Column>, JsonPathError> {
    let defaults = [CustomResourceColumnDefinition {
        name: "Age".into(),
        type_: "date".into(),
        description: Some(AGE_DESCRIPTION.into()),
        json_path: ".metadata.creationTimestamp".into(),
        ..Default::default()
    }];
    let defined = match defined {
        Some(d) if !d.is_empty() => d,
        _ => &defaults,
    };
    defined
        .iter()
        .map(|d| {
            Ok(Column {
                path: JsonPath::parse(&d.json_path)?,
                definition: d.clone(),
            })
        })
        .collect()
}

/// The Table's `columnDefinitions`: `Name`, then each column.
pub(crate) fn definitions(columns: &[Column]) -> Vec<Value> {
    let mut out = vec![json!({
        "name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0,
    })];
    for c in columns {
        let d = &c.definition;
        let description = match d.description.as_deref() {
            Some(text) if !text.is_empty() => text.to_owned(),
            _ => format!(
                "Custom resource definition column (in JSONPath format): {}",
                d.json_path
            ),
        };
        out.push(json!({
            "name": d.name,
            "type": d.type_,
            "format": d.format.clone().unwrap_or_default(),
            "description": description,
            "priority": d.priority.unwrap_or(0),
        }));
    }
    out
}

/// One row's cells for `object`: its name, then each column's value; `now` is when the
/// table is made (ages count from it).
pub(crate) fn cells(columns: &[Column], object: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut out = vec![json!(
        object["metadata"]["name"].as_str().unwrap_or_default()
    )];
    for c in columns {
        let cell = match c.path.first(object) {
            None | Some(Value::Null) => Value::Null,
            Some(v) => cell(&c.definition.type_, v, now),
        };
        out.push(cell);
    }
    out
}

/// `cellForJSONValue`, and the JSONPath template's printing for `string` columns.
fn cell(column_type: &str, value: &Value, now: jiff::Timestamp) -> Value {
    match (column_type, value) {
        ("string", Value::String(s)) => json!(s),
        ("string", Value::Number(n)) => json!(super::schema::go_number(n)),
        ("string", Value::Bool(b)) => json!(b.to_string()),
        ("string", other) => {
            let mut out = Vec::new();
            crate::apimachinery::wire::generic(other, &mut out);
            json!(String::from_utf8_lossy(&out))
        }
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => json!(i),
            None => json!(n.as_f64().unwrap_or_default().trunc() as i64),
        },
        ("number", Value::Number(n)) => json!(n.as_f64().unwrap_or_default()),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(s)) => match s.parse::<jiff::Timestamp>() {
            Ok(t) => json!(human_duration(now.as_second() - t.as_second())),
            Err(_) => json!("<invalid>"),
        },
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, path: &str) -> CustomResourceColumnDefinition {
        CustomResourceColumnDefinition {
            name: name.into(),
            type_: ty.into(),
            json_path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn cells_are_typed_as_their_columns() {
        let defined = [
            col("Spec", "string", ".spec.cronSpec"),
            col("Replicas", "integer", ".spec.replicas"),
            col("Ratio", "number", ".spec.replicas"),
            col("Ready", "boolean", ".status.ready"),
            col("Started", "date", ".status.started"),
            col("Bad", "date", ".spec.cronSpec"),
            col("Missing", "string", ".spec.nothing"),
            col("Wrong", "integer", ".spec.cronSpec"),
            col("Tags", "string", ".spec.tags"),
            col("Count", "string", ".spec.replicas"),
            col("Type", "string", ".status.conditions[0].type"),
        ];
        let columns = columns(Some(&defined)).expect("columns");
        let object = json!({
            "metadata": {"name": "c"},
            "spec": {"cronSpec": "* * * * */5", "replicas": 3, "tags": ["a", "b"]},
            "status": {"ready": true, "started": "2024-01-01T00:00:00Z", "conditions": [{"type": "Ready"}]},
        });
        let now: jiff::Timestamp = "2024-01-01T00:05:00Z".parse().expect("time");
        assert_eq!(
            cells(&columns, &object, now),
            vec![
                json!("c"),
                json!("* * * * */5"),
                json!(3),
                json!(3.0),
                json!(true),
                json!("5m"),
                json!("<invalid>"),
                Value::Null,
                Value::Null,
                json!("[\"a\",\"b\"]"),
                json!("3"),
                json!("Ready"),
            ]
        );
        let defs = definitions(&columns);
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        assert_eq!(
            defs[1],
            json!({"name": "Spec", "type": "string", "format": "",
            "description": "Custom resource definition column (in JSONPath format): .spec.cronSpec", "priority": 0})
        );
    }

    #[test]
    fn a_version_without_columns_shows_its_age() {
        let columns = columns(None).expect("columns");
        let defs = definitions(&columns);
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[1]["name"], "Age");
        assert_eq!(defs[1]["type"], "date");
        let object =
            json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        let now: jiff::Timestamp = "2024-01-03T00:00:00Z".parse().expect("time");
        assert_eq!(cells(&columns, &object, now), vec![json!("x"), json!("2d")]);
    }
}
