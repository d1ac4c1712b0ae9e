//! The string `format`s kube-openapi checks custom resource values against (the registry
//! apiextensions-apiserver validates with): `date-time`, `date`, `duration`, `byte`, `uuid`
//! (and `uuid3`/`uuid4`/`uuid5`), `ipv4`, `ipv6`, `cidr`, `mac`, `hostname`, `email`, `uri`,
//! `hexcolor`, `rgbcolor` and `password`. Any other format is not checked, as upstream
//! ignores formats it does not know (`int32`, `int64`, `float`, `double` name number sizes;
//! the ISBN, credit card, SSN and BSON object id formats are not checked here).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `text` is a valid `format` value: `None` when the format is not checked.
pub(crate) fn check(format: &str, text: &str) -> Option<bool> {
    let ok = match format {
        "date-time" | "datetime" => date_time(text),
        "date" => jiff::civil::Date::strptime("%Y-%m-%d", text).is_ok(),
        "duration" => duration(text),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .is_ok()
        }
        "uuid" | "uuid3" | "uuid4" | "uuid5" => uuid(format, text),
        "ipv4" => text.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<Ipv6Addr>().is_ok(),
        "cidr" => cidr(text),
        "mac" => mac(text),
        "hostname" => hostname(text),
        "email" => email(text),
        "uri" => uri(text),
        "hexcolor" => {
            let hex = text.strip_prefix('#').unwrap_or("");
            (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        "rgbcolor" => rgb(text),
        "password" => true,
        _ => return None,
    };
    Some(ok)
}

/// RFC 3339 date-times, with or without fractions, `Z` or an offset (strfmt's layouts).
fn date_time(text: &str) -> bool {
    text.parse::<jiff::Timestamp>().is_ok()
        || jiff::civil::DateTime::strptime("%Y-%m-%dT%H:%M:%S", text).is_ok()
}

/// strfmt's durations: Go's (`1h30m`, `500ms`) plus `d` and `w`, or a number and a unit name
/// (`3 days`).
fn duration(text: &str) -> bool {
    let re = regex::Regex::new(
        r"^(?:(?:[-+]?\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d|w))+|[-+]?\d+\s*(?:ns|us|µs|ms|s|m|h|d|w|nanoseconds?|microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?)|0)$",
    );
    re.is_ok_and(|re| re.is_match(text))
}

fn uuid(format: &str, text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let shaped = parts.len() == 5
        && parts
            .iter()
            .zip(lens)
            .all(|(p, l)| p.len() == l && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !shaped {
        return false;
    }
    let version = match format {
        "uuid3" => Some('3'),
        "uuid4" => Some('4'),
        "uuid5" => Some('5'),
        _ => None,
    };
    match version {
        None => true,
        Some(v) => {
            let variant = parts[3].chars().next().unwrap_or('0').to_ascii_lowercase();
            parts[2].starts_with(v) && matches!(variant, '8' | '9' | 'a' | 'b')
        }
    }
}

fn cidr(text: &str) -> bool {
    let Some((ip, bits)) = text.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets by `:` or `-`, or dotted groups of four digits.
fn mac(text: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    for sep in [':', '-'] {
        let parts: Vec<&str> = text.split(sep).collect();
        if [6, 8, 20].contains(&parts.len()) && parts.iter().all(|p| hex(p, 2)) {
            return true;
        }
    }
    let parts: Vec<&str> = text.split('.').collect();
    [3, 4, 10].contains(&parts.len()) && parts.iter().all(|p| hex(p, 4))
}

/// strfmt's hostname: labels of letters, digits and inner dashes (up to 63), 255 in all.
fn hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn email(text: &str) -> bool {
    match text.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !local.contains(char::is_whitespace) && hostname(domain)
        }
        None => false,
    }
}

/// Go's `url.ParseRequestURI`: an absolute URI or an absolute path.
fn uri(text: &str) -> bool {
    if text.starts_with('/') {
        return !text.contains(char::is_whitespace);
    }
    match text.split_once(':') {
        Some((scheme, rest)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
                && !text.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn rgb(text: &str) -> bool {
    let Some(inner) = text.strip_prefix("rgb(").and_then(|t| t.strip_suffix(')')) else {
        return false;
    };
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    parts.len() == 3 && parts.iter().all(|p| p.parse::<u8>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn formats_accept_and_refuse_as_strfmt() {
        let cases = [
            ("date-time", "2024-01-02T03:04:05Z", true),
            ("date-time", "2024-01-02T03:04:05.123+02:00", true),
            ("date-time", "yesterday", false),
            ("date", "2024-02-29", true),
            ("date", "2024-02-30", false),
            ("duration", "1h30m", true),
            ("duration", "3 days", true),
            ("duration", "soon", false),
            ("byte", "aGVsbG8=", true),
            ("byte", "not base64!", false),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", true),
            ("uuid4", "123e4567-e89b-12d3-a456-426614174000", false),
            ("ipv4", "10.0.0.1", true),
            ("ipv4", "10.0.0", false),
            ("ipv6", "::1", true),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "10.0.0.0/33", false),
            ("mac", "00:1a:2b:3c:4d:5e", true),
            ("mac", "00:1a:2b", false),
            ("hostname", "example.com", true),
            ("hostname", "-bad.com", false),
            ("email", "a@example.com", true),
            ("email", "nobody", false),
            ("uri", "https://example.com/x", true),
            ("uri", "example", false),
            ("hexcolor", "#ffaa00", true),
            ("rgbcolor", "rgb(1, 2, 300)", false),
        ];
        for (format, text, ok) in cases {
            assert_eq!(check(format, text), Some(ok), "{format} {text}");
        }
        assert_eq!(check("int32", "x"), None);
    }
}
