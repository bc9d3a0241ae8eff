//! Cutting a large job file into pieces that two threads parse at once: the TOML parse is
//! most of the time it takes to load 10,000 jobs. Each cut is at a `[jobs.NAME]` header
//! line. Whether it was a good place is decided by the parser itself: when every piece
//! before a cut parses cleanly on its own, the cut is outside any string, array or inline
//! table, so the piece after it parses as it would in the whole file. What remains is
//! TOML's rule that a table is defined once: no two pieces may define the same table
//! ([`disjoint`]), and shapes where that is not visible in the parsed pieces
//! (`[[arrays of tables]]`, an explicit `[jobs]` table, keys before the first header) are
//! not cut at all.
//!
//! The pieces are small (about [`PIECE`] bytes of text) rather than one half per thread:
//! the parser lexes a whole piece into tokens and events before it builds the tables, and
//! for a small piece that scratch space fits in the CPU's cache and is reused, piece after
//! piece, instead of being fresh pages (about 9 MB at 10,000 jobs in two halves).

use std::collections::HashSet;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Smaller files parse whole: a thread costs more than it saves.
pub(super) const MIN_CUT: usize = 128 * 1024;

/// About how much text each piece has.
pub(super) const PIECE: usize = 32 * 1024;

/// Where each piece of `text` starts: `[0]` when the file is not worth cutting or has a
/// shape that cannot be cut, else `0` and the start of a `[jobs.NAME]` header line every
/// [`PIECE`] bytes or so.
pub(super) fn pieces(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    if text.len() < MIN_CUT {
        return starts;
    }
    // Keys before the first header (the root table), arrays of tables and `[jobs]`
    // define tables in ways the parsed pieces do not show; such files are parsed whole.
    if !starts_with_header(text)
        || memchr::memmem::find(text.as_bytes(), b"[[").is_some()
        || memchr::memmem::find(text.as_bytes(), b"[jobs]").is_some()
    {
        return starts;
    }
    let finder = memchr::memmem::Finder::new(b"\n[jobs.");
    let mut from = PIECE;
    while from + PIECE / 2 < text.len() {
        let Some(at) = finder
            .find_iter(&text.as_bytes()[from..])
            .map(|i| from + i + 1)
            .find(|&at| job_header(&text[at..]))
        else {
            break;
        };
        starts.push(at);
        from = at + PIECE;
    }
    starts
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

/// Whether the pieces define different tables: no top-level table but `jobs` in two of
/// them, and no job in two of them.
pub(super) fn disjoint(pieces: &[Spanned<DeTable<'_>>]) -> bool {
    let job_count = pieces
        .iter()
        .filter_map(|p| p.get_ref().get("jobs")?.get_ref().as_table())
        .map(DeTable::len)
        .sum();
    let mut jobs: HashSet<&str> = HashSet::with_capacity(job_count);
    let mut tables: HashSet<&str> = HashSet::new();
    let mut jobs_tables = false;
    for piece in pieces {
        for (key, value) in piece.get_ref() {
            let fresh = match (key.get_ref().as_ref(), value.get_ref()) {
                ("jobs", DeValue::Table(table)) => {
                    jobs_tables = true;
                    table
                        .keys()
                        .all(|name| jobs.insert(name.get_ref().as_ref()))
                }
                (key, _) => tables.insert(key),
            };
            if !fresh {
                return false;
            }
        }
    }
    // Not `jobs` as a table in one piece and as something else in another.
    !(jobs_tables && tables.contains("jobs"))
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
    fn a_large_plain_file_is_cut_at_job_headers_about_a_piece_apart() {
        let text = big(5000, "");
        let starts = pieces(&text);
        assert!(
            starts.len() > text.len() / PIECE / 2,
            "{} pieces",
            starts.len()
        );
        assert_eq!(starts[0], 0);
        for pair in starts.windows(2) {
            let (at, next) = (pair[0], pair[1]);
            assert!(
                next - at >= PIECE && next - at < PIECE + 200,
                "{at}..{next}"
            );
            assert!(text[next..].starts_with("[jobs.j"));
            assert!(text[..next].ends_with('\n'));
        }
        // The last piece is not a small remainder.
        assert!(text.len() - starts[starts.len() - 1] >= PIECE / 2);
        let mut ends = starts[1..].to_vec();
        ends.push(text.len());
        let parts: Vec<_> = starts
            .iter()
            .zip(&ends)
            .map(|(&a, &b)| parsed(&text[a..b]))
            .collect();
        assert!(disjoint(&parts));
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
            assert_eq!(pieces(&text), vec![0], "{shape}");
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
    fn pieces_that_define_the_same_table_are_not_disjoint() {
        let cases: [(&[&str], bool); 6] = [
            (&["[jobs.a]\nx = 1\n", "[jobs.a.env]\nA = \"1\"\n"], false),
            (
                &[
                    "[daemon]\nwatch = true\n",
                    "[jobs.b]\n[daemon]\nwatch = false\n",
                ],
                false,
            ),
            (&["[foo]\nx = 1\n", "[jobs.b]\n[foo]\ny = 1\n"], false),
            (&["[daemon]\n[jobs.a]\nx = 1\n", "[jobs.b]\nx = 1\n"], true),
            // The same job in the first and the third of three pieces.
            (
                &[
                    "[jobs.a]\nx = 1\n",
                    "[jobs.b]\nx = 1\n",
                    "[jobs.a]\ny = 1\n",
                ],
                false,
            ),
            (&["jobs = 1\n", "[jobs.b]\nx = 1\n"], false),
        ];
        for (texts, expected) in cases {
            let parts: Vec<_> = texts.iter().map(|t| parsed(t)).collect();
            assert_eq!(disjoint(&parts), expected, "{texts:?}");
        }
    }
}
