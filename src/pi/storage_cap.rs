//! The mirror's storage cap (`serve --max-storage SIZE`): parsing sizes as users write them,
//! and deciding whether a site may fetch more. Pure: the caller measures what is stored.
//!
//! Sizes: a number (decimals allowed) and an optional unit, case-insensitive, spaces
//! allowed between them. `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` are powers of
//! 1024; `KB`, `MB`, `GB`, `TB` are powers of 1000; `B` or no unit is bytes.

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
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    let text = format!("{v:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// The message shown when the cap stops a site. Starts with `storage cap reached`.
pub fn cap_reason(used: u64, cap: u64) -> String {
    format!(
        "storage cap reached ({} of {} used); raise --max-storage or remove sites",
        format_size(used),
        format_size(cap)
    )
}

/// May a site fetch more data, with `used` bytes stored and a cap of `cap` (None: no cap)?
/// `Err` carries the reason to show.
pub fn may_fetch(used: u64, cap: Option<u64>) -> Result<(), String> {
    match cap {
        Some(cap) if used >= cap => Err(cap_reason(used, cap)),
        _ => Ok(()),
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

    #[test]
    fn the_cap_decides() {
        assert_eq!(may_fetch(u64::MAX, None), Ok(()));
        assert_eq!(may_fetch(0, Some(1)), Ok(()));
        assert_eq!(may_fetch((2 << 30) - 1, Some(2 << 30)), Ok(()));
        let e = may_fetch((2.1 * (1u64 << 30) as f64) as u64, Some(2 << 30)).unwrap_err();
        assert_eq!(
            e,
            "storage cap reached (2.1 GiB of 2 GiB used); raise --max-storage or remove sites"
        );
        assert!(may_fetch(2 << 30, Some(2 << 30)).is_err());
    }
}
