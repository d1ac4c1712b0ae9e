//! Resource quantities as Kubernetes writes them (`500m`, `2`, `1.5`, `128Mi`, `1G`, `1e3`),
//! read into the integer units the scheduler adds up: millicores for CPU, bytes for the rest.

/// What went wrong reading a quantity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
)]
pub struct QuantityError(pub String);

/// A quantity in thousandths of its unit (so `500m` is 500 and `2` is 2000), rounded up as
/// Kubernetes rounds requests.
pub fn parse_milli(text: &str) -> Result<i128, QuantityError> {
    let bad = || QuantityError(text.to_owned());
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale: f64 = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    Ok((value * scale * 1000.0).ceil() as i128)
}

/// CPU in millicores.
pub fn cpu_millis(text: &str) -> Result<i64, QuantityError> {
    Ok(parse_milli(text)? as i64)
}

/// Memory (or any byte-counted resource) in bytes, rounded up.
pub fn bytes(text: &str) -> Result<i64, QuantityError> {
    let milli = parse_milli(text)?;
    Ok(((milli + 999) / 1000) as i64)
}

/// An amount of `resource` in the units the scheduler adds up: millicores for `cpu`, whole
/// units (bytes, pods) for the rest; an unreadable quantity counts as zero.
pub fn amount(resource: &str, text: &str) -> i64 {
    let parsed = if resource == "cpu" {
        cpu_millis(text)
    } else {
        bytes(text)
    };
    parsed.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for (text, cpu) in [
            ("500m", 500),
            ("2", 2000),
            ("1.5", 1500),
            ("0.1", 100),
            ("100u", 1),
            ("1e3", 1_000_000),
        ] {
            assert_eq!(cpu_millis(text).unwrap(), cpu, "{text}");
        }
        for (text, b) in [
            ("128Mi", 128 << 20),
            ("1Gi", 1 << 30),
            ("1G", 1_000_000_000),
            ("8Gi", 8 << 30),
            ("100", 100),
            ("1k", 1000),
        ] {
            assert_eq!(bytes(text).unwrap(), b, "{text}");
        }
        for bad in ["", "Mi", "12Q", "abc"] {
            assert!(parse_milli(bad).is_err(), "{bad}");
        }
    }
}
