//! What the read commands share: the state opened without creating it, times for people
//! (absolute and relative), aligned tables that fit the terminal (100 columns when it is
//! not a terminal), and colour only on a terminal without `NO_COLOR`.

use std::io::IsTerminal;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::config::Config;
use crate::error::Error;
use crate::store::Sqlite;

/// The widest a table line gets when the width of the terminal is not known.
pub const WIDTH: usize = 100;

/// How text output is shown: coloured or not, and how wide a line may get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Look {
    pub color: bool,
    pub width: usize,
}

impl Look {
    /// Plain text of the default width (files, pipes, tests).
    pub const PLAIN: Look = Look {
        color: false,
        width: WIDTH,
    };

    /// For stdout: colour on a terminal without `NO_COLOR`; the terminal's width.
    pub fn of_stdout() -> Look {
        let tty = std::io::stdout().is_terminal();
        Look {
            color: tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            width: if tty { terminal_width() } else { None }.unwrap_or(WIDTH),
        }
    }
}

/// The width of the terminal on stdout, if it says.
fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass; fd 1 stays open.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col >= 40).then_some(usize::from(size.ws_col))
}

/// The state database of `config`, or None when no daemon ever ran on it.
pub fn open_state(config: &Config) -> Result<Option<Sqlite>, Error> {
    let path = &config.daemon.state;
    if !path.exists() {
        return Ok(None);
    }
    Sqlite::open(path)
        .map(Some)
        .map_err(|e| Error::usage(e.to_string()))
}

/// The state, or a usage error saying that nothing ran yet.
pub fn require_state(config: &Config) -> Result<Sqlite, Error> {
    open_state(config)?.ok_or_else(|| {
        Error::usage(format!(
            "no state at `{}` yet: no daemon has run with this job file; start one with `schedctl daemon`",
            config.daemon.state.display()
        ))
    })
}

/// A run state (or a word like it), coloured when `color`.
pub fn paint(state: &str, color: bool) -> String {
    if !color {
        return state.to_owned();
    }
    let code = match state {
        "succeeded" | "leader" => "32",
        "failed" | "timed_out" => "31",
        "running" | "pending" => "36",
        "skipped" | "cancelled" | "abandoned" | "paused" => "33",
        _ => return state.to_owned(),
    };
    format!("\x1b[{code}m{state}\x1b[0m")
}

/// `12s`, `3m 12s`, `1h 5m`, `2d 3h`: two units at most.
pub fn short_duration(d: SignedDuration) -> String {
    let ms = d.as_millis().unsigned_abs();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) if m == 0 => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        _ if h == 0 => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

/// `in 3m`, `2h ago`, `now`.
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let d = t.duration_since(now);
    if d.as_secs().abs() < 1 {
        return "now".to_owned();
    }
    let whole = SignedDuration::from_secs(d.as_secs().abs());
    let text = short_duration(whole);
    let first = text.split(' ').next().unwrap_or(&text).to_owned();
    if d.is_negative() {
        format!("{first} ago")
    } else {
        format!("in {first}")
    }
}

/// `2026-11-25 02:30:00 EST`.
pub fn local(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// RFC 3339 in `tz` (`2026-11-25T02:30:00-05:00`), for JSON.
pub fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    super::next::rfc3339(t, tz)
}

/// RFC 3339 in UTC with milliseconds, for JSON.
pub fn rfc3339_utc(t: Timestamp) -> String {
    format!("{t:.3}")
}

/// Rows of cells, left-aligned in columns two spaces apart. The `flex` column is cut
/// (with `…`) so that lines fit the width; colour is applied after alignment.
pub struct Table {
    rows: Vec<Vec<String>>,
    /// Per row, per column: the coloured form of the cell, if any.
    painted: Vec<Vec<Option<String>>>,
    flex: usize,
}

impl Table {
    pub fn new(headers: &[&str], flex: usize) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
            painted: vec![vec![None; headers.len()]],
            flex,
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.painted.push(vec![None; cells.len()]);
        self.rows.push(cells);
    }

    /// Colour cell `col` of the last row as its value (a state) when `color`.
    pub fn paint_last(&mut self, col: usize, color: bool) {
        if let (Some(row), Some(painted)) = (self.rows.last(), self.painted.last_mut()) {
            if color {
                painted[col] = Some(paint(&row[col], true));
            }
        }
    }

    pub fn render(&self, width: usize) -> String {
        let cols = self.rows[0].len();
        let len = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = (0..cols)
            .map(|c| self.rows.iter().map(|r| len(&r[c])).max().unwrap_or(0))
            .collect();
        let total = widths.iter().sum::<usize>() + 2 * (cols - 1);
        if total > width {
            widths[self.flex] = widths[self.flex].saturating_sub(total - width).max(12);
        }
        let mut out = String::new();
        for (r, row) in self.rows.iter().enumerate() {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let w = widths[c];
                let text: String = if len(cell) > w {
                    cell.chars()
                        .take(w.saturating_sub(1))
                        .chain(std::iter::once('…'))
                        .collect()
                } else {
                    cell.clone()
                };
                let pad = w - len(&text);
                let shown = self.painted[r][c]
                    .clone()
                    .filter(|_| text == *cell)
                    .unwrap_or(text);
                line.push_str(&shown);
                if c + 1 < cols {
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn durations_and_relative_times() {
        let cases = [
            (0, "0ms"),
            (12_000, "12s"),
            (192_000, "3m 12s"),
            (3_900_000, "1h 5m"),
            (7_200_000, "2h"),
            (183_600_000, "2d 3h"),
        ];
        for (ms, want) in cases {
            assert_eq!(short_duration(SignedDuration::from_millis(ms)), want);
        }
        let now = t("2026-11-24T10:00:00Z");
        assert_eq!(relative(t("2026-11-24T10:03:30Z"), now), "in 3m");
        assert_eq!(relative(t("2026-11-24T08:00:00Z"), now), "2h ago");
        assert_eq!(relative(now, now), "now");
    }

    #[test]
    fn tables_align_and_cut_the_flexible_column_to_fit() {
        let mut table = Table::new(&["A", "LONG"], 1);
        table.row(vec!["x".into(), "y".repeat(200)]);
        let text = table.render(WIDTH);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "A  LONG");
        assert_eq!(lines[1].chars().count(), WIDTH);
        assert!(lines[1].ends_with('…'));
        let wide = table.render(300);
        assert!(wide.lines().nth(1).expect("row").ends_with('y'), "{wide}");
    }
}
