//! Defaulting: filling a custom resource's absent fields from its schema's `default`s, as
//! apiextensions-apiserver's `defaulting.Default` does when an object is decoded: a property
//! missing from its object, or `null` where the schema is not `nullable`, gets a copy of its
//! default; `additionalProperties` values and array items that are `null` too; and a default
//! just set is itself defaulted further down. Defaults were checked when the schema compiled
//! (they validate and carry no field pruning would drop), so nothing needs pruning after.

use serde_json::Value;

use super::schema::{Schema, Structural};

impl Structural {
    /// Applies the schema's defaults to `object` (a whole custom resource) in place.
    pub(crate) fn default(&self, object: &mut Value) {
        default_node(object, self.root());
    }
}

fn non_nullable_null(value: &Value, s: &Schema) -> bool {
    value.is_null() && !s.nullable
}

fn default_node(value: &mut Value, s: &Schema) {
    match value {
        Value::Object(map) => {
            for (k, p) in &s.properties {
                let Some(default) = &p.default else { continue };
                match map.get(k) {
                    Some(v) if !non_nullable_null(v, p) => {}
                    _ => {
                        map.insert(k.clone(), default.clone());
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(p) = s.properties.get(k) {
                    default_node(v, p);
                } else if let Some(a) = s.additional_schema() {
                    if non_nullable_null(v, a)
                        && let Some(default) = &a.default
                    {
                        *v = default.clone();
                    }
                    default_node(v, a);
                }
            }
        }
        Value::Array(items) => {
            let Some(item) = s.items.as_deref() else {
                return;
            };
            for v in items.iter_mut() {
                if non_nullable_null(v, item)
                    && let Some(default) = &item.default
                {
                    *v = default.clone();
                }
                default_node(v, item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::apiextensions::schema::tests::props;

    #[test]
    fn absent_and_non_nullable_null_fields_get_defaults() {
        let s = Structural::new(&props(json!({"type": "object", "properties": {
            "spec": {"type": "object", "default": {}, "properties": {
                "replicas": {"type": "integer", "default": 1},
                "mode": {"type": "string", "default": "a"},
                "maybe": {"type": "string", "nullable": true, "default": "x"},
                "nested": {"type": "object", "default": {}, "properties": {"deep": {"type": "boolean", "default": true}}},
                "ports": {"type": "array", "items": {"type": "object", "default": {}, "properties": {"protocol": {"type": "string", "default": "TCP"}}}},
                "env": {"type": "object", "additionalProperties": {"type": "string", "default": "unset"}},
            }},
        }})))
        .expect("structural");
        let mut object = json!({"metadata": {"name": "x"}});
        s.default(&mut object);
        assert_eq!(
            object["spec"],
            json!({"replicas": 1, "mode": "a", "maybe": "x", "nested": {"deep": true}})
        );
        let mut object = json!({"spec": {"replicas": 3, "mode": null, "maybe": null,
            "ports": [{"protocol": "UDP"}, {}, null], "env": {"A": null, "B": "b"}}});
        s.default(&mut object);
        assert_eq!(
            object["spec"],
            json!({"replicas": 3, "mode": "a", "maybe": null, "nested": {"deep": true},
                "ports": [{"protocol": "UDP"}, {"protocol": "TCP"}, {"protocol": "TCP"}],
                "env": {"A": "unset", "B": "b"}})
        );
    }
}
