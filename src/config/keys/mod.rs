//! The keys of `[daemon]`, `[defaults]` and `[jobs.NAME]`: each checked on its own so
//! that one bad value never hides another, then combined into a [`Config`]. `daemon`
//! checks `[daemon]`; `job` checks job tables and `[defaults]` and assembles each job.

mod daemon;
mod job;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::DeTable;

use super::source::{self, ConfigErrors, Entry, Section, Source};
use super::{Config, Settings, Zone};

pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let mut src = Source::new(text);
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
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
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut checker = Checker {
        src,
        zones: HashMap::new(),
        settings: HashSet::new(),
        texts: HashSet::new(),
        base_dir,
    };

    let (mut daemon, mut defaults, mut jobs) = (None, None, None);
    for entry in source::entries(root.get_ref()) {
        let slot = match entry.name() {
            "daemon" => &mut daemon,
            "defaults" => &mut defaults,
            "jobs" => &mut jobs,
            other => {
                let hint = if other == "job" {
                    " (jobs are tables named [jobs.NAME])".to_owned()
                } else {
                    " (expected [daemon], [defaults] or [jobs.NAME])".to_owned()
                };
                checker.src.error(
                    entry.key.span(),
                    &Section::File,
                    None,
                    format!("unknown table `{other}`{hint}"),
                );
                continue;
            }
        };
        match entry.value.get_ref().as_table() {
            Some(table) => *slot = Some(table),
            None => checker.src.error(
                entry.value.span(),
                &Section::File,
                None,
                format!(
                    "`{}` must be a table, found {}",
                    entry.name(),
                    source::describe(entry.value.get_ref())
                ),
            ),
        }
    }

    let daemon = checker.daemon(daemon);
    let defaults = defaults
        .map(|t| checker.job_keys(&Section::Defaults, t))
        .unwrap_or_default();
    let entries = jobs.map(source::entries).unwrap_or_default();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some(job) = checker.job(&entry, &defaults, &daemon.timezone) {
            out.push(Arc::new(job));
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

struct Checker<'a> {
    src: Source<'a>,
    zones: HashMap<String, Result<Zone, String>>,
    /// One of each distinct job `Settings`, shared by the jobs that have them.
    settings: HashSet<Arc<Settings>>,
    /// One of each distinct schedule text, likewise.
    texts: HashSet<Arc<str>>,
    base_dir: PathBuf,
}

impl Checker<'_> {
    /// The shared copy of `settings`.
    fn intern(&mut self, settings: Settings) -> Arc<Settings> {
        if let Some(shared) = self.settings.get(&settings) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(settings);
        self.settings.insert(Arc::clone(&shared));
        shared
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
        self.zones
            .entry(name.to_owned())
            .or_insert_with(|| Zone::named(name))
            .clone()
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
