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
    // Where each kept symbol was in the input, so an error names the input's offset.
    let mut kept = Vec::with_capacity(text.len());
    let mut offsets = Vec::with_capacity(text.len());
    for (i, b) in text.bytes().enumerate() {
        if b != b'\r' && b != b'\n' {
            kept.push(b);
            offsets.push(i);
        }
    }
    GO_STD.decode(&kept).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(i, _)
            | base64::DecodeError::InvalidLastSymbol(i, _) => {
                offsets.get(i).copied().unwrap_or(text.len())
            }
            // An unfinished last group of four (padding missing): Go reports where it began,
            // counted back from the end of the input.
            _ if kept.len() % 4 != 0 => text.len() - kept.len() % 4,
            // A misplaced `=`: where the padding starts.
            _ => text.find('=').unwrap_or(text.len()),
        };
        IllegalBase64(at)
    })
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
