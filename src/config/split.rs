//! Cutting a large job file in two so that its halves parse on two threads: the TOML parse
//! is most of the time it takes to load 10,000 jobs. The cut is at a `[jobs.NAME]` header
//! line in the second half of the file. Whether it was a good place is decided by the
//! parser itself: when the first half parses cleanly on its own, the cut was outside any
//! string, array or inline table, so the second half parses as it would in the whole file.
//! What remains is TOML's rule that a table is defined once: the halves must not define
//! the same table ([`disjoint`]), and shapes where that is not visible in the parsed
//! halves (`[[arrays of tables]]`, an explicit `[jobs]` table, keys before the first
//! header) are not cut at all.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Smaller files parse whole: a thread costs more than it saves.
pub(super) const MIN_CUT: usize = 128 * 1024;

/// Where to cut `text`, if it is worth cutting and has a shape that can be cut: the start
/// of a `[jobs.NAME]` header line in its second half.
pub(super) fn cut(text: &str) -> Option<usize> {
    if text.len() < MIN_CUT {
        return None;
    }
    // Keys before the first header (the root table), arrays of tables and `[jobs]`
    // define tables in ways the parsed halves do not show; such files are parsed whole.
    if !starts_with_header(text)
        || memchr::memmem::find(text.as_bytes(), b"[[").is_some()
        || memchr::memmem::find(text.as_bytes(), b"[jobs]").is_some()
    {
        return None;
    }
    let middle = text.len() / 2;
    let finder = memchr::memmem::Finder::new(b"\n[jobs.");
    finder
        .find_iter(&text.as_bytes()[middle..])
        .map(|i| middle + i + 1)
        .find(|&at| job_header(&text[at..]))
}

/// Whether the first line that is not blank or a comment is a table header.
fn starts_with_header(text: &str) -> bool {
    text.lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with('['))
}

/// Whether `rest` starts with a `[jobs.NAME]` line with a plain NAME.
fn job_header(rest: &str) -> bool {
    let line = rest.lines().next().unwrap_or_default();
    let Some(inner) = line.strip_prefix("[jobs.") else {
        return false;
    };
    let Some((name, after)) = inner.split_once(']') else {
        return false;
    };
    let after = after.trim_start();
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && (after.is_empty() || after.starts_with('#'))
}

/// Whether the two halves define different tables: no top-level table but `jobs` in both,
/// and no job in both.
pub(super) fn disjoint(first: &Spanned<DeTable<'_>>, second: &Spanned<DeTable<'_>>) -> bool {
    let (first, second) = (first.get_ref(), second.get_ref());
    second.iter().all(|(key, value)| {
        let Some(before) = first.get(key.get_ref().as_ref()) else {
            return true;
        };
        match (key.get_ref().as_ref(), before.get_ref(), value.get_ref()) {
            ("jobs", DeValue::Table(a), DeValue::Table(b)) => b
                .keys()
                .all(|name| !a.contains_key(name.get_ref().as_ref())),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(jobs: usize, extra: &str) -> String {
        let mut text = String::from("# a job file\n[daemon]\ntimezone = \"UTC\"\n\n");
        for i in 0..jobs {
            text.push_str(&format!(
                "[jobs.j{i}]\nschedule = \"0 {} 3 * * *\"\ncommand = \"echo {i}\"\n",
                i % 60
            ));
        }
        text.push_str(extra);
        text
    }

    fn parsed(text: &str) -> Spanned<DeTable<'_>> {
        let (table, errors) = DeTable::parse_recoverable(text);
        assert!(errors.is_empty(), "{errors:?}");
        table
    }

    #[test]
    fn a_large_plain_file_is_cut_at_a_job_header_in_its_second_half() {
        let text = big(5000, "");
        let at = cut(&text).expect("cut");
        assert!(at >= text.len() / 2);
        assert!(text[at..].starts_with("[jobs.j"));
        assert!(text[..at].ends_with('\n'));
        assert!(disjoint(&parsed(&text[..at]), &parsed(&text[at..])));
    }

    #[test]
    fn small_files_and_files_of_other_shapes_are_not_cut() {
        let cases = [
            (big(10, ""), "small"),
            (
                format!("title = \"x\"\n{}", big(5000, "")),
                "a top-level key",
            ),
            (big(5000, "[[things]]\nx = 1\n"), "an array of tables"),
            (
                big(5000, "[jobs]\nx.schedule = \"@daily\"\n"),
                "a [jobs] table",
            ),
        ];
        for (text, shape) in cases {
            assert_eq!(cut(&text), None, "{shape}");
        }
    }

    #[test]
    fn only_plain_job_headers_are_places_to_cut() {
        assert!(job_header(
            "[jobs.backup-1]  # nightly\nschedule = \"@daily\"\n"
        ));
        assert!(!job_header("[jobs.\"a b\"]\n"));
        assert!(!job_header("[jobs.a.env]\n"));
        assert!(!job_header("[jobs. a]\n"));
        assert!(!job_header("[jobs.a] x = 1\n"));
    }

    #[test]
    fn halves_that_define_the_same_table_are_not_disjoint() {
        let pairs = [
            ("[jobs.a]\nx = 1\n", "[jobs.a.env]\nA = \"1\"\n", false),
            (
                "[daemon]\nwatch = true\n",
                "[jobs.b]\n[daemon]\nwatch = false\n",
                false,
            ),
            ("[foo]\nx = 1\n", "[jobs.b]\n[foo]\ny = 1\n", false),
            ("[daemon]\n[jobs.a]\nx = 1\n", "[jobs.b]\nx = 1\n", true),
        ];
        for (first, second, expected) in pairs {
            assert_eq!(
                disjoint(&parsed(first), &parsed(second)),
                expected,
                "{first:?} / {second:?}"
            );
        }
    }
}
