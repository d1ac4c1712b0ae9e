//! `[]byte` fields (a Secret's `data`, a ConfigMap's `binaryData`, ...) as Go reads them: JSON
//! carries them in base64, and Go's decoder (`encoding/base64.StdEncoding`, which
//! kube-apiserver's JSON decoding uses for every `[]byte`) skips `\r` and `\n` anywhere, so a
//! value wrapped at 76 columns (the TLS Secret of the Kubernetes docs) is accepted. Padding is
//! required, and a bad symbol is reported in Go's words: `illegal base64 data at input byte N`.
//! Decoded values are written back in canonical base64, as Go writes them out.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde_json::Value;

use super::gotypes::{Kind, Message, schema};

/// Go's `StdEncoding`, which is not strict: bits after the last symbol need not be zero.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// A base64 value that Go would not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("illegal base64 data at input byte {0}")]
pub struct IllegalBase64(pub usize);

/// Decodes base64 as Go's `base64.StdEncoding.DecodeString` does.
pub fn decode(text: &str) -> Result<Vec<u8>, IllegalBase64> {
    if let Some(at) = go_error(text.as_bytes()) {
        return Err(IllegalBase64(at));
    }
    let kept: Vec<u8> = text.bytes().filter(|&b| b != b'\r' && b != b'\n').collect();
    // Whatever Go accepts, the crate (configured as Go) decodes; the fallback is never taken.
    GO_STD.decode(&kept).map_err(|_| IllegalBase64(text.len()))
}

/// Where Go's decoder stops with `CorruptInputError`, if it does: its `decodeQuantum` scan
/// (groups of four symbols, `\r` and `\n` skipped anywhere, `=` padding only in the last group
/// and nothing but newlines after it), with its offsets, which count the skipped newlines. The
/// crate decodes; only Go's offsets need Go's scan (no crate reports them).
fn go_error(src: &[u8]) -> Option<usize> {
    let symbol = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let newline = |b: u8| b == b'\r' || b == b'\n';
    let skip_newlines = |mut si: usize| {
        while si < src.len() && newline(src[si]) {
            si += 1;
        }
        si
    };
    let mut si = 0;
    while si < src.len() {
        let mut j = 0;
        while j < 4 {
            if si == src.len() {
                // The input ended inside a group (padding is required).
                return (j > 0).then(|| si - j);
            }
            let b = src[si];
            si += 1;
            if symbol(b) {
                j += 1;
                continue;
            }
            if newline(b) {
                continue;
            }
            if b != b'=' || j < 2 {
                return Some(si - 1);
            }
            if j == 2 {
                // `==` is needed: the first is read.
                si = skip_newlines(si);
                if si == src.len() {
                    return Some(src.len());
                }
                if src[si] != b'=' {
                    return Some(si - 1);
                }
                si += 1;
            }
            si = skip_newlines(si);
            // Anything after the padding is trailing garbage.
            return (si < src.len()).then_some(si);
        }
    }
    None
}

/// Rewrites every `[]byte` field of an object of a known kind into canonical base64, as Go
/// would after decoding it; the first value Go would refuse is an error.
pub fn canonicalize(object: &mut Value) -> Result<(), IllegalBase64> {
    let Some(message) = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .zip(object.get("kind").and_then(Value::as_str))
        .and_then(|(v, k)| schema().for_object(v, k))
    else {
        return Ok(());
    };
    walk_message(object, message)
}

fn walk_message(value: &mut Value, message: &Message) -> Result<(), IllegalBase64> {
    if message.special.is_some() {
        return Ok(());
    }
    let Some(map) = value.as_object_mut() else {
        return Ok(());
    };
    for field in &message.fields {
        if let Some(v) = map.get_mut(&field.name) {
            walk(v, &field.kind)?;
        }
    }
    Ok(())
}

fn walk(value: &mut Value, kind: &Kind) -> Result<(), IllegalBase64> {
    match (kind, value) {
        (Kind::Bytes, Value::String(text)) => {
            let canonical = STANDARD.encode(decode(text)?);
            if *text != canonical {
                *text = canonical;
            }
        }
        (Kind::Message(name), value) => {
            if let Some(m) = schema().message(name) {
                walk_message(value, m)?;
            }
        }
        (Kind::List(inner), Value::Array(items)) => {
            for item in items {
                walk(item, inner)?;
            }
        }
        (Kind::Map(inner), Value::Object(map)) => {
            for item in map.values_mut() {
                walk(item, inner)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wrapped_base64_decodes_as_in_go() {
        assert_eq!(decode("aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(decode("aGVs\r\nbG8=\n").unwrap(), b"hello");
        assert_eq!(decode("").unwrap(), b"");
        // Go's StdEncoding is not strict about the bits after the last symbol.
        assert_eq!(decode("aGVsbG9=").unwrap(), b"hello");
        assert_eq!(decode("aGV*bG8="), Err(IllegalBase64(3)));
        assert_eq!(decode("aG\nV*bG8="), Err(IllegalBase64(4)));
        assert_eq!(decode("aGVsbG8"), Err(IllegalBase64(4)));
        // Go's offsets for padding gone wrong.
        assert_eq!(decode("YQ="), Err(IllegalBase64(3)));
        assert_eq!(decode("YQ=\n"), Err(IllegalBase64(4)));
        assert_eq!(decode("aGVsbG8=aGVs"), Err(IllegalBase64(8)));
        assert_eq!(decode("aGVsbG8=\n\n"), Ok(b"hello".to_vec()));
        assert_eq!(decode("Y==="), Err(IllegalBase64(1)));
        assert_eq!(decode("YQ=x"), Err(IllegalBase64(2)));
        assert_eq!(decode("\n"), Ok(Vec::new()));
    }

    #[test]
    fn every_bytes_field_of_an_object_is_made_canonical() {
        let pem = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUMyRENDQWNDZ0F3SUJBZ0lCQURBTkJna3Foa2lH\nOXcwQkFRc0ZBREFWTVJNd0VRWURWUVFERXdwcmRXSmw=";
        let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"},
            "data": {"tls.crt": pem, "tls.key": "a2V5\n"}});
        canonicalize(&mut secret).unwrap();
        assert!(!secret["data"]["tls.crt"].as_str().unwrap().contains('\n'));
        assert_eq!(secret["data"]["tls.key"], "a2V5");
        let mut bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "binaryData": {"x": "!!!!"}});
        assert_eq!(canonicalize(&mut bad), Err(IllegalBase64(0)));
        // Strings that are not []byte are left alone.
        let mut config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"x": "not\nbase64"}});
        canonicalize(&mut config).unwrap();
        assert_eq!(config["data"]["x"], "not\nbase64");
    }
}
