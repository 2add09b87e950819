//! Units for people: byte sizes (parsed as users write them, shown in binary units) and
//! times (UTC dates, "3 min ago"). Pure: the caller passes `now`.
//!
//! Sizes: a number (decimals allowed) and an optional unit, case-insensitive, spaces
//! allowed between them. `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` are powers of
//! 1024; `KB`, `MB`, `GB`, `TB` are powers of 1000; `B` or no unit is bytes.
//!
//! Dates are computed here (Hinnant's days-to-civil, 15 lines) rather than with `time` or
//! `chrono`: this crate stays free of clock-reading dependencies and needs only UTC.

/// `n` in the largest binary unit that keeps it ≥ 1, or `None` below 1 KiB.
fn scaled(n: u64) -> Option<(f64, &'static str)> {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return None;
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    Some((v, UNITS[unit]))
}

/// Parses `500M`, `2G`, `1.5GiB`, `100 MB`, `4096`.
pub fn parse_size(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let hint = "use a number with an optional unit, e.g. 500M, 2G, 1.5GiB or 100MB";
    if s.is_empty() {
        return Err(format!("an empty size is not a size; {hint}"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.trim();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(format!("'{input}' has an unknown unit '{unit}'; {hint}")),
    };
    let value: f64 = match number.parse() {
        Ok(v) if number.chars().filter(|&c| c == '.').count() <= 1 => v,
        _ => return Err(format!("'{input}' does not start with a number; {hint}")),
    };
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("'{input}' is too large"));
    }
    if bytes < 1.0 {
        return Err(format!(
            "'{input}' is less than one byte; a storage cap must be at least 1 byte"
        ));
    }
    Ok(bytes.round() as u64)
}

/// `2 GiB`, `2.1 GiB`, `500 MiB`, `812 B`: one decimal, dropped when it is zero.
pub fn format_size(n: u64) -> String {
    match scaled(n) {
        None => format!("{n} B"),
        Some((v, unit)) => {
            let text = format!("{v:.1}");
            let text = text.strip_suffix(".0").unwrap_or(&text);
            format!("{text} {unit}")
        }
    }
}

/// `1.2 MiB`.
/// Always one decimal, so columns of sizes line up (`3.0 MiB`); [`format_size`] is the
/// trimmed form for messages.
pub fn human_bytes(n: u64) -> String {
    match scaled(n) {
        None => format!("{n} B"),
        Some((v, unit)) => format!("{v:.1} {unit}"),
    }
}

/// `2024-05-01 12:34:56 UTC`.
pub fn format_utc(ms: u64) -> String {
    let (date, time) = civil(ms);
    format!("{date} {time} UTC")
}

/// `2024-05-01T12:34:56Z`.
pub fn format_rfc3339(ms: u64) -> String {
    let (date, time) = civil(ms);
    format!("{date}T{time}Z")
}

fn civil(ms: u64) -> (String, String) {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let time = format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    (date, time)
}

/// `12 s ago`, `3 min ago`, `5 h ago`, `2 d ago`.
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    if then_ms > now_ms.saturating_add(1000) {
        return "in the future (check the clocks)".into();
    }
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        let cases: &[(&str, u64)] = &[
            ("500M", 500 << 20),
            ("2G", 2 << 30),
            ("2g", 2 << 30),
            ("1.5GiB", 3 << 29),
            ("1.5 GiB", 3 << 29),
            ("100MB", 100_000_000),
            ("4096", 4096),
            ("4096B", 4096),
            ("1T", 1 << 40),
            ("10KiB", 10240),
            ("10kb", 10000),
            (" 7M ", 7 << 20),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(*bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_what_to_write() {
        for bad in [
            "",
            "G",
            "2X",
            "two G",
            "1.2.3G",
            "-5M",
            "0",
            "0.1B",
            "99999999999T",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains('\'') || e.contains("empty"), "{bad}: {e}");
        }
        assert!(parse_size("2X").unwrap_err().contains("e.g. 500M"));
    }

    #[test]
    fn sizes_format() {
        assert_eq!(format_size(812), "812 B");
        assert_eq!(format_size(2 << 30), "2 GiB");
        assert_eq!(format_size((2.1 * (1u64 << 30) as f64) as u64), "2.1 GiB");
        assert_eq!(format_size(500 << 20), "500 MiB");
    }
}
