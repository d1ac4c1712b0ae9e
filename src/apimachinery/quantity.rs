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
    // Rounded up, but not past a whole number that floating point only misses by its error
    // (`3800m` is 3800.0000000000005 thousandths in f64).
    let milli = value * scale * 1000.0;
    let nearest = milli.round();
    let milli = if (milli - nearest).abs() < 1e-6 * nearest.abs().max(1.0) {
        nearest
    } else {
        milli.ceil()
    };
    Ok(milli as i128)
}

/// A count of billionths (`nanocores`) written as Go's `resource.Quantity` writes a
/// `DecimalSI` quantity of scale -9 in canonical form: the largest of `n`, `u`, `m` or none that
/// keeps it whole (`400000000` nanocores is `400m`, `17483094` is `17483094n`, `0` is `0`).
pub fn format_nano(nanos: u64) -> String {
    if nanos == 0 {
        return "0".into();
    }
    for (divisor, suffix) in [(1_000_000_000, ""), (1_000_000, "m"), (1_000, "u")] {
        if nanos.is_multiple_of(divisor) {
            return format!("{}{suffix}", nanos / divisor);
        }
    }
    format!("{nanos}n")
}

/// Bytes written as a `BinarySI` quantity in canonical form: the largest power-of-1024 suffix
/// that keeps it whole (`67108864` is `64Mi`, `13176832` is `12868Ki`, `1000` is `1000`).
pub fn format_binary(bytes: u64) -> String {
    let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let (mut value, mut i) = (bytes, 0);
    while value != 0 && value.is_multiple_of(1024) && i + 1 < suffixes.len() {
        value /= 1024;
        i += 1;
    }
    format!("{value}{}", suffixes[i])
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
    fn whole_thousandths_are_not_rounded_past() {
        assert_eq!(cpu_millis("3800m"), Ok(3800));
        assert_eq!(cpu_millis("0.1"), Ok(100));
        assert_eq!(cpu_millis("1.0001"), Ok(1001));
    }

    #[test]
    fn canonical_forms_are_gos() {
        assert_eq!(format_nano(400_000_000), "400m");
        assert_eq!(format_nano(2_000_000_000), "2");
        assert_eq!(format_nano(17_483_094), "17483094n");
        assert_eq!(format_nano(5_000), "5u");
        assert_eq!(format_nano(0), "0");
        assert_eq!(format_binary(64 << 20), "64Mi");
        assert_eq!(format_binary(13_176_832), "12868Ki");
        assert_eq!(format_binary(1000), "1000");
        assert_eq!(format_binary(0), "0");
    }

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
