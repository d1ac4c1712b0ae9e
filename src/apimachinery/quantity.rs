//! Resource quantities as Kubernetes writes them (`500m`, `2`, `1.5`, `128Mi`, `1G`, `1e3`):
//! [`Quantity`], exact in billionths with Go's canonical form and arithmetic (what quota
//! accounting adds up), and the integer units the scheduler adds up (millicores for CPU, bytes
//! for the rest), read through it.

/// What went wrong reading a quantity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
)]
pub struct QuantityError(pub String);

/// A quantity in thousandths of its unit (so `500m` is 500 and `2` is 2000), rounded up as
/// Kubernetes rounds requests.
pub fn parse_milli(text: &str) -> Result<i128, QuantityError> {
    Quantity::parse(text).map(|q| q.milli())
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

/// A quantity's text cut as `ParseQuantity` reads it: its sign, its number (digits and a
/// point) and its suffix (`Mi`, `m`, `e3`, or nothing).
fn split(text: &str) -> (bool, &str, &str) {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let at = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(at);
    (negative, number, suffix)
}

/// A quantity, exactly, in billionths of its unit, and whether it was written with a binary
/// suffix (`Mi`): what Go's `Quantity` keeps of its format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quantity {
    nanos: i128,
    binary: bool,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// A whole count, as `resource.NewQuantity(n, DecimalSI)`.
    pub fn count(n: i64) -> Self {
        Quantity {
            nanos: i128::from(n) * NANO,
            binary: false,
        }
    }

    /// Reads a quantity (`500m`, `1.5`, `128Mi`, `1e3`), rounded up to a billionth.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let bad = || QuantityError(text.to_owned());
        let (negative, number, suffix) = split(text);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(bad());
        }
        // The number as a fraction: digits / 10^places.
        let digits: String = format!("{whole}{fraction}");
        let digits: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| bad())?
        };
        let places = fraction.len() as u32;
        let (multiplier, exponent, binary): (i128, i32, bool) = match suffix {
            "" => (1, 0, false),
            "n" => (1, -9, false),
            "u" => (1, -6, false),
            "m" => (1, -3, false),
            "k" => (1, 3, false),
            "M" => (1, 6, false),
            "G" => (1, 9, false),
            "T" => (1, 12, false),
            "P" => (1, 15, false),
            "E" => (1, 18, false),
            "Ki" => (1 << 10, 0, true),
            "Mi" => (1 << 20, 0, true),
            "Gi" => (1 << 30, 0, true),
            "Ti" => (1 << 40, 0, true),
            "Pi" => (1 << 50, 0, true),
            "Ei" => (1 << 60, 0, true),
            s if s.starts_with(['e', 'E']) => (1, s[1..].parse::<i32>().map_err(|_| bad())?, false),
            _ => return Err(bad()),
        };
        // nanos = digits * multiplier * 10^(exponent + 9 - places), rounded up.
        let shift = exponent + 9 - places as i32;
        let scaled = digits.checked_mul(multiplier).ok_or_else(bad)?;
        let nanos = if shift >= 0 {
            scaled
                .checked_mul(10i128.checked_pow(shift as u32).ok_or_else(bad)?)
                .ok_or_else(bad)?
        } else {
            let divisor = 10i128.checked_pow((-shift) as u32).ok_or_else(bad)?;
            (scaled + divisor - 1) / divisor
        };
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            binary,
        })
    }

    /// Zero, written in this quantity's format.
    pub fn zeroed(self) -> Self {
        Quantity { nanos: 0, ..self }
    }

    /// Reads a JSON quantity; anything else is zero.
    pub fn of(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::String(s) => Quantity::parse(s).ok(),
            serde_json::Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
            _ => None,
        }
    }

    /// In thousandths, rounded up (Go's `MilliValue`).
    pub fn milli(&self) -> i128 {
        self.nanos.div_euclid(1_000_000) + i128::from(self.nanos.rem_euclid(1_000_000) != 0)
    }

    /// In whole units, rounded up (Go's `Value`).
    pub fn value(&self) -> i128 {
        self.nanos.div_euclid(NANO) + i128::from(self.nanos.rem_euclid(NANO) != 0)
    }

    /// Whether it is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether it is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The format a sum or difference keeps: `self`'s, or `other`'s when `self` is zero (Go's
    /// `Add` and `Sub`).
    fn format_with(self, other: Quantity) -> bool {
        if self.nanos == 0 {
            other.binary
        } else {
            self.binary
        }
    }

    /// `self + other` (Go's `Add`).
    pub fn plus(self, other: Quantity) -> Self {
        Quantity {
            nanos: self.nanos + other.nanos,
            binary: self.format_with(other),
        }
    }

    /// `self - other` (Go's `Sub`).
    pub fn minus(self, other: Quantity) -> Self {
        Quantity {
            nanos: self.nanos - other.nanos,
            binary: self.format_with(other),
        }
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.nanos.cmp(&other.nanos))
    }
}

impl std::fmt::Display for Quantity {
    /// Go's canonical form: a binary suffix for a whole binary quantity of at least 1Ki
    /// (`64Mi`, `1536`), else the largest SI suffix that keeps the number whole (`500m`,
    /// `2k`, `1500`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.nanos;
        if n == 0 {
            return f.write_str("0");
        }
        let sign = if n < 0 { "-" } else { "" };
        let abs = n.abs();
        if self.binary && abs % NANO == 0 && abs >= 1024 * NANO {
            let mut value = abs / NANO;
            let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let mut i = 0;
            while value % 1024 == 0 && i + 1 < suffixes.len() {
                value /= 1024;
                i += 1;
            }
            return write!(f, "{sign}{value}{}", suffixes[i]);
        }
        let suffixes = [
            (27, "E"),
            (24, "P"),
            (21, "T"),
            (18, "G"),
            (15, "M"),
            (12, "k"),
            (9, ""),
            (6, "m"),
            (3, "u"),
        ];
        for (power, suffix) in suffixes {
            let divisor = 10i128.pow(power);
            if abs % divisor == 0 {
                return write!(f, "{sign}{}{suffix}", abs / divisor);
            }
        }
        write!(f, "{sign}{abs}n")
    }
}

/// A quantity as Go's `%#v` prints a `resource.Quantity` parsed from `text` (what
/// `field.Invalid` shows of one): `resource.Quantity{i:resource.int64Amount{value:2, scale:0},
/// d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:"2", Format:"DecimalSI"}`. The cached string
/// `s` is set only where `ParseQuantity` keeps it: a canonical text.
pub fn go_debug(text: &str) -> String {
    let text = text.trim();
    let (negative, number, suffix) = split(text);
    let (num, denom) = number.split_once('.').unwrap_or((number, ""));
    let (format, exponent): (&str, i32) = match suffix {
        "Ki" => ("BinarySI", 10),
        "Mi" => ("BinarySI", 20),
        "Gi" => ("BinarySI", 30),
        "Ti" => ("BinarySI", 40),
        "Pi" => ("BinarySI", 50),
        "Ei" => ("BinarySI", 60),
        "n" => ("DecimalSI", -9),
        "u" => ("DecimalSI", -6),
        "m" => ("DecimalSI", -3),
        "" => ("DecimalSI", 0),
        "k" => ("DecimalSI", 3),
        "M" => ("DecimalSI", 6),
        "G" => ("DecimalSI", 9),
        "T" => ("DecimalSI", 12),
        "P" => ("DecimalSI", 15),
        "E" => ("DecimalSI", 18),
        s => (
            "DecimalExponent",
            s.get(1..).and_then(|e| e.parse().ok()).unwrap_or(0),
        ),
    };
    let shifted = format!("{num}{denom}");
    let digits: i64 = shifted.parse().unwrap_or(0);
    let binary = format == "BinarySI";
    let (value, scale) = if binary {
        (digits << exponent, -(denom.len() as i32))
    } else {
        (digits, exponent - denom.len() as i32)
    };
    let canonical = if binary {
        exponent % 10 == 0 && denom.is_empty() && digits & 7 != 0
    } else {
        scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0')
    };
    let value = if negative { -value } else { value };
    let s = if canonical { text } else { "" };
    format!(
        "resource.Quantity{{i:resource.int64Amount{{value:{value}, scale:{scale}}}, d:resource.infDecAmount{{Dec:(*inf.Dec)(nil)}}, s:{s:?}, Format:{format:?}}}"
    )
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
