//! Cron schedules as Kubernetes reads them: kube-apiserver validates a CronJob's `schedule` and
//! kube-controller-manager's CronJob controller runs it with robfig/cron v3's standard parser
//! (`cron.ParseStandard`), so this is that parser and its `Next`, with the same language and the
//! same error words (what a rejected `kubectl apply` prints).
//!
//! The language: five fields (minute, hour, day of month, month, day of week), each a
//! comma-separated list of `*` or `?`, `N`, `N-M`, with an optional `/step` (`N/step` means
//! `N-max/step`); months `jan`-`dec` and weekdays `sun`-`sat` by name in any case; weekdays 0-6
//! (7 is out of range). When both day fields are restricted a day matches either; when one is a
//! `*` (even `*/1`, but not `*/2`) both must match. The descriptors `@yearly`, `@annually`,
//! `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`, and `@every <Go duration>` (a
//! constant delay, at least a second, in whole seconds); upstream accepts `@every`, so this does.
//! A `TZ=<zone>` or `CRON_TZ=<zone>` prefix names the schedule's zone (the API server refuses it
//! in new schedules and asks for `spec.timeZone`; the controller prepends `TZ=<timeZone>`
//! itself). Without one, a schedule runs in the zone of the time it is asked about, which the
//! controller gives in its own local zone, as kube-controller-manager does.
//!
//! Why not a crate: `croner` and `cron` parse other languages (seconds and years fields, `L`,
//! `W`, `#`, Sunday as 7 or 1, no `@every`) and report errors in their own words, while what a
//! user sees here, the 422's "end of range (61) above maximum (59): 61" and which days `0 0 */1
//! * 1` runs on, is robfig/cron's. `jiff` does the calendar and the time zones.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

use super::gotypes::{go_quote, parse_go_duration};

/// Why a schedule does not parse, in robfig/cron's words (each variant's message is its doc).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("empty spec string")]
    Empty,
    #[error("provided bad location {name}: {reason}")]
    BadLocation { name: String, reason: String },
    #[error("expected exactly 5 fields, found {found}: [{fields}]")]
    FieldCount { found: usize, fields: String },
    #[error("too many hyphens: {0}")]
    TooManyHyphens(String),
    #[error("too many slashes: {0}")]
    TooManySlashes(String),
    #[error("failed to parse int from {expr}: strconv.Atoi: parsing {quoted}: {reason}")]
    NotANumber {
        expr: String,
        quoted: String,
        reason: &'static str,
    },
    #[error("negative number ({number}) not allowed: {expr}")]
    Negative { number: i64, expr: String },
    #[error("beginning of range ({start}) below minimum ({min}): {expr}")]
    BelowMinimum { start: u64, min: u64, expr: String },
    #[error("end of range ({end}) above maximum ({max}): {expr}")]
    AboveMaximum { end: u64, max: u64, expr: String },
    #[error("beginning of range ({start}) beyond end of range ({end}): {expr}")]
    BeyondEnd { start: u64, end: u64, expr: String },
    #[error("step of range should be a positive number: {0}")]
    ZeroStep(String),
    #[error("unrecognized descriptor: {0}")]
    UnknownDescriptor(String),
    #[error("failed to parse duration {descriptor}: {reason}")]
    Duration { descriptor: String, reason: String },
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Fields (and descriptors other than `@every`): robfig's `SpecSchedule`.
    Spec(Spec),
    /// `@every <duration>`: robfig's `ConstantDelaySchedule`, in whole seconds (at least one).
    Every(SignedDuration),
}

/// The five fields as bit sets (bit `n` for value `n`; [`STAR`] marks a `*` field), and the
/// zone a `TZ=` prefix named.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    location: Option<TimeZone>,
}

/// robfig's `starBit`: the field was `*` (or `?`) with a step of 1.
const STAR: u64 = 1 << 63;

struct Bounds {
    min: u64,
    max: u64,
    names: &'static [(&'static str, u64)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

fn bits(min: u64, max: u64, step: u64) -> u64 {
    (min..=max)
        .step_by(step as usize)
        .fold(0, |acc, v| acc | (1 << v))
}

fn all(b: &Bounds) -> u64 {
    bits(b.min, b.max, 1) | STAR
}

/// robfig's `mustParseInt`: Go's `strconv.Atoi`, then no negatives.
fn must_parse_int(expr: &str) -> Result<u64, Error> {
    let not_a_number = |reason| Error::NotANumber {
        expr: expr.to_owned(),
        quoted: go_quote(expr),
        reason,
    };
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_number("invalid syntax"));
    }
    let number: i64 = expr
        .parse()
        .map_err(|_| not_a_number("value out of range"))?;
    if number < 0 {
        return Err(Error::Negative {
            number,
            expr: expr.to_owned(),
        });
    }
    Ok(number as u64)
}

fn int_or_name(expr: &str, b: &Bounds) -> Result<u64, Error> {
    let lower = expr.to_lowercase();
    if let Some((_, v)) = b.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    must_parse_int(expr)
}

/// robfig's `getRange`: one `N`, `N-M`, `*` or `?`, with an optional `/step`.
fn range(expr: &str, b: &Bounds) -> Result<u64, Error> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (start, end, extra) = (b.min, b.max, STAR);
    } else {
        start = int_or_name(low_and_high[0], b)?;
        end = match low_and_high.len() {
            1 => start,
            2 => int_or_name(low_and_high[1], b)?,
            _ => return Err(Error::TooManyHyphens(expr.to_owned())),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(Error::TooManySlashes(expr.to_owned())),
    };
    let expr = expr.to_owned();
    if start < b.min {
        return Err(Error::BelowMinimum {
            start,
            min: b.min,
            expr,
        });
    }
    if end > b.max {
        return Err(Error::AboveMaximum {
            end,
            max: b.max,
            expr,
        });
    }
    if start > end {
        return Err(Error::BeyondEnd { start, end, expr });
    }
    if step == 0 {
        return Err(Error::ZeroStep(expr));
    }
    Ok(bits(start, end, step) | extra)
}

/// robfig's `getField`: a comma-separated list of ranges (empty items skipped, as Go's
/// `strings.FieldsFunc` skips them).
fn field(text: &str, b: &Bounds) -> Result<u64, Error> {
    text.split(',')
        .filter(|r| !r.is_empty())
        .try_fold(0, |acc, r| Ok(acc | range(r, b)?))
}

/// Go's `time.LoadLocation`: `""` and `"UTC"` are UTC, `"Local"` the host's zone, anything else
/// a zone of the IANA database by its exact name ("unknown time zone X" otherwise).
pub fn load_location(name: &str) -> Result<TimeZone, String> {
    match name {
        "" | "UTC" => return Ok(TimeZone::UTC),
        "Local" => return Ok(TimeZone::system()),
        _ => {}
    }
    let unknown = || format!("unknown time zone {name}");
    if name.contains("..") || name.starts_with('/') || name.starts_with('\\') {
        return Err("time: invalid location name".to_owned());
    }
    let tz = TimeZone::get(name).map_err(|_| unknown())?;
    // jiff finds names whatever their case; Go opens the file by its exact name.
    match tz.iana_name() {
        Some(found) if found == name => Ok(tz),
        _ => Err(unknown()),
    }
}

/// Parses a schedule as `cron.ParseStandard` does.
pub fn parse(spec: &str) -> Result<Schedule, Error> {
    if spec.is_empty() {
        return Err(Error::Empty);
    }
    let mut spec = spec;
    let mut location = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').expect("a prefix with '='");
        let space = spec.find(' ').unwrap_or(spec.len());
        let name = &spec[eq + 1..space];
        location = Some(load_location(name).map_err(|reason| Error::BadLocation {
            name: name.to_owned(),
            reason,
        })?);
        spec = spec[space..].trim();
    }
    if spec.starts_with('@') {
        return descriptor(spec, location);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(Error::FieldCount {
            found: fields.len(),
            fields: fields.join(" "),
        });
    }
    Ok(Schedule::Spec(Spec {
        minute: field(fields[0], &MINUTES)?,
        hour: field(fields[1], &HOURS)?,
        dom: field(fields[2], &DOM)?,
        month: field(fields[3], &MONTHS)?,
        dow: field(fields[4], &DOW)?,
        location,
    }))
}

fn descriptor(d: &str, location: Option<TimeZone>) -> Result<Schedule, Error> {
    let first = |b: &Bounds| 1 << b.min;
    let (minute, hour) = (first(&MINUTES), first(&HOURS));
    let spec = |minute, hour, dom, month, dow| {
        Ok(Schedule::Spec(Spec {
            minute,
            hour,
            dom,
            month,
            dow,
            location: location.clone(),
        }))
    };
    match d {
        "@yearly" | "@annually" => spec(minute, hour, first(&DOM), first(&MONTHS), all(&DOW)),
        "@monthly" => spec(minute, hour, first(&DOM), all(&MONTHS), all(&DOW)),
        "@weekly" => spec(minute, hour, all(&DOM), all(&MONTHS), first(&DOW)),
        "@daily" | "@midnight" => spec(minute, hour, all(&DOM), all(&MONTHS), all(&DOW)),
        "@hourly" => spec(minute, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        _ => match d.strip_prefix("@every ") {
            Some(text) => {
                let nanos = parse_go_duration(text).map_err(|reason| Error::Duration {
                    descriptor: d.to_owned(),
                    reason,
                })?;
                // robfig's `Every`: at least a second, sub-second parts dropped.
                let nanos = nanos.max(1_000_000_000);
                let nanos = nanos - nanos % 1_000_000_000;
                Ok(Schedule::Every(SignedDuration::from_nanos(nanos as i64)))
            }
            None => Err(Error::UnknownDescriptor(d.to_owned())),
        },
    }
}

impl Spec {
    /// robfig's `dayMatches`: both day fields must match when either is a `*`, else one.
    fn day_matches(&self, z: &Zoned) -> bool {
        let dom = self.dom & (1 << z.day()) != 0;
        let dow = self.dow & (1 << z.weekday().to_sunday_zero_offset()) != 0;
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }
}

/// Go's `time.Date` in `tz`: a civil time, normalised, and placed in the zone (a time in a
/// gap moves forward, an ambiguous one is the earlier).
fn civil(tz: &TimeZone, date: jiff::civil::Date, h: i8, m: i8, s: i8) -> Option<Zoned> {
    tz.to_zoned(date.at(h, m, s, 0)).ok()
}

impl Schedule {
    /// The first time after `t` the schedule fires, in `t`'s zone, or `None` when a field
    /// combination never occurs within five years (robfig's zero time), as `Schedule.Next`.
    pub fn next(&self, t: &Zoned) -> Option<Zoned> {
        match self {
            Schedule::Every(delay) => {
                let nanos = SignedDuration::from_nanos(i64::from(t.subsec_nanosecond()));
                t.checked_add(*delay - nanos).ok()
            }
            Schedule::Spec(spec) => spec.next(t),
        }
    }

    /// [`Schedule::next`] from a timestamp seen in `local` (the zone of a schedule without
    /// `TZ=`), as a timestamp.
    pub fn next_after(&self, t: Timestamp, local: &TimeZone) -> Option<Timestamp> {
        self.next(&t.to_zoned(local.clone())).map(|z| z.timestamp())
    }
}

impl Spec {
    fn next(&self, t: &Zoned) -> Option<Zoned> {
        let original = t.time_zone().clone();
        let loc = self.location.clone().unwrap_or_else(|| original.clone());
        let t = t.with_time_zone(loc.clone());
        // The earliest possible time: the next whole second.
        let whole = Timestamp::from_second(t.timestamp().as_second()).ok()?;
        let mut t = (whole + SignedDuration::from_secs(1)).to_zoned(loc.clone());
        let hour = SignedDuration::from_hours(1);
        let minute = SignedDuration::from_mins(1);
        let second = SignedDuration::from_secs(1);
        let mut added = false;
        let year_limit = t.year() + 5;
        'wrap: loop {
            if t.year() > year_limit {
                return None;
            }
            while self.month & (1 << t.month()) == 0 {
                if !added {
                    added = true;
                    t = civil(&loc, t.date().first_of_month(), 0, 0, 0)?;
                }
                let next = t.date().checked_add(jiff::Span::new().months(1)).ok()?;
                t = civil(&loc, next, t.hour(), t.minute(), t.second())?;
                if t.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&t) {
                if !added {
                    added = true;
                    t = civil(&loc, t.date(), 0, 0, 0)?;
                }
                t = civil(
                    &loc,
                    t.date().tomorrow().ok()?,
                    t.hour(),
                    t.minute(),
                    t.second(),
                )?;
                // Midnight may not exist on a DST day: back to it.
                if t.hour() != 0 {
                    let h = i64::from(t.hour());
                    t = if h > 12 {
                        t.checked_add(hour * (24 - h) as i32).ok()?
                    } else {
                        t.checked_sub(hour * h as i32).ok()?
                    };
                }
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while self.hour & (1 << t.hour()) == 0 {
                if !added {
                    added = true;
                    t = civil(&loc, t.date(), t.hour(), 0, 0)?;
                }
                t = t.checked_add(hour).ok()?;
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while self.minute & (1 << t.minute()) == 0 {
                if !added {
                    added = true;
                    t = truncate(&t, 60)?;
                }
                t = t.checked_add(minute).ok()?;
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            // The standard parser's seconds field is always `0`.
            while t.second() != 0 {
                if !added {
                    added = true;
                    t = truncate(&t, 1)?;
                }
                t = t.checked_add(second).ok()?;
                if t.second() == 0 {
                    continue 'wrap;
                }
            }
            return Some(t.with_time_zone(original));
        }
    }
}

/// Go's `Time.Truncate` to a whole number of seconds (on absolute time).
fn truncate(t: &Zoned, seconds: i64) -> Option<Zoned> {
    let s = t.timestamp().as_second();
    Timestamp::from_second(s - s.rem_euclid(seconds))
        .ok()
        .map(|ts| ts.to_zoned(t.time_zone().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, zone: &str) -> Zoned {
        let tz = load_location(zone).unwrap();
        text.parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(tz)
            .unwrap()
    }

    #[test]
    fn errors_are_robfigs_words() {
        let cases = [
            ("", "empty spec string"),
            ("61 * * * *", "end of range (61) above maximum (59): 61"),
            (
                "* * * * * *",
                "expected exactly 5 fields, found 6: [* * * * * *]",
            ),
            ("* * *", "expected exactly 5 fields, found 3: [* * *]"),
            ("   ", "expected exactly 5 fields, found 0: []"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            (
                "5-2 * * * *",
                "beginning of range (5) beyond end of range (2): 5-2",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("*/2/3 * * * *", "too many slashes: */2/3"),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("*/-1 * * * *", "negative number (-1) not allowed: -1"),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            (
                "@every 5x",
                "failed to parse duration @every 5x: time: unknown unit \"x\" in duration \"5x\"",
            ),
            (
                "@every 5",
                "failed to parse duration @every 5: time: missing unit in duration \"5\"",
            ),
            (
                "TZ=Mars/Olympus * * * * *",
                "provided bad location Mars/Olympus: unknown time zone Mars/Olympus",
            ),
        ];
        for (spec, want) in cases {
            let got = parse(spec).expect_err(spec).to_string();
            assert_eq!(got, want, "{spec:?}");
        }
    }

    #[test]
    fn accepted_forms() {
        for spec in [
            "* * * * *",
            "*/5 * * * *",
            "0 0 1 jan *",
            "0 0 * * MON-fri",
            "? ? ? ? ?",
            "1,,2 * * * *",
            "@hourly",
            "@every 1h30m",
            "@every 90s",
            "TZ=UTC 0 3 * * *",
            "CRON_TZ=Europe/Paris 0 3 * * *",
            "*/61 * * * *",
        ] {
            parse(spec).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        }
    }

    #[test]
    fn next_fires_where_robfig_does() {
        // (schedule, after, zone, next)
        let cases = [
            (
                "* * * * *",
                "2024-05-01T10:00:00",
                "UTC",
                "2024-05-01T10:01:00",
            ),
            (
                "* * * * *",
                "2024-05-01T10:00:30.5",
                "UTC",
                "2024-05-01T10:01:00",
            ),
            (
                "*/15 * * * *",
                "2024-05-01T10:16:00",
                "UTC",
                "2024-05-01T10:30:00",
            ),
            (
                "0 3 * * *",
                "2024-05-01T10:00:00",
                "UTC",
                "2024-05-02T03:00:00",
            ),
            (
                "@hourly",
                "2024-05-01T10:59:59",
                "UTC",
                "2024-05-01T11:00:00",
            ),
            (
                "@daily",
                "2024-12-31T23:00:00",
                "UTC",
                "2025-01-01T00:00:00",
            ),
            (
                "@weekly",
                "2024-05-01T00:00:00",
                "UTC",
                "2024-05-05T00:00:00",
            ),
            (
                "@monthly",
                "2024-05-01T00:00:00",
                "UTC",
                "2024-06-01T00:00:00",
            ),
            (
                "@yearly",
                "2024-05-01T00:00:00",
                "UTC",
                "2025-01-01T00:00:00",
            ),
            // Both day fields restricted: either matches (the 13th, or a Friday).
            (
                "0 0 13 * 5",
                "2024-05-01T00:00:00",
                "UTC",
                "2024-05-03T00:00:00",
            ),
            // `*/1` is still a star: both must match, so Mondays only.
            (
                "0 0 */1 * 1",
                "2024-05-01T00:00:00",
                "UTC",
                "2024-05-06T00:00:00",
            ),
            // `*/2` is not: odd days or Mondays.
            (
                "0 0 */2 * 1",
                "2024-05-01T12:00:00",
                "UTC",
                "2024-05-03T00:00:00",
            ),
            (
                "0 0 29 2 *",
                "2025-03-01T00:00:00",
                "UTC",
                "2028-02-29T00:00:00",
            ),
            (
                "*/61 * * * *",
                "2024-05-01T10:01:00",
                "UTC",
                "2024-05-01T11:00:00",
            ),
            // In a zone: 03:00 Paris is 01:00 UTC in summer.
            (
                "TZ=Europe/Paris 0 3 * * *",
                "2024-07-01T00:00:00",
                "UTC",
                "2024-07-01T01:00:00",
            ),
            // A time in the spring-forward gap does not occur that day: robfig walks hour by
            // hour and never sees 02:00, so the next run is the day after.
            (
                "30 2 * * *",
                "2024-03-31T00:00:00",
                "Europe/Paris",
                "2024-04-01T02:30:00",
            ),
        ];
        for (spec, after, zone, want) in cases {
            let s = parse(spec).unwrap();
            let got = s.next(&at(after, zone)).expect(spec);
            assert_eq!(got.time_zone(), &load_location(zone).unwrap());
            let want = at(want, zone);
            assert_eq!(got.timestamp(), want.timestamp(), "{spec:?} after {after}");
        }
    }

    #[test]
    fn impossible_dates_never_fire_and_every_is_a_constant_delay() {
        assert_eq!(
            parse("59 23 31 2 *")
                .unwrap()
                .next(&at("2024-01-01T00:00:00", "UTC")),
            None
        );
        let every = parse("@every 90s").unwrap();
        let next = every.next(&at("2024-01-01T00:00:00.25", "UTC")).unwrap();
        assert_eq!(
            next.timestamp(),
            at("2024-01-01T00:01:30", "UTC").timestamp()
        );
        let tiny = parse("@every 10ms").unwrap();
        assert_eq!(tiny, Schedule::Every(SignedDuration::from_secs(1)));
    }

    #[test]
    fn zones_load_as_go_loads_them() {
        assert!(load_location("Europe/Paris").is_ok());
        assert_eq!(load_location("UTC").unwrap(), TimeZone::UTC);
        assert_eq!(
            load_location("europe/paris").unwrap_err(),
            "unknown time zone europe/paris"
        );
        assert_eq!(
            load_location("Europe/Pariss").unwrap_err(),
            "unknown time zone Europe/Pariss"
        );
    }
}
