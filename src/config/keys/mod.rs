//! The keys of `[daemon]`, `[defaults]` and `[jobs.NAME]`: each checked on its own so
//! that one bad value never hides another, then combined into a [`Config`]. `daemon`
//! checks `[daemon]`; `job` checks job tables and `[defaults]` and assembles each job.

mod daemon;
mod job;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use toml::Spanned;
use toml::de::{DeTable, Error as ParseError};

use super::source::{self, ConfigErrors, Entry, Section, Source};
use super::split;
use super::{Config, Settings, Zone};
use crate::schedule::Schedule;

pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let mut src = Source::new(text);
    let parts = match parse_parts(text) {
        Ok(parts) => parts,
        Err(syntax_errors) => {
            // Semantic checks on a half-parsed file would only add noise.
            for e in syntax_errors {
                let span = e.span().unwrap_or(0..0);
                src.error(
                    span,
                    &Section::File,
                    None,
                    e.message().trim().to_lowercase(),
                );
            }
            return Err(src.into_errors(file));
        }
    };
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut checker = Checker {
        src,
        zones: HashMap::new(),
        settings: HashSet::new(),
        last_settings: None,
        texts: HashSet::new(),
        schedules: HashMap::new(),
        base_dir,
    };

    // Each table with the offset of the part of the file it was parsed from.
    let (mut daemon, mut defaults, mut jobs) = (None, None, Vec::new());
    for (root, base) in &parts {
        checker.src.set_base(*base);
        for entry in source::entries(root.get_ref()) {
            let name = entry.name();
            if !matches!(name, "daemon" | "defaults" | "jobs") {
                let hint = if name == "job" {
                    " (jobs are tables named [jobs.NAME])".to_owned()
                } else {
                    " (expected [daemon], [defaults] or [jobs.NAME])".to_owned()
                };
                checker.src.error(
                    entry.key.span(),
                    &Section::File,
                    None,
                    format!("unknown table `{name}`{hint}"),
                );
                continue;
            }
            let Some(table) = entry.value.get_ref().as_table() else {
                checker.src.error(
                    entry.value.span(),
                    &Section::File,
                    None,
                    format!(
                        "`{name}` must be a table, found {}",
                        source::describe(entry.value.get_ref())
                    ),
                );
                continue;
            };
            match name {
                "daemon" => daemon = Some((table, *base)),
                "defaults" => defaults = Some((table, *base)),
                _ => jobs.push((table, *base)),
            }
        }
    }

    checker.src.set_base(daemon.map_or(0, |(_, base)| base));
    let daemon = checker.daemon(daemon.map(|(table, _)| table));
    let defaults = match defaults {
        Some((table, base)) => {
            checker.src.set_base(base);
            checker.job_keys(&Section::Defaults, table)
        }
        None => job::JobKeys::default(),
    };
    let mut out = Vec::with_capacity(jobs.iter().map(|(t, _)| t.len()).sum());
    for (table, base) in jobs {
        checker.src.set_base(base);
        for entry in source::entries(table) {
            if let Some(job) = checker.job(&entry, &defaults, &daemon.timezone) {
                out.push(Arc::new(job));
            }
        }
    }
    if checker.src.has_errors() {
        return Err(checker.src.into_errors(file));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Config {
        path: path.to_path_buf(),
        daemon,
        jobs: out,
    })
}

/// The parsed file, in one part or, when it is large and `split` finds where to cut it,
/// in pieces parsed on two threads; each with the byte offset where its text starts.
/// Unless every piece parses cleanly and they hold different tables, the whole file goes
/// through the parser, so that what is accepted and every error are exactly as in one pass.
fn parse_parts(text: &str) -> Result<Vec<(Spanned<DeTable<'_>>, usize)>, Vec<ParseError>> {
    let starts = split::pieces(text);
    if starts.len() > 1 {
        if let Some(parts) = parse_pieces(text, &starts) {
            return Ok(parts);
        }
    }
    let (root, errors) = DeTable::parse_recoverable(text);
    if errors.is_empty() {
        Ok(vec![(root, 0)])
    } else {
        Err(errors)
    }
}

/// The pieces of `text` that start at `starts`, parsed by two threads taking them in
/// turn; `None` as soon as one has an error, or when two define the same table.
///
/// This thread waits rather than parse: the parse trees and the parser's scratch space
/// then live in the two threads' own malloc arenas, and the jobs the check builds next
/// are laid out together in this thread's heap. Parsing here too scattered them among the
/// holes the scratch space left (~0.25 MB more resident memory at idle with 10,000 jobs,
/// as the freed pages around them cannot be given back), and was slower: the main heap
/// and a thread's arena growing at once contend for the process's memory map.
fn parse_pieces<'t>(text: &'t str, starts: &[usize]) -> Option<Vec<(Spanned<DeTable<'t>>, usize)>> {
    let next = AtomicUsize::new(0);
    let take = || {
        let mut parsed = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&start) = starts.get(i) else {
                return Some(parsed);
            };
            let end = starts.get(i + 1).copied().unwrap_or(text.len());
            let (table, errors) = DeTable::parse_recoverable(&text[start..end]);
            if !errors.is_empty() {
                // The other thread stops before its next piece.
                next.store(starts.len(), Ordering::Relaxed);
                return None;
            }
            parsed.push((i, table));
        }
    };
    let (first, second) = crate::memory::with_headroom(|| {
        std::thread::scope(|scope| {
            let (first, second) = (scope.spawn(take), scope.spawn(take));
            (first.join(), second.join())
        })
    });
    let mut parsed = first.ok()??;
    parsed.extend(second.ok()??);
    parsed.sort_unstable_by_key(|(i, _)| *i);
    let tables: Vec<_> = parsed.into_iter().map(|(_, table)| table).collect();
    split::disjoint(&tables).then(|| tables.into_iter().zip(starts.iter().copied()).collect())
}

struct Checker<'a> {
    src: Source<'a>,
    zones: HashMap<String, Result<Zone, String>>,
    /// One of each distinct job `Settings`, shared by the jobs that have them.
    settings: HashSet<Arc<Settings>>,
    last_settings: Option<Arc<Settings>>,
    /// One of each distinct schedule text, likewise.
    texts: HashSet<Arc<str>>,
    /// Each distinct `schedule` parsed once: files repeat the same few.
    schedules: HashMap<Arc<str>, Result<Schedule, String>>,
    base_dir: PathBuf,
}

impl Checker<'_> {
    /// The shared copy of `settings`.
    fn intern(&mut self, settings: Settings) -> Arc<Settings> {
        // Most jobs have the settings of the job before them (all from `[defaults]`).
        if let Some(last) = &self.last_settings {
            if **last == settings {
                return Arc::clone(last);
            }
        }
        let shared = match self.settings.get(&settings) {
            Some(shared) => Arc::clone(shared),
            None => {
                let shared = Arc::new(settings);
                self.settings.insert(Arc::clone(&shared));
                shared
            }
        };
        self.last_settings = Some(Arc::clone(&shared));
        shared
    }

    /// A `schedule` and its shared text.
    fn schedule(&mut self, text: &str) -> Result<(Schedule, Arc<str>), String> {
        if let Some((shared, parsed)) = self.schedules.get_key_value(text) {
            return parsed.clone().map(|s| (s, Arc::clone(shared)));
        }
        let parsed = Schedule::parse(text).map_err(|e| e.to_string());
        let shared = self.shared_text(text.to_owned());
        self.schedules.insert(Arc::clone(&shared), parsed.clone());
        parsed.map(|s| (s, shared))
    }

    /// The shared copy of a schedule's text.
    fn shared_text(&mut self, text: String) -> Arc<str> {
        if let Some(shared) = self.texts.get(text.as_str()) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = text.into();
        self.texts.insert(Arc::clone(&shared));
        shared
    }

    fn zone(&mut self, name: &str) -> Result<Zone, String> {
        if let Some(zone) = self.zones.get(name) {
            return zone.clone();
        }
        let zone = Zone::named(name);
        self.zones.insert(name.to_owned(), zone.clone());
        zone
    }

    /// Report a key that is unknown, or known but not implemented yet.
    fn unknown_key(
        &mut self,
        entry: &Entry<'_, '_>,
        section: &Section,
        known: &[&str],
        later: &[&str],
    ) {
        let key = entry.name();
        let message = if later.contains(&key) {
            "this key is not supported by this version of schedctl yet".to_owned()
        } else {
            match source::suggest(key, known) {
                Some(s) => format!("unknown key (did you mean `{s}`?)"),
                None => format!("unknown key (expected one of: {})", known.join(", ")),
            }
        };
        self.src
            .error(entry.key.span(), section, Some(key), message);
    }
}
