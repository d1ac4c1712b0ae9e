//! Request bodies before they are decoded: how deeply they nest, measured by one linear scan
//! that never recurses, so a body of brackets is refused before a parser spends time on it.
//!
//! The decoders would refuse a deep body too (serde_json and serde_yaml stop at 128 levels),
//! but libyaml scans every flow level's pending simple key at each token first: a 200 kB
//! `[[[[...` sent as YAML cost 27 CPU-seconds before the refusal. kube-apiserver's decoders
//! stop at 10,000 levels (Go's `encoding/json` and go-yaml: `exceeded max depth`); ours stop at
//! the 128 the Rust decoders allow, which no Kubernetes object comes near.

/// The deepest nesting of brackets a request body may have.
pub(crate) const MAX_DEPTH: usize = 128;

/// Whether `body` (JSON, or YAML's flow style) nests deeper than `limit`. Brackets
/// inside quoted strings and comments do not count; a quote opens a string only where a value
/// may start (after a space, an indicator or at the start), as in YAML, where `don't` is a
/// plain word. Block-style YAML (nesting by indentation or `- - -`) is not measured: libyaml
/// scans it in linear time and serde_yaml refuses it past 128 levels.
pub(crate) fn too_deep(body: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    let mut previous = b'\n';
    while i < body.len() {
        let c = body[i];
        match c {
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'#' if matches!(previous, b' ' | b'\t' | b'\n' | b'\r') => {
                while i < body.len() && body[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' if value_may_start(previous) => {
                i += 1;
                while i < body.len() {
                    match body[i] {
                        b'\\' if c == b'"' => i += 1,
                        b'\'' if c == b'\'' && body.get(i + 1) == Some(&b'\'') => i += 1,
                        q if q == c => break,
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        previous = body.get(i).copied().unwrap_or(b' ');
        i += 1;
    }
    false
}

fn value_may_start(previous: u8) -> bool {
    matches!(
        previous,
        b' ' | b'\t' | b'\n' | b'\r' | b'[' | b'{' | b',' | b':' | b'-' | b'?'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_measured_without_parsing() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!too_deep(deep(128).as_bytes(), MAX_DEPTH));
        assert!(too_deep(deep(129).as_bytes(), MAX_DEPTH));
        // 200 kB of brackets: refused at the 129th.
        assert!(too_deep("[".repeat(200_000).as_bytes(), MAX_DEPTH));
        assert!(too_deep(
            format!("a: {}", "{\"x\": ".repeat(200)).as_bytes(),
            MAX_DEPTH
        ));
        // Brackets in strings and comments do not count; `don't` opens no string.
        let quoted = format!("{{\"a\": \"{}\", \"b\": 1}}", "[".repeat(500));
        assert!(!too_deep(quoted.as_bytes(), MAX_DEPTH));
        let yaml = format!(
            "a: '{}'\nb: don't\n# {}\nc: [1, {{d: 2}}]\n",
            "[".repeat(500),
            "{".repeat(500)
        );
        assert!(!too_deep(yaml.as_bytes(), MAX_DEPTH));
        let hidden = format!("a: don't\nb: {}", "[".repeat(500));
        assert!(too_deep(hidden.as_bytes(), MAX_DEPTH));
        let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: i\n    env:\n    - {name: A, value: \"[\"}\n";
        assert!(!too_deep(pod.as_bytes(), MAX_DEPTH));
    }
}
