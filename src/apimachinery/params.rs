//! Query parameters as kube-apiserver converts them into its option structs
//! (`ListOptions`, `PodLogOptions`, `PatchOptions`, ...): the first value of a repeated
//! parameter counts, and a boolean is false only when absent, `0`, or `false` in any case
//! (`Convert_Slice_string_To_bool` in apimachinery's `runtime/conversion.go`); anything else,
//! the empty string and the Python client's `True` included, is true.

use std::collections::HashMap;

/// The query parameters of a request: each name with its first value.
pub type Params = HashMap<String, String>;

/// Parses a query string (`a=1&b=x%20y`), keeping the first value of each name, as Go's
/// `url.Values.Get` and the conversion functions read them.
pub fn parse(query: &str) -> Params {
    let mut params = Params::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        params
            .entry(key.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
}

/// A boolean parameter's value as kube-apiserver reads it (`None`: the parameter is absent).
pub fn truth(value: Option<&str>) -> bool {
    match value {
        None => false,
        Some(v) => !(v == "0" || v.eq_ignore_ascii_case("false")),
    }
}

/// The boolean parameter `name` of `params`.
pub fn flag(params: &Params, name: &str) -> bool {
    truth(params.get(name).map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_convert_as_kube_apiserver_converts_them() {
        let cases = [
            (None, false),
            (Some("0"), false),
            (Some("false"), false),
            (Some("False"), false),
            (Some("FALSE"), false),
            (Some("fAlSe"), false),
            (Some("1"), true),
            (Some("true"), true),
            (Some("True"), true),
            (Some("TRUE"), true),
            (Some(""), true),
            (Some("yes"), true),
            (Some("no"), true),
            (Some("00"), true),
        ];
        for (value, expected) in cases {
            assert_eq!(truth(value), expected, "{value:?}");
        }
    }

    #[test]
    fn the_first_of_repeated_values_counts() {
        let params = parse("watch=false&watch=true&labelSelector=a%3Db&empty=");
        assert!(!flag(&params, "watch"));
        assert_eq!(params["labelSelector"], "a=b");
        assert!(flag(&params, "empty"));
        assert!(!flag(&params, "absent"));
        assert!(flag(&parse("watch=True"), "watch"));
    }
}
