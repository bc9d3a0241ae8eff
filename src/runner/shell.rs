//! Shell commands the shell would run as one plain program: `job --flag value` needs no
//! shell, and starting it directly costs half of `/bin/sh -c` (which forks it as a second
//! process). Only commands whose result is certain to be the same qualify: plain words, no
//! quoting, expansion, redirection or operators, not a builtin or keyword, a program found
//! and executable; the environment gets the `PWD` that the shell would have exported.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Shell builtins and reserved words (dash's and bash's): these must run in the shell.
const SHELL_WORDS: &[&str] = &[
    "!",
    ".",
    ":",
    "[",
    "[[",
    "{",
    "}",
    "alias",
    "bg",
    "break",
    "builtin",
    "caller",
    "case",
    "cd",
    "chdir",
    "command",
    "compgen",
    "complete",
    "continue",
    "coproc",
    "declare",
    "dirs",
    "disown",
    "do",
    "done",
    "echo",
    "elif",
    "else",
    "enable",
    "esac",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "fi",
    "for",
    "function",
    "getopts",
    "hash",
    "help",
    "history",
    "if",
    "in",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "select",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "then",
    "time",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "until",
    "wait",
    "while",
];

/// The words of `script` if the shell would run it as one program with plain arguments:
/// only letters, digits and `/._,:@%+=-`, separated by spaces or tabs, the first word
/// neither an assignment nor a builtin or keyword.
pub fn plain_words(script: &str) -> Option<Vec<&str>> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/._,:@%+=-".contains(&b);
    if !script.bytes().all(|b| b == b' ' || b == b'\t' || plain(b)) {
        return None;
    }
    let words: Vec<&str> = script
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect();
    let first = *words.first()?;
    if first.contains('=') || SHELL_WORDS.contains(&first) {
        return None;
    }
    Some(words)
}

/// Where the shell's PATH search finds `program`, a name without `/` (a path is not searched
/// for, and its callers take it as it is), if it is an executable file there.
pub fn find_program(program: &str, path_var: &str, workdir: Option<&Path>) -> Option<PathBuf> {
    debug_assert!(!program.contains('/'), "{program} is a path, not a name");
    let executable =
        |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file();
    path_var
        .split(':')
        .map(|dir| {
            let dir = Path::new(if dir.is_empty() { "." } else { dir });
            in_workdir(&dir.join(program), workdir)
        })
        .find(|candidate| executable(candidate))
}

/// `path` as the run sees it: a relative path is relative to its working directory.
pub fn in_workdir(path: &Path, workdir: Option<&Path>) -> PathBuf {
    match workdir {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    }
}

/// The `PWD` the shell exports: the inherited one if it names the working directory,
/// otherwise the working directory's physical path.
pub fn pwd(inherited: Option<&str>, workdir: Option<&Path>) -> Option<String> {
    if inherited.is_none() && workdir.is_none() {
        // The daemon's own directory, which it never changes: worked out once.
        static DAEMON_PWD: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        return DAEMON_PWD.get_or_init(|| physical_pwd(None)).clone();
    }
    let cwd = match workdir {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_dir().ok()?,
    };
    let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    if let Some(p) = inherited.filter(|p| p.starts_with('/')) {
        if same(Path::new(p), &cwd) {
            return Some(p.to_owned());
        }
    }
    physical_pwd(Some(&cwd))
}

/// The physical path of `dir` (default: the current directory).
fn physical_pwd(dir: Option<&Path>) -> Option<String> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir().ok()?,
    };
    std::fs::canonicalize(dir)
        .ok()
        .map(|p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_commands_are_split_and_anything_else_goes_to_the_shell() {
        assert_eq!(
            plain_words("/usr/bin/backup --full\tnow"),
            Some(vec!["/usr/bin/backup", "--full", "now"])
        );
        assert_eq!(
            plain_words("  stamp /tmp/x.log tag-1 a=b  "),
            Some(vec!["stamp", "/tmp/x.log", "tag-1", "a=b"])
        );
        for script in [
            "echo hi",
            "true",
            "cd /tmp",
            "FOO=1 env",
            "env $HOME",
            "ls *.txt",
            "ls ~",
            "a; b",
            "a && b",
            "a | b",
            "a > f",
            "a 'quoted'",
            "a \"quoted\"",
            "a \\x",
            "a # comment",
            "a\nb",
            "if",
            "{ a; }",
            "ls café",
            "a `b`",
            "a (b)",
            "",
            "   ",
        ] {
            assert_eq!(plain_words(script), None, "{script:?}");
        }
    }

    #[test]
    fn programs_are_found_as_the_shell_finds_them() {
        assert_eq!(
            find_program("sh", "/nonexistent:/bin", None),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_program("sh", "/nonexistent", None), None);
        // An empty PATH entry is the working directory.
        assert_eq!(
            find_program("sh", "/nonexistent:", Some(Path::new("/bin"))),
            Some(PathBuf::from("/bin/./sh"))
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("data"), "x").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let path = dir.path().display().to_string();
        assert_eq!(find_program("data", &path, None), None, "not executable");
        assert_eq!(find_program("sub", &path, None), None, "a directory");
    }

    #[test]
    fn pwd_is_the_physical_directory_unless_the_inherited_one_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        std::fs::create_dir(&real).expect("dir");
        std::os::unix::fs::symlink(&real, &link).expect("link");
        let physical = std::fs::canonicalize(&real).expect("canonical");
        let link_text = link.display().to_string();
        assert_eq!(pwd(None, Some(&link)), Some(physical.display().to_string()));
        assert_eq!(pwd(Some(&link_text), Some(&link)), Some(link_text.clone()));
        assert_eq!(
            pwd(Some("/nonexistent"), Some(&link)),
            Some(physical.display().to_string())
        );
    }
}
