//! Go times for templates: an instant with a fixed zone, formatted and parsed with Go's
//! reference-time layouts (`2006-01-02 15:04:05.999999999 -0700 MST`, `Jan _2`, `3:04PM`, ...),
//! the zones templates can name (UTC, Local, which is UTC here, `Etc/GMT±N` and fixed offsets),
//! and Go's duration syntax (`1h30m`, `250ms`).

use std::fmt::Write as _;

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAY_NAMES: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// Seconds from 0001-01-01 to 1970-01-01: Go's zero time.
const ZERO_TIME_UNIX_SECONDS: i64 = -62_135_596_800;

/// A zone's abbreviation ("UTC", "CEST"), kept inline so times stay `Copy`; empty when the zone
/// has no name and prints as its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ZoneName {
    bytes: [u8; 15],
    length: u8,
}

impl ZoneName {
    pub(super) const UTC: ZoneName = ZoneName { bytes: *b"UTC\0\0\0\0\0\0\0\0\0\0\0\0", length: 3 };
    pub(super) const NONE: ZoneName = ZoneName { bytes: [0; 15], length: 0 };

    fn new(name: &str) -> ZoneName {
        let mut zone = ZoneName::NONE;
        for (index, byte) in name.bytes().filter(u8::is_ascii).take(15).enumerate() {
            zone.bytes[index] = byte;
            zone.length = index as u8 + 1;
        }
        zone
    }

    fn as_str(&self) -> &str {
        // Only ASCII bytes are stored, so this is valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.length)]).unwrap_or("")
    }
}

/// A fixed zone: what a location name resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub offset_seconds: i32,
    pub name: ZoneName,
}

impl Location {
    pub(super) const UTC: Location = Location { offset_seconds: 0, name: ZoneName::UTC };
}

/// An instant and the zone it is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GoTime {
    pub unix_seconds: i64,
    pub nanosecond: u32,
    pub offset_seconds: i32,
    pub zone: ZoneName,
}

/// The wall-clock reading of a time in its zone.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    weekday: usize,
    year_day: u32,
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(month: u32, year: i64) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl GoTime {
    pub(super) fn from_unix(unix_seconds: i64, nanosecond: u32) -> GoTime {
        GoTime { unix_seconds, nanosecond, offset_seconds: 0, zone: ZoneName::UTC }
    }

    pub(super) fn from_unix_nanos(nanos: i64) -> GoTime {
        GoTime::from_unix(nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000) as u32)
    }

    /// Go's zero `time.Time`: what `toDate` gives for text it cannot parse.
    pub(super) fn zero() -> GoTime {
        GoTime::from_unix(ZERO_TIME_UNIX_SECONDS, 0)
    }

    /// The current time, in UTC.
    pub(super) fn now() -> GoTime {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        GoTime::from_unix(i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX), since_epoch.subsec_nanos())
    }

    pub(super) fn is_zero(&self) -> bool {
        self.unix_seconds == ZERO_TIME_UNIX_SECONDS && self.nanosecond == 0
    }

    /// Nanoseconds since the epoch, wrapping outside 1678..2262 as Go's `UnixNano` does.
    pub(super) fn unix_nanos(&self) -> i64 {
        self.unix_seconds.wrapping_mul(1_000_000_000).wrapping_add(i64::from(self.nanosecond))
    }

    pub(super) fn unix_micros(&self) -> i64 {
        self.unix_seconds.wrapping_mul(1_000_000).wrapping_add(i64::from(self.nanosecond / 1000))
    }

    pub(super) fn unix_millis(&self) -> i64 {
        self.unix_seconds.wrapping_mul(1000).wrapping_add(i64::from(self.nanosecond / 1_000_000))
    }

    pub(super) fn in_location(&self, location: Location) -> GoTime {
        GoTime { offset_seconds: location.offset_seconds, zone: location.name, ..*self }
    }

    fn civil(&self) -> Civil {
        let local = self.unix_seconds.saturating_add(i64::from(self.offset_seconds));
        let days = local.div_euclid(86_400);
        let seconds_of_day = local.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: seconds_of_day / 3600,
            minute: seconds_of_day / 60 % 60,
            second: seconds_of_day % 60,
            weekday: (days + 4).rem_euclid(7) as usize,
            year_day: (days - days_from_civil(year, 1, 1) + 1) as u32,
        }
    }

    pub(super) fn year(&self) -> i64 {
        self.civil().year
    }
    pub(super) fn month_name(&self) -> &'static str {
        MONTH_NAMES[(self.civil().month - 1) as usize]
    }
    pub(super) fn day(&self) -> u32 {
        self.civil().day
    }
    pub(super) fn hour(&self) -> u32 {
        self.civil().hour
    }
    pub(super) fn minute(&self) -> u32 {
        self.civil().minute
    }
    pub(super) fn second(&self) -> u32 {
        self.civil().second
    }
    pub(super) fn year_day(&self) -> u32 {
        self.civil().year_day
    }
    pub(super) fn weekday_name(&self) -> &'static str {
        DAY_NAMES[self.civil().weekday]
    }

    /// Go's `Time.String`.
    pub(super) fn write_string(&self, out: &mut String) {
        self.format("2006-01-02 15:04:05.999999999 -0700 MST", out);
    }

    /// Go's `%#v` form of a time.
    pub(super) fn write_go_syntax(&self, out: &mut String) {
        let civil = self.civil();
        let zone = if self.offset_seconds == 0 && self.zone == ZoneName::UTC {
            "time.UTC".to_string()
        } else {
            format!("time.Location({:?})", self.zone.as_str())
        };
        let _ = write!(
            out,
            "time.Date({}, time.{}, {}, {}, {}, {}, {}, {zone})",
            civil.year,
            MONTH_NAMES[(civil.month - 1) as usize],
            civil.day,
            civil.hour,
            civil.minute,
            civil.second,
            self.nanosecond
        );
    }

    /// Go's `Time.Format`.
    pub(super) fn format(&self, layout: &str, out: &mut String) {
        let civil = self.civil();
        let mut rest = layout;
        while let Some((prefix_length, chunk, chunk_length)) = next_chunk(rest) {
            out.push_str(&rest[..prefix_length]);
            rest = &rest[prefix_length + chunk_length..];
            self.format_chunk(chunk, &civil, out);
        }
        out.push_str(rest);
    }

    fn format_chunk(&self, chunk: Chunk, civil: &Civil, out: &mut String) {
        match chunk {
            Chunk::Year => push_padded(out, civil.year.rem_euclid(100), 2),
            Chunk::LongYear => push_padded(out, civil.year, 4),
            Chunk::Month => out.push_str(&MONTH_NAMES[(civil.month - 1) as usize][..3]),
            Chunk::LongMonth => out.push_str(MONTH_NAMES[(civil.month - 1) as usize]),
            Chunk::NumMonth => push_padded(out, i64::from(civil.month), 0),
            Chunk::ZeroMonth => push_padded(out, i64::from(civil.month), 2),
            Chunk::WeekDay => out.push_str(&DAY_NAMES[civil.weekday][..3]),
            Chunk::LongWeekDay => out.push_str(DAY_NAMES[civil.weekday]),
            Chunk::Day => push_padded(out, i64::from(civil.day), 0),
            Chunk::UnderDay => {
                if civil.day < 10 {
                    out.push(' ');
                }
                push_padded(out, i64::from(civil.day), 0);
            }
            Chunk::ZeroDay => push_padded(out, i64::from(civil.day), 2),
            Chunk::UnderYearDay => {
                if civil.year_day < 100 {
                    out.push(' ');
                    if civil.year_day < 10 {
                        out.push(' ');
                    }
                }
                push_padded(out, i64::from(civil.year_day), 0);
            }
            Chunk::ZeroYearDay => push_padded(out, i64::from(civil.year_day), 3),
            Chunk::Hour => push_padded(out, i64::from(civil.hour), 2),
            Chunk::Hour12 | Chunk::ZeroHour12 => {
                let hour = match civil.hour % 12 {
                    0 => 12,
                    hour => hour,
                };
                push_padded(out, i64::from(hour), if chunk == Chunk::ZeroHour12 { 2 } else { 0 });
            }
            Chunk::Minute => push_padded(out, i64::from(civil.minute), 0),
            Chunk::ZeroMinute => push_padded(out, i64::from(civil.minute), 2),
            Chunk::Second => push_padded(out, i64::from(civil.second), 0),
            Chunk::ZeroSecond => push_padded(out, i64::from(civil.second), 2),
            Chunk::UpperPm => out.push_str(if civil.hour >= 12 { "PM" } else { "AM" }),
            Chunk::LowerPm => out.push_str(if civil.hour >= 12 { "pm" } else { "am" }),
            Chunk::Offset { iso, colon, minutes, seconds } => {
                if iso && self.offset_seconds == 0 {
                    out.push('Z');
                    return;
                }
                write_offset(out, self.offset_seconds, colon, minutes, seconds);
            }
            Chunk::ZoneName => {
                if self.zone.length > 0 {
                    out.push_str(self.zone.as_str());
                } else {
                    write_offset(out, self.offset_seconds, false, true, false);
                }
            }
            Chunk::Fraction { digits, trim, separator } => {
                if trim && (digits == 0 || self.nanosecond == 0) {
                    return;
                }
                let all = format!("{:09}", self.nanosecond);
                let mut kept = &all[..usize::from(digits).min(9)];
                if trim {
                    kept = kept.trim_end_matches('0');
                    if kept.is_empty() {
                        return;
                    }
                }
                out.push(char::from(separator));
                out.push_str(kept);
            }
        }
    }
}

/// `-0700`-style offsets: sign, hours, then minutes and seconds as the layout asks.
fn write_offset(out: &mut String, offset_seconds: i32, colon: bool, minutes: bool, seconds: bool) {
    let absolute = offset_seconds.unsigned_abs();
    out.push(if offset_seconds < 0 { '-' } else { '+' });
    push_padded(out, i64::from(absolute / 3600), 2);
    if minutes {
        if colon {
            out.push(':');
        }
        push_padded(out, i64::from(absolute / 60 % 60), 2);
    }
    if seconds {
        if colon {
            out.push(':');
        }
        push_padded(out, i64::from(absolute % 60), 2);
    }
}

/// A number zero-padded to `width` digits (Go's `appendInt`), its sign first.
fn push_padded(out: &mut String, value: i64, width: usize) {
    if value < 0 {
        out.push('-');
    }
    let _ = write!(out, "{:0width$}", value.unsigned_abs());
}

/// One element of a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    UpperPm,
    LowerPm,
    /// `MST`
    ZoneName,
    /// `Z07:00`, `-0700` and their kin: ISO forms print `Z` for UTC.
    Offset {
        iso: bool,
        colon: bool,
        minutes: bool,
        seconds: bool,
    },
    /// `.000` (exact digits) or `.999` (trailing zeros dropped), with `.` or `,`.
    Fraction {
        digits: u8,
        trim: bool,
        separator: u8,
    },
}

/// The next layout element: the length of the literal text before it, the element, and the
/// length of its text; `None` when only literal text remains.
fn next_chunk(layout: &str) -> Option<(usize, Chunk, usize)> {
    let bytes = layout.as_bytes();
    let starts = |index: usize, text: &str| bytes[index..].starts_with(text.as_bytes());
    let lower_at = |index: usize| bytes.get(index).is_some_and(u8::is_ascii_lowercase);
    for index in 0..bytes.len() {
        let found = match bytes[index] {
            b'J' if starts(index, "January") => Some((Chunk::LongMonth, 7)),
            b'J' if starts(index, "Jan") && !lower_at(index + 3) => Some((Chunk::Month, 3)),
            b'M' if starts(index, "Monday") => Some((Chunk::LongWeekDay, 6)),
            b'M' if starts(index, "Mon") && !lower_at(index + 3) => Some((Chunk::WeekDay, 3)),
            b'M' if starts(index, "MST") => Some((Chunk::ZoneName, 3)),
            b'0' => match bytes.get(index + 1) {
                Some(b'1') => Some((Chunk::ZeroMonth, 2)),
                Some(b'2') => Some((Chunk::ZeroDay, 2)),
                Some(b'3') => Some((Chunk::ZeroHour12, 2)),
                Some(b'4') => Some((Chunk::ZeroMinute, 2)),
                Some(b'5') => Some((Chunk::ZeroSecond, 2)),
                Some(b'6') => Some((Chunk::Year, 2)),
                Some(b'0') if bytes.get(index + 2) == Some(&b'2') => Some((Chunk::ZeroYearDay, 3)),
                _ => None,
            },
            b'1' if bytes.get(index + 1) == Some(&b'5') => Some((Chunk::Hour, 2)),
            b'1' => Some((Chunk::NumMonth, 1)),
            b'2' if starts(index, "2006") => Some((Chunk::LongYear, 4)),
            b'2' => Some((Chunk::Day, 1)),
            b'_' if starts(index, "_2006") => return Some((index + 1, Chunk::LongYear, 4)),
            b'_' if starts(index, "_2") => Some((Chunk::UnderDay, 2)),
            b'_' if starts(index, "__2") => Some((Chunk::UnderYearDay, 3)),
            b'3' => Some((Chunk::Hour12, 1)),
            b'4' => Some((Chunk::Minute, 1)),
            b'5' => Some((Chunk::Second, 1)),
            b'P' if bytes.get(index + 1) == Some(&b'M') => Some((Chunk::UpperPm, 2)),
            b'p' if bytes.get(index + 1) == Some(&b'm') => Some((Chunk::LowerPm, 2)),
            sign @ (b'-' | b'Z') => {
                let iso = sign == b'Z';
                let forms: [(&str, bool, bool, bool); 5] = [
                    ("070000", false, true, true),
                    ("07:00:00", true, true, true),
                    ("0700", false, true, false),
                    ("07:00", true, true, false),
                    ("07", false, false, false),
                ];
                forms.iter().find(|(form, ..)| starts(index + 1, form)).map(|&(form, colon, minutes, seconds)| {
                    (Chunk::Offset { iso, colon, minutes, seconds }, form.len() + 1)
                })
            }
            separator @ (b'.' | b',') => match bytes.get(index + 1) {
                Some(&digit @ (b'0' | b'9')) => {
                    let mut end = index + 1;
                    while bytes.get(end) == Some(&digit) {
                        end += 1;
                    }
                    if bytes.get(end).is_some_and(u8::is_ascii_digit) {
                        None
                    } else {
                        let digits = u8::try_from(end - index - 1).unwrap_or(u8::MAX);
                        Some((Chunk::Fraction { digits, trim: digit == b'9', separator }, end - index))
                    }
                }
                _ => None,
            },
            _ => None,
        };
        if let Some((chunk, length)) = found {
            return Some((index, chunk, length));
        }
    }
    None
}

/// What a zone name given to `toDateInZone` resolves to: `UTC`, `Local` (UTC on this server),
/// `Etc/UTC`, `Etc/GMT`, `Etc/GMT±N`, and fixed offsets such as `+02:00`, `-0700` or `+02`.
pub(super) fn load_location(name: &str) -> Result<Location, String> {
    match name {
        "" | "UTC" | "Local" | "Etc/UTC" | "Etc/Universal" | "Etc/Zulu" | "Universal" | "Zulu" => {
            return Ok(Location::UTC);
        }
        "GMT" | "Etc/GMT" | "Etc/GMT0" | "Etc/GMT+0" | "Etc/GMT-0" | "Etc/Greenwich" | "Greenwich" => {
            return Ok(Location { offset_seconds: 0, name: ZoneName::new("GMT") });
        }
        _ => {}
    }
    if let Some(hours) = name.strip_prefix("Etc/GMT") {
        // POSIX signs: Etc/GMT+5 is five hours behind UTC.
        if let Ok(hours) = hours.parse::<i32>()
            && hours.abs() <= 14
            && hours.to_string().len() + usize::from(hours > 0) == name.len() - 7
        {
            let offset_seconds = -hours * 3600;
            let abbreviation = format!("{}{:02}", if offset_seconds < 0 { '-' } else { '+' }, hours.abs());
            return Ok(Location { offset_seconds, name: ZoneName::new(&abbreviation) });
        }
    }
    if let Some(offset_seconds) = parse_fixed_offset(name) {
        return Ok(Location { offset_seconds, name: ZoneName::NONE });
    }
    Err(format!(
        "unknown time zone {name:?}: only UTC, Local (UTC), Etc/GMT±N and fixed offsets such as +02:00 are known"
    ))
}

/// `+02:00`, `-0700`, `+02` as seconds east of UTC.
fn parse_fixed_offset(text: &str) -> Option<i32> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = text[1..].chars().filter(|&c| c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return None;
    }
    if text[1..].contains(':') && text.len() != 6 {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = if digits.len() == 4 { digits[2..].parse().ok()? } else { 0 };
    if hours > 24 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

/// Reads two-digit (or, unless `fixed`, one-digit) numbers the way Go's parser does.
fn take_number(value: &mut &str, fixed: bool) -> Option<u32> {
    let bytes = value.as_bytes();
    let first = *bytes.first().filter(|b| b.is_ascii_digit())?;
    match bytes.get(1).filter(|b| b.is_ascii_digit()) {
        Some(&second) => {
            *value = &value[2..];
            Some(u32::from(first - b'0') * 10 + u32::from(second - b'0'))
        }
        None if fixed => None,
        None => {
            *value = &value[1..];
            Some(u32::from(first - b'0'))
        }
    }
}

/// A fraction of a second: a separator and `digits` digits, as nanoseconds.
fn take_fraction(value: &mut &str, length: usize) -> Option<u32> {
    let bytes = value.as_bytes();
    if bytes.len() < length || !matches!(bytes[0], b'.' | b',') {
        return None;
    }
    let digits = &value[1..length];
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kept = &digits[..digits.len().min(9)];
    let mut nanos: u32 = if kept.is_empty() { 0 } else { kept.parse().ok()? };
    for _ in kept.len()..9 {
        nanos *= 10;
    }
    *value = &value[length..];
    Some(nanos)
}

/// Which of `names` the value starts with, ignoring ASCII case; its index.
fn take_name(value: &mut &str, names: &[&str], short: bool) -> Option<usize> {
    for (index, name) in names.iter().enumerate() {
        let name = if short { &name[..3] } else { name };
        if value.len() >= name.len() && value.as_bytes()[..name.len()].eq_ignore_ascii_case(name.as_bytes()) {
            *value = &value[name.len()..];
            return Some(index);
        }
    }
    None
}

/// The length of a zone abbreviation at the start of `value`, as Go recognises them.
fn zone_abbreviation_length(value: &str) -> Option<usize> {
    let bytes = value.as_bytes();
    if bytes.len() < 3 {
        return None;
    }
    if value.starts_with("ChST") || value.starts_with("MeST") {
        return Some(4);
    }
    if value.starts_with("GMT") {
        let rest = &bytes[3..];
        if matches!(rest.first(), Some(b'+' | b'-')) {
            let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
            let hours: u32 = std::str::from_utf8(&rest[1..1 + digits]).ok()?.parse().ok().unwrap_or(99);
            if digits > 0 && hours <= 23 {
                return Some(4 + digits);
            }
        }
        return Some(3);
    }
    if matches!(bytes[0], b'+' | b'-') {
        let digits = bytes[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        return if digits > 0 { Some(1 + digits) } else { None };
    }
    let upper = bytes.iter().take(6).take_while(|b| b.is_ascii_uppercase()).count();
    match upper {
        3 => Some(3),
        4 if bytes[3] == b'T' || value.starts_with("WITA") => Some(4),
        5 if bytes[4] == b'T' => Some(5),
        _ => None,
    }
}

/// Go's `time.ParseInLocation`: reads `value` laid out as `layout`; fields the layout lacks
/// are zero (or one for month and day); times without a zone are read in `location`.
pub(super) fn parse_in_location(layout: &str, value: &str, location: Location) -> Result<GoTime, String> {
    let bad = |what: &str| format!("parsing time {value:?} as {layout:?}: cannot parse {what}");
    let mut rest_layout = layout;
    let mut rest = value;
    let mut year = 0i64;
    let mut month: Option<u32> = None;
    let mut day: Option<u32> = None;
    let mut year_day: Option<u32> = None;
    let (mut hour, mut minute, mut second, mut nanosecond) = (0u32, 0u32, 0u32, 0u32);
    let (mut pm, mut am) = (false, false);
    let mut zone_offset: Option<i32> = None;
    let mut zone_name: Option<String> = None;
    let mut utc = false;
    loop {
        let next = next_chunk(rest_layout);
        let literal = match next {
            Some((prefix_length, ..)) => &rest_layout[..prefix_length],
            None => rest_layout,
        };
        rest = skip_literal(rest, literal).ok_or_else(|| bad(&format!("{rest:?} as {literal:?}")))?;
        let Some((prefix_length, chunk, chunk_length)) = next else {
            if !rest.is_empty() {
                return Err(format!("parsing time {value:?}: extra text: {rest:?}"));
            }
            break;
        };
        let chunk_text = &rest_layout[prefix_length..prefix_length + chunk_length];
        rest_layout = &rest_layout[prefix_length + chunk_length..];
        let before = rest;
        let failed = || bad(&format!("{before:?} as {chunk_text:?}"));
        match chunk {
            Chunk::Year => {
                let digits = rest.get(..2).filter(|d| d.bytes().all(|b| b.is_ascii_digit())).ok_or_else(failed)?;
                let two: i64 = digits.parse().map_err(|_| failed())?;
                year = if two >= 69 { 1900 + two } else { 2000 + two };
                rest = &rest[2..];
            }
            Chunk::LongYear => {
                let digits = rest.get(..4).filter(|d| d.bytes().all(|b| b.is_ascii_digit())).ok_or_else(failed)?;
                year = digits.parse().map_err(|_| failed())?;
                rest = &rest[4..];
            }
            Chunk::Month | Chunk::LongMonth => {
                month = Some(take_name(&mut rest, &MONTH_NAMES, chunk == Chunk::Month).ok_or_else(failed)? as u32 + 1);
            }
            Chunk::NumMonth | Chunk::ZeroMonth => {
                let parsed = take_number(&mut rest, chunk == Chunk::ZeroMonth).ok_or_else(failed)?;
                month = Some(parsed);
                if !(1..=12).contains(&parsed) {
                    return Err(format!("parsing time {value:?}: month out of range"));
                }
            }
            Chunk::WeekDay | Chunk::LongWeekDay => {
                take_name(&mut rest, &DAY_NAMES, chunk == Chunk::WeekDay).ok_or_else(failed)?;
            }
            Chunk::Day | Chunk::UnderDay | Chunk::ZeroDay => {
                if chunk == Chunk::UnderDay && rest.starts_with(' ') {
                    rest = &rest[1..];
                }
                day = Some(take_number(&mut rest, chunk == Chunk::ZeroDay).ok_or_else(failed)?);
            }
            Chunk::UnderYearDay | Chunk::ZeroYearDay => {
                if chunk == Chunk::UnderYearDay {
                    rest = rest.strip_prefix("  ").or_else(|| rest.strip_prefix(' ')).unwrap_or(rest);
                }
                let digits = rest.get(..3).filter(|d| d.bytes().all(|b| b.is_ascii_digit())).ok_or_else(failed)?;
                let parsed: u32 = digits.parse().map_err(|_| failed())?;
                if !(1..=366).contains(&parsed) {
                    return Err(format!("parsing time {value:?}: day-of-year out of range"));
                }
                year_day = Some(parsed);
                rest = &rest[3..];
            }
            Chunk::Hour => {
                hour = take_number(&mut rest, false).ok_or_else(failed)?;
                if hour >= 24 {
                    return Err(format!("parsing time {value:?}: hour out of range"));
                }
            }
            Chunk::Hour12 | Chunk::ZeroHour12 => {
                hour = take_number(&mut rest, chunk == Chunk::ZeroHour12).ok_or_else(failed)?;
                if hour > 12 {
                    return Err(format!("parsing time {value:?}: hour out of range"));
                }
            }
            Chunk::Minute | Chunk::ZeroMinute => {
                minute = take_number(&mut rest, chunk == Chunk::ZeroMinute).ok_or_else(failed)?;
                if minute >= 60 {
                    return Err(format!("parsing time {value:?}: minute out of range"));
                }
            }
            Chunk::Second | Chunk::ZeroSecond => {
                second = take_number(&mut rest, chunk == Chunk::ZeroSecond).ok_or_else(failed)?;
                if second >= 60 {
                    return Err(format!("parsing time {value:?}: second out of range"));
                }
                // A fraction the layout does not mention is read anyway, as Go does.
                let bytes = rest.as_bytes();
                let layout_has_fraction = matches!(next_chunk(rest_layout), Some((0, Chunk::Fraction { .. }, _)));
                if bytes.len() >= 2
                    && matches!(bytes[0], b'.' | b',')
                    && bytes[1].is_ascii_digit()
                    && !layout_has_fraction
                {
                    let length = 1 + bytes[1..].iter().take_while(|b| b.is_ascii_digit()).count();
                    nanosecond = take_fraction(&mut rest, length).ok_or_else(failed)?;
                }
            }
            Chunk::UpperPm | Chunk::LowerPm => {
                let text = rest.get(..2).ok_or_else(failed)?;
                let (pm_text, am_text) = if chunk == Chunk::UpperPm { ("PM", "AM") } else { ("pm", "am") };
                if text == pm_text {
                    pm = true;
                } else if text == am_text {
                    am = true;
                } else {
                    return Err(failed());
                }
                rest = &rest[2..];
            }
            Chunk::Offset { iso, colon, minutes, seconds } => {
                if iso && rest.starts_with('Z') {
                    rest = &rest[1..];
                    utc = true;
                    continue;
                }
                let bytes = rest.as_bytes();
                let sign = match bytes.first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => return Err(failed()),
                };
                let mut cursor = &rest[1..];
                let hours = take_number(&mut cursor, true).ok_or_else(failed)?;
                let mut offset_minutes = 0;
                let mut offset_seconds = 0;
                if minutes {
                    if colon {
                        cursor = cursor.strip_prefix(':').ok_or_else(failed)?;
                    }
                    offset_minutes = take_number(&mut cursor, true).ok_or_else(failed)?;
                }
                if seconds {
                    if colon {
                        cursor = cursor.strip_prefix(':').ok_or_else(failed)?;
                    }
                    offset_seconds = take_number(&mut cursor, true).ok_or_else(failed)?;
                }
                if hours > 24 || offset_minutes > 60 || offset_seconds > 60 {
                    return Err(format!("parsing time {value:?}: time zone offset out of range"));
                }
                zone_offset = Some(sign * (hours * 3600 + offset_minutes * 60 + offset_seconds) as i32);
                rest = cursor;
            }
            Chunk::ZoneName => {
                if rest.starts_with("UTC") {
                    rest = &rest[3..];
                    utc = true;
                    continue;
                }
                let length = zone_abbreviation_length(rest).ok_or_else(failed)?;
                zone_name = Some(rest[..length].to_string());
                rest = &rest[length..];
            }
            Chunk::Fraction { digits, trim, .. } => {
                if trim {
                    let bytes = rest.as_bytes();
                    if bytes.len() < 2 || !matches!(bytes[0], b'.' | b',') || !bytes[1].is_ascii_digit() {
                        continue;
                    }
                    let length = 1 + bytes[1..].iter().take_while(|b| b.is_ascii_digit()).count();
                    nanosecond = take_fraction(&mut rest, length).ok_or_else(failed)?;
                } else {
                    nanosecond = take_fraction(&mut rest, 1 + usize::from(digits)).ok_or_else(failed)?;
                }
            }
        }
    }
    if pm && hour < 12 {
        hour += 12;
    } else if am && hour == 12 {
        hour = 0;
    }
    if let Some(year_day) = year_day {
        if year_day == 366 && !is_leap(year) {
            return Err(format!("parsing time {value:?}: day-of-year out of range"));
        }
        let (_, derived_month, derived_day) = civil_from_days(days_from_civil(year, 1, 1) + i64::from(year_day) - 1);
        if month.is_some_and(|month| month != derived_month) || day.is_some_and(|day| day != derived_day) {
            return Err(format!("parsing time {value:?}: day-of-year does not match month or day"));
        }
        month = Some(derived_month);
        day = Some(derived_day);
    }
    let month = month.unwrap_or(1);
    let day = day.unwrap_or(1);
    if day < 1 || day > days_in_month(month, year) {
        return Err(format!("parsing time {value:?}: day out of range"));
    }
    let wall = days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let time = |offset_seconds: i32, zone: ZoneName| GoTime {
        unix_seconds: wall - i64::from(offset_seconds),
        nanosecond,
        offset_seconds,
        zone,
    };
    if utc {
        return Ok(time(0, ZoneName::UTC));
    }
    if let Some(offset) = zone_offset {
        if offset == location.offset_seconds && zone_name.as_deref().is_none_or(|name| name == location.name.as_str()) {
            return Ok(time(offset, location.name));
        }
        return Ok(time(offset, ZoneName::new(zone_name.as_deref().unwrap_or(""))));
    }
    if let Some(name) = zone_name {
        if name == location.name.as_str() && !name.is_empty() {
            return Ok(time(location.offset_seconds, location.name));
        }
        // An abbreviation this location does not know: Go keeps the name with offset zero,
        // except GMT±N, whose offset it reads.
        let offset =
            name.strip_prefix("GMT").and_then(|hours| hours.parse::<i32>().ok()).map_or(0, |hours| hours * 3600);
        return Ok(time(offset, ZoneName::new(&name)));
    }
    Ok(time(location.offset_seconds, location.name))
}

/// Matches the literal text of a layout; a run of spaces matches a run of spaces.
fn skip_literal<'v>(mut value: &'v str, mut literal: &str) -> Option<&'v str> {
    while let Some(expected) = literal.chars().next() {
        if expected == ' ' {
            if !value.is_empty() && !value.starts_with(' ') {
                return None;
            }
            literal = literal.trim_start_matches(' ');
            value = value.trim_start_matches(' ');
            continue;
        }
        value = value.strip_prefix(expected)?;
        literal = &literal[expected.len_utf8()..];
    }
    Some(value)
}

/// Go's `time.ParseDuration`: `[-+]` then numbers with units (`ns`, `us`, `µs`, `ms`, `s`,
/// `m`, `h`), fractions allowed (`1.5h`), in nanoseconds.
pub(super) fn parse_duration_ns(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let limit: u128 = 1 << 63;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let whole_length = rest.bytes().take_while(u8::is_ascii_digit).count();
        let whole_digits = &rest[..whole_length];
        rest = &rest[whole_length..];
        let mut fraction_digits = "";
        if let Some(after_point) = rest.strip_prefix('.') {
            let length = after_point.bytes().take_while(u8::is_ascii_digit).count();
            fraction_digits = &after_point[..length];
            rest = &after_point[length..];
        } else if whole_length == 0 {
            return Err(invalid());
        }
        if whole_digits.is_empty() && fraction_digits.is_empty() {
            return Err(invalid());
        }
        let unit_length = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        if unit_length == 0 {
            return Err(format!("time: missing unit in duration {text:?}"));
        }
        let unit_nanos: u128 = match &rest[..unit_length] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(format!("time: unknown unit {other:?} in duration {text:?}")),
        };
        rest = &rest[unit_length..];
        let whole: u128 = if whole_digits.is_empty() { 0 } else { whole_digits.parse().map_err(|_| invalid())? };
        let mut component = whole.checked_mul(unit_nanos).filter(|&v| v <= limit).ok_or_else(invalid)?;
        if !fraction_digits.is_empty() {
            // Nanosecond-exact for every unit: at most 19 fraction digits matter.
            let kept = &fraction_digits[..fraction_digits.len().min(19)];
            let numerator: u128 = kept.parse().map_err(|_| invalid())?;
            let scale = 10u128.pow(kept.len() as u32);
            component += numerator * unit_nanos / scale;
        }
        total = total.checked_add(component).filter(|&v| v <= limit).ok_or_else(invalid)?;
    }
    if negative {
        Ok((total as i128).wrapping_neg() as i64)
    } else if total > i64::MAX as u128 {
        Err(invalid())
    } else {
        Ok(total as i64)
    }
}
