//! The one duration grammar every flag uses (`--timeout`, `--scan-timeout`,
//! `--deploy-timeout`, `--poll-interval`, `--findings-settle`,
//! `--http-timeout`, strategy bakes, `HOIST_*` variables alike): a run of
//! number-and-unit parts — `500ms`, `90s`, `10m`, `1h`, `1m30s`, `1h30m` —
//! or plain seconds (`600`, `2.5`). Written by hand: humantime (the
//! well-kept crate for this) reads `1m30s` but not plain seconds, which
//! every `HOIST_*` variable has always taken, and writes `1m 30s` with a
//! space that no flag would read back.

use std::time::Duration;

/// The longest duration hoist takes: a week (AWS's own waits are shorter).
const MAX_SECS: f64 = 7.0 * 86_400.0;

/// `raw` as a duration, or why not (`'{raw}' is not a duration: …`).
pub fn parse(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    let bad = |why: &str| {
        format!(
            "'{raw}' is not a duration: {why} (write e.g. 500ms, 90s, 10m, 1h, 1m30s or plain seconds)"
        )
    };
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    let total = if let Ok(secs) = s.parse::<f64>() {
        secs
    } else {
        let mut total = 0.0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| bad("a number without a unit follows another part"))?;
            if digits == 0 {
                return Err(bad("a unit without a number"));
            }
            let n: f64 = rest[..digits]
                .parse()
                .map_err(|_| bad("a malformed number"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let factor = match &rest[..unit_len] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                other => return Err(bad(&format!("unknown unit '{other}' (use ms, s, m or h)"))),
            };
            total += n * factor;
            rest = &rest[unit_len..];
        }
        total
    };
    if !total.is_finite() || !(0.0..=MAX_SECS).contains(&total) {
        return Err(format!("'{raw}' is out of range (0 to a week)"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// The same, for a timeout: zero would fail every wait.
pub fn parse_timeout(raw: &str) -> Result<Duration, String> {
    match parse(raw)? {
        d if d.is_zero() => Err(format!("'{raw}': a timeout of 0 would fail every wait")),
        d => Ok(d),
    }
}

/// How hoist writes a duration, in the grammar `parse` reads: `45s`, `5m`,
/// `1m30s`, `1h1m`, `1.5s`, `250ms`.
pub fn show(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    if d.subsec_millis() != 0 && d < Duration::from_secs(60) {
        return format!("{}s", (d.as_secs_f64() * 10.0).round() / 10.0);
    }
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h{m}m"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// `show` for a number of seconds (a report's `*_secs`); a negative or
/// non-finite number shows as 0ms.
pub fn show_secs(secs: f64) -> String {
    show(Duration::try_from_secs_f64(secs).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_show() {
        let ms = Duration::from_millis;
        let table = [
            ("500ms", ms(500)),
            ("90s", ms(90_000)),
            ("10m", ms(600_000)),
            ("1h", ms(3_600_000)),
            ("1m30s", ms(90_000)),
            ("1h30m", ms(5_400_000)),
            ("2m500ms", ms(120_500)),
            ("600", ms(600_000)),
            ("2.5", ms(2_500)),
            ("1.5m", ms(90_000)),
            (" 45s ", ms(45_000)),
            ("0", ms(0)),
        ];
        for (raw, want) in table {
            assert_eq!(parse(raw), Ok(want), "{raw}");
        }
        for bad in [
            "", "5x", "m", "s5", "-3s", "1m30", "1..5s", "8d", "200h", "1 m",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse_timeout("0s").is_err());
        for (d, want) in [
            (ms(250), "250ms"),
            (ms(1_500), "1.5s"),
            (ms(30_000), "30s"),
            (ms(300_000), "5m"),
            (ms(90_000), "1m30s"),
            (ms(3_660_000), "1h1m"),
            (ms(7_200_000), "2h"),
            (ms(3_661_000), "1h1m1s"),
        ] {
            assert_eq!(show(d), want);
            assert_eq!(parse(&show(d)), Ok(d), "{want} reads back");
        }
        for (secs, want) in [
            (42.06, "42.1s"),
            (0.5, "500ms"),
            (-1.0, "0ms"),
            (f64::NAN, "0ms"),
            (f64::INFINITY, "0ms"),
        ] {
            assert_eq!(show_secs(secs), want, "{secs}");
        }
    }
}
