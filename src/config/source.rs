//! Reading spanned TOML: byte offsets to `line:col`, typed views of values with
//! user-facing messages, and the collected list of errors.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where an error is: which part of the file it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Section {
    /// Top level (syntax errors, unknown tables).
    File,
    Daemon,
    Defaults,
    Job(String),
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Section::File => Ok(()),
            Section::Daemon => f.write_str("[daemon]: "),
            Section::Defaults => f.write_str("[defaults]: "),
            Section::Job(name) => write!(f, "job `{name}`: "),
        }
    }
}

/// One problem in the job file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub col: usize,
    pub section: Section,
    pub key: Option<String>,
    pub message: String,
}

/// Every problem found in one job file, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file as the user named it.
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// An error about the file as a whole (it cannot be read, it is empty of jobs...).
    pub fn whole_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        let error = ConfigError {
            line: 1,
            col: 1,
            section: Section::File,
            key: None,
            message: message.into(),
        };
        ConfigErrors {
            file: file.into(),
            errors: vec![error],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            write!(f, "{}:{}:{}: {}", self.file, e.line, e.col, e.section)?;
            if let Some(key) = &e.key {
                write!(f, "key `{key}`: ")?;
            }
            writeln!(f, "{}", e.message)?;
        }
        let n = self.errors.len();
        let noun = if n == 1 { "error" } else { "errors" };
        write!(f, "{}: {n} {noun}; fix them and try again", self.file)
    }
}

/// The text of the file with a line index, and the errors found so far.
pub struct Source<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
    /// Where in `text` the spans given to [`Source::error`] start counting: the offset of
    /// the part of the file whose values are being checked (see `split`).
    base: usize,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        Source {
            text,
            line_starts,
            errors: Vec::new(),
            base: 0,
        }
    }

    /// Spans from now on are relative to `base`: the values checked next come from the
    /// part of the file that starts there.
    pub fn set_base(&mut self, base: usize) {
        self.base = base;
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    pub fn error(
        &mut self,
        span: Range<usize>,
        section: &Section,
        key: Option<&str>,
        message: impl Into<String>,
    ) {
        let (line, col) = self.position(self.base + span.start);
        self.errors.push(ConfigError {
            line,
            col,
            section: section.clone(),
            key: key.map(str::to_owned),
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn into_errors(mut self, file: String) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.col));
        ConfigErrors {
            file,
            errors: self.errors,
        }
    }
}

/// A key and its value, with spans, as found in a table.
pub struct Entry<'t, 'i> {
    pub key: &'t Spanned<std::borrow::Cow<'i, str>>,
    pub value: &'t Spanned<DeValue<'i>>,
}

impl Entry<'_, '_> {
    pub fn name(&self) -> &str {
        self.key.get_ref()
    }
}

/// The entries of a table in file order.
pub fn entries<'t, 'i>(table: &'t DeTable<'i>) -> Vec<Entry<'t, 'i>> {
    let mut out: Vec<Entry<'t, 'i>> = table
        .iter()
        .map(|(key, value)| Entry { key, value })
        .collect();
    out.sort_by_key(|e| e.key.span().start);
    out
}

/// A short description of a value for messages: "integer `5`", "a table".
pub fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("string `{s}`"),
        DeValue::Integer(i) => format!("integer `{}`", i.as_str()),
        DeValue::Float(x) => format!("float `{}`", x.as_str()),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        DeValue::Datetime(d) => format!("datetime `{d}`"),
        DeValue::Array(_) => "an array".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

pub fn string<'v>(value: &'v DeValue<'_>) -> Result<&'v str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("expected a string, found {}", describe(value)))
}

pub fn boolean(value: &DeValue<'_>) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| format!("expected `true` or `false`, found {}", describe(value)))
}

/// A non-negative integer no larger than `max`.
pub fn integer(value: &DeValue<'_>, max: u64) -> Result<u64, String> {
    let Some(i) = value.as_integer() else {
        return Err(format!("expected an integer, found {}", describe(value)));
    };
    let text = i.as_str().replace('_', "");
    let parsed = match i.radix() {
        10 => text.parse::<i64>().ok(),
        radix => i64::from_str_radix(&text[2..], radix).ok(),
    };
    match parsed {
        Some(n) if n >= 0 && (n as u64) <= max => Ok(n as u64),
        _ => Err(format!("`{}` is out of range 0-{max}", i.as_str())),
    }
}

/// A humantime duration such as `"90s"` or `"1h 30m"`.
pub fn duration(value: &DeValue<'_>) -> Result<Duration, String> {
    let Some(text) = value.as_str() else {
        return Err(format!(
            "expected a duration string such as \"90s\" or \"1h 30m\", found {}",
            describe(value)
        ));
    };
    parse_duration(text)
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. \"90s\" or \"1h 30m\""))
}

/// A byte size such as `"64KiB"`, `"1MiB"` or `"4096"`.
pub fn size(value: &DeValue<'_>) -> Result<usize, String> {
    let text = match value {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => i.as_str().to_owned(),
        other => {
            return Err(format!(
                "expected a size such as \"64KiB\", found {}",
                describe(other)
            ));
        }
    };
    parse_size(&text)
}

pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "`{text}`: unknown size unit `{other}` (use B, KiB, MiB or GiB)"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("`{text}` is not a size; write e.g. \"64KiB\""))
}

/// The closest of `known` to `key`, if it is close enough to be a likely typo.
pub fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let s = Source::new("a = 1\nbé = 2\n");
        assert_eq!(s.position(0), (1, 1));
        assert_eq!(s.position(6), (2, 1));
        assert_eq!(s.position(10), (2, 4)); // after "bé " (é is 2 bytes)
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("KiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .starts_with("`soon` is not a duration")
        );
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let known = ["timeout", "timezone", "kill_grace"];
        assert_eq!(suggest("timout", &known), Some("timeout"));
        assert_eq!(suggest("kill_grase", &known), Some("kill_grace"));
        assert_eq!(suggest("banana", &known), None);
    }
}
