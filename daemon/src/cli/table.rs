//! Text for people: aligned tables, humanized byte counts and ages.

/// Columns padded to their widest cell; numbers (right-aligned columns) are
/// marked by index in `right`.
pub fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = width.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = width.get(i).copied().unwrap_or(0);
            let pad = " ".repeat(w.saturating_sub(cell.chars().count()));
            let last = i + 1 == cells.len();
            if right.contains(&i) {
                out.push_str(&format!("{pad}{cell}"));
            } else if last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell}{pad}"));
            }
            if !last {
                out.push_str("  ");
            }
        }
        let mut out = out.trim_end().to_string();
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// 1536 → "1.5 KiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Seconds → "3d 4h", "5m 2s", "12s".
pub fn duration(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// A unix time as "5m 2s ago" relative to `now` ("-" if never).
pub fn ago(then: i64, now: i64) -> String {
    if then <= 0 {
        return "-".into();
    }
    format!("{} ago", duration(u64::try_from(now - then).unwrap_or(0)))
}

/// A unix time's UTC time of day, "13:04:05".
pub fn clock(unix: u64) -> String {
    let s = unix % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_people_write_them() {
        assert_eq!(
            (bytes(0), bytes(1023), bytes(1536), bytes(5 * 1024 * 1024)),
            ("0 B".into(), "1023 B".into(), "1.5 KiB".into(), "5.0 MiB".into())
        );
        assert_eq!(
            (duration(59), duration(61), duration(3 * 3600 + 120), duration(2 * 86_400 + 3600)),
            ("59s".into(), "1m 1s".into(), "3h 2m".into(), "2d 1h".into())
        );
        assert_eq!((ago(0, 100), ago(90, 100)), ("-".into(), "10s ago".into()));
        assert_eq!(clock(86_400 + 3661), "01:01:01");
    }

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let rows =
            vec![vec!["camera".into(), "1.5 KiB".into(), "x".into()], vec!["tv".into(), "10 B".into(), "y".into()]];
        let t = table(&["NAME", "OUT", "NOTE"], &rows, &[1]);
        assert_eq!(t, "NAME        OUT  NOTE\ncamera  1.5 KiB  x\ntv         10 B  y\n");
    }
}
