//! kldload answers files: shell-style `KEY=value` lines, read as data (docs/answers.md).
//!
//! The format is what kldload's backend writes and what `. autoinstall.env` would read,
//! minus everything that makes a shell dangerous: no `$VAR`, `$(…)` or backtick
//! expansion, ever. The rules, precisely:
//!
//! - The file is UTF-8 (a leading byte-order mark is skipped), at most [`MAX_BYTES`].
//!   Lines end with LF or CRLF.
//! - Leading spaces and tabs are skipped. An empty line, or one whose first character
//!   is `#`, is a comment.
//! - `export ` (followed by spaces or tabs) before the name is accepted and ignored.
//! - The name is a shell variable name, `[A-Za-z_][A-Za-z0-9_]*`, followed directly by
//!   `=` (as in the shell, `KEY = value` is not an assignment).
//! - The value is a sequence of pieces joined without separators, as in the shell:
//!   - `'…'`: everything up to the next `'` is literal (no escapes at all);
//!   - `"…"`: literal except that `\"`, `\\`, `\$` and `` \` `` stand for the second
//!     character; a backslash before any other character is kept (POSIX double quotes);
//!   - unquoted text: a backslash makes the next character literal; `$`, `` ` ``, `#`
//!     and `=` are ordinary characters.
//!
//!   So `'it'\''s'` (what Python's `shlex.quote` writes) is `it's`.
//! - The value ends at an unquoted space or tab. After it only spaces, tabs and a `#`
//!   comment may follow; anything else is an error (the shell would run it as a command).
//!   `#` starts a comment only after a space, so `KEY=a#b` is `a#b`.
//! - Quotes do not span lines: an unterminated quote is an error, and so is a backslash
//!   at the end of a line (no line continuations).
//!
//! Errors name the file and line and never quote the line's text: the file may hold a
//! password.

use super::{Answers, Mac};
use std::fmt;
use std::net::Ipv4Addr;

/// Where the packer bakes the answers file into the initrd (`ze-pack initrd --answers`).
pub const INITRD_PATH: &str = "/etc/kldload/autoinstall.env";
/// Where `ze-pack iso --answers` puts it on the ISO media.
pub const ISO_PATH: &str = "/ze-install/autoinstall.env";
/// Where `kldload.answers=auto` looks on the install server.
pub const SERVER_DIR: &str = "/install/answers/";
/// An answers file is a few hundred bytes; anything this large is not one. A fetcher
/// should stop reading after `MAX_BYTES + 1` bytes.
pub const MAX_BYTES: usize = 64 * 1024;

/// One assignment, in file order. Duplicates are kept; the merge takes the later.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based.
    pub line: usize,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: &dyn fmt::Debug = if is_secret(&self.key) {
            &"(hidden)"
        } else {
            &self.value
        };
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("value", value)
            .field("line", &self.line)
            .finish()
    }
}

/// A file that cannot be read as an answers file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswersError {
    #[error("{file} line {line}: {problem}")]
    Syntax {
        file: String,
        line: usize,
        problem: Syntax,
    },
    #[error("{file}: {len} bytes is more than an answers file may hold ({MAX_BYTES})")]
    TooLarge { file: String, len: usize },
}

/// What is wrong with one line. None of these quote the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Syntax {
    #[error("expected KEY=value (there is no '=')")]
    NoEquals,
    #[error("the name before '=' is not a shell variable name ([A-Za-z_][A-Za-z0-9_]*)")]
    BadName,
    #[error("unterminated single quote (a value cannot span lines)")]
    UnterminatedSingle,
    #[error("unterminated double quote (a value cannot span lines)")]
    UnterminatedDouble,
    #[error("backslash at the end of the line (line continuations are not supported)")]
    TrailingBackslash,
    #[error("text after the value; quote a value that contains spaces")]
    TextAfterValue,
    #[error("is not UTF-8 text")]
    NotUtf8,
}

/// Parses a whole file. `file` names it in errors (a path, or a URL).
pub fn parse(file: &str, bytes: &[u8]) -> Result<Vec<Entry>, AnswersError> {
    if bytes.len() > MAX_BYTES {
        return Err(AnswersError::TooLarge {
            file: file.to_string(),
            len: bytes.len(),
        });
    }
    let syntax = |line: usize, problem: Syntax| AnswersError::Syntax {
        file: file.to_string(),
        line,
        problem,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        syntax(line, Syntax::NotUtf8)
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some((key, value)) = parse_line(raw).map_err(|p| syntax(line, p))? {
            entries.push(Entry { key, value, line });
        }
    }
    Ok(entries)
}

const BLANKS: [char; 2] = [' ', '\t'];

fn parse_line(line: &str) -> Result<Option<(String, String)>, Syntax> {
    let line = line.trim_start_matches(BLANKS);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with(BLANKS) => rest.trim_start_matches(BLANKS),
        _ => line,
    };
    let (name, rest) = line.split_once('=').ok_or(Syntax::NoEquals)?;
    if !is_var_name(name) {
        return Err(Syntax::BadName);
    }
    Ok(Some((name.to_string(), parse_value(rest)?)))
}

fn is_var_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn parse_value(text: &str) -> Result<String, Syntax> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                let tail = chars.as_str().trim_start_matches(BLANKS);
                return if tail.is_empty() || tail.starts_with('#') {
                    Ok(out)
                } else {
                    Err(Syntax::TextAfterValue)
                };
            }
            '\'' => loop {
                match chars.next() {
                    None => return Err(Syntax::UnterminatedSingle),
                    Some('\'') => break,
                    Some(c) => out.push(c),
                }
            },
            '"' => loop {
                match chars.next() {
                    None => return Err(Syntax::UnterminatedDouble),
                    Some('"') => break,
                    // POSIX 2.2.3: inside double quotes a backslash escapes only
                    // $ ` " \ (and newline, which cannot occur here).
                    Some('\\') => match chars.next() {
                        None => return Err(Syntax::UnterminatedDouble),
                        Some(c @ ('"' | '\\' | '$' | '`')) => out.push(c),
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                    },
                    Some(c) => out.push(c),
                }
            },
            '\\' => out.push(chars.next().ok_or(Syntax::TrailingBackslash)?),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Keys whose values are never printed (Debug of an entry or a setting shows
/// `(hidden)`): passwords, passphrases, tokens, and our own recovery verifiers.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase().replace(['.', '-'], "_");
    ["PASS", "SECRET", "TOKEN"].iter().any(|w| k.contains(w)) || k.ends_with("_AUTH")
}

// The KLDLOAD_NET_* keys are merged one by one (a machine's file may give only its
// address) and then turned into one `ip` setting; these are their canonical names.
pub const NET_METHOD: &str = "KLDLOAD_NET_METHOD";
pub const NET_IFACE: &str = "KLDLOAD_NET_IFACE";
pub const NET_IP: &str = "KLDLOAD_NET_IP";
pub const NET_PREFIX: &str = "KLDLOAD_NET_PREFIX";
pub const NET_GW: &str = "KLDLOAD_NET_GW";
pub const NET_DNS: &str = "KLDLOAD_NET_DNS";
pub const NET_KEYS: [&str; 6] = [NET_METHOD, NET_IFACE, NET_IP, NET_PREFIX, NET_GW, NET_DNS];

/// kldload keys we act on, and the key each one sets.
pub const KLDLOAD_KEYS: &[(&str, &str)] = &[
    ("KLDLOAD_DISK", "ze.target"),
    ("KLDLOAD_HOSTNAME", "ze.hostname"),
    (NET_METHOD, NET_METHOD),
    (NET_IFACE, NET_IFACE),
    (NET_IP, NET_IP),
    (NET_PREFIX, NET_PREFIX),
    (NET_GW, NET_GW),
    (NET_DNS, NET_DNS),
    // Ours, not kldload's: lets a baked file turn on the per-machine lookup.
    ("KLDLOAD_ANSWERS", "kldload.answers"),
];

/// kldload keys that only mean something to its distro installer (seed 000, "Answers
/// file format" and "Step 6"). Any `KLDLOAD_EXPORT_SCP_*` key is one too.
pub const NOT_APPLICABLE: &[&str] = &[
    "KLDLOAD_DISTRO",
    "KLDLOAD_PROFILE",
    "KLDLOAD_USERNAME",
    "KLDLOAD_PASSWORD",
    "KLDLOAD_STORAGE_MODE",
    "KLDLOAD_ZFS_TOPOLOGY",
    "KLDLOAD_ZFS_ENCRYPT",
    "KLDLOAD_WIREGUARD",
    "KLDLOAD_NVIDIA_DRIVERS",
    "KLDLOAD_ENABLE_EBPF",
    "KLDLOAD_ENABLE_AI",
    "KLDLOAD_EXPORT_FORMAT",
    "KLDLOAD_EXPORT_SCP_HOST",
    "KLDLOAD_EXPORT_SCP_USER",
    "KLDLOAD_EXPORT_SCP_PATH",
    "KLDLOAD_INFRA_MODE",
    "KLDLOAD_DEBIAN_RELEASE",
    "KLDLOAD_TIMEZONE",
    "KLDLOAD_KEYBOARD",
    "KLDLOAD_LOCALE",
];

/// What a variable in an answers file means to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// Sets this key: a `ze.*` key, `kldload.answers`, or one of [`NET_KEYS`].
    Sets(&'static str),
    NotApplicable,
    /// A `KLDLOAD_*` or `ZE_*` name we do not know.
    Unknown,
    /// Neither `KLDLOAD_*` nor `ZE_*`.
    Foreign,
}

/// Classifies a variable name as written in a file (`KLDLOAD_DISK`, `ZE_MEDIA_ID`).
pub fn meaning(name: &str) -> Meaning {
    if let Some(&(_, key)) = KLDLOAD_KEYS.iter().find(|(k, _)| *k == name) {
        return Meaning::Sets(key);
    }
    if NOT_APPLICABLE.contains(&name) || name.starts_with("KLDLOAD_EXPORT_SCP_") {
        return Meaning::NotApplicable;
    }
    if name.starts_with("KLDLOAD_") {
        return Meaning::Unknown;
    }
    if let Some(rest) = name.strip_prefix("ZE_") {
        // ZE_MEDIA_ID ↔ ze.media-id
        let want = format!("ze.{}", rest.to_ascii_lowercase().replace('_', "-"));
        return match super::KEYS.iter().find(|(k, _)| *k == want) {
            Some((k, _))
                if rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
            {
                Meaning::Sets(k)
            }
            _ => Meaning::Unknown,
        };
    }
    Meaning::Foreign
}

/// The answers-file name of a `kldload.<key>` command-line parameter:
/// `kldload.net_ip`, `kldload.net-ip` and `kldload.NET_IP` are all `KLDLOAD_NET_IP`.
pub fn kldload_param_name(param: &str) -> Option<String> {
    let rest = param.strip_prefix("kldload.")?;
    Some(format!(
        "KLDLOAD_{}",
        rest.to_ascii_uppercase().replace('-', "_")
    ))
}

/// The URLs to try, in order, for `kldload.answers`.
///
/// An explicit URL is tried alone. `auto` asks the install server for
/// `/install/answers/<mac>.env` for each of the machine's MACs — `boot` first (the NIC
/// the installer's network came up on: `ze.mac` when given, else the one whose lease
/// reached the server), then `others` in the order given (interface-name order) — and
/// last `/install/answers/default.env`. Trying every MAC means a file named after any of
/// the machine's NICs finds it, whichever NIC iPXE called `net0`.
pub fn answers_urls(
    answers: &Answers,
    server: Option<Ipv4Addr>,
    port: u16,
    boot: Option<Mac>,
    others: &[Mac],
) -> Vec<String> {
    let server = match (answers, server) {
        (Answers::Url(u), _) => return vec![u.clone()],
        // The config check refuses auto without a server; nothing to try.
        (Answers::Auto, None) => return Vec::new(),
        (Answers::Auto, Some(s)) => s,
    };
    let base = format!("http://{server}:{port}{SERVER_DIR}");
    let mut macs: Vec<Mac> = Vec::new();
    for m in boot.iter().chain(others) {
        if !macs.contains(m) {
            macs.push(*m);
        }
    }
    macs.iter()
        .map(|m| format!("{base}{}.env", m.hyphenated()))
        .chain(std::iter::once(format!("{base}default.env")))
        .collect()
}

/// One HTTP answer, as the network code's client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why an answers file could not be fetched: a FATAL naming the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("kldload.answers: {url}: not found (HTTP 404)")]
    NotFound { url: String },
    #[error("kldload.answers: {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("kldload.answers: {url}: {error}")]
    Transport { url: String, error: String },
}

/// Tries `urls` in order with `get` and returns the first file found, as
/// `(url, body)`, or `None` when `auto` found none.
///
/// A 404 is fine for `auto` (next URL; none at all is not an error: the machine then
/// installs with what the initrd, media and command line say). For an explicit URL a 404
/// is FATAL: someone asked for that file. Any other status, and any transport error, is
/// FATAL in both modes — a server that answers 500 for this machine's file must not make
/// it fall back to `default.env`.
pub fn fetch_answers(
    answers: &Answers,
    urls: &[String],
    mut get: impl FnMut(&str) -> Result<Reply, String>,
) -> Result<Option<(String, Vec<u8>)>, FetchError> {
    for url in urls {
        let reply = get(url).map_err(|error| FetchError::Transport {
            url: url.clone(),
            error,
        })?;
        match reply.status {
            200 => return Ok(Some((url.clone(), reply.body))),
            404 if *answers == Answers::Auto => continue,
            404 => return Err(FetchError::NotFound { url: url.clone() }),
            status => {
                return Err(FetchError::Status {
                    url: url.clone(),
                    status,
                });
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "/etc/kldload/autoinstall.env";

    fn values(text: &str) -> Vec<(String, String)> {
        parse(F, text.as_bytes())
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn one(text: &str) -> String {
        let v = values(text);
        assert_eq!(v.len(), 1, "{text:?}: {v:?}");
        v[0].1.clone()
    }

    fn syntax(text: &str) -> (usize, Syntax) {
        match parse(F, text.as_bytes()) {
            Err(AnswersError::Syntax { line, problem, .. }) => (line, problem),
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn plain_lines_with_comments_blanks_and_line_numbers() {
        let text = "# kldload answers\n\nKLDLOAD_DISK=/dev/vda\n   # indented comment\n\tKLDLOAD_HOSTNAME=node1\n";
        let e = parse(F, text.as_bytes()).unwrap();
        assert_eq!(
            e,
            vec![
                Entry {
                    key: "KLDLOAD_DISK".into(),
                    value: "/dev/vda".into(),
                    line: 3
                },
                Entry {
                    key: "KLDLOAD_HOSTNAME".into(),
                    value: "node1".into(),
                    line: 5
                },
            ]
        );
    }

    #[test]
    fn export_prefix_is_accepted() {
        assert_eq!(one("export KLDLOAD_DISK=/dev/vda"), "/dev/vda");
        assert_eq!(one("export \t KLDLOAD_DISK='/dev/vdb'"), "/dev/vdb");
        // A variable that happens to start with "export" is just a name.
        assert_eq!(values("exportX=1"), vec![("exportX".into(), "1".into())]);
    }

    #[test]
    fn crlf_line_ends_are_tolerated() {
        let v = values("KLDLOAD_DISK=/dev/vda\r\nKLDLOAD_HOSTNAME=\"n1\"\r\n\r\n# c\r\n");
        assert_eq!(
            v,
            vec![
                ("KLDLOAD_DISK".into(), "/dev/vda".into()),
                ("KLDLOAD_HOSTNAME".into(), "n1".into())
            ]
        );
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        assert_eq!(values("\u{feff}KLDLOAD_DISK=/dev/vda")[0].0, "KLDLOAD_DISK");
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(
            one(r#"A='a b "c" \n $HOME `x`'"#),
            r#"a b "c" \n $HOME `x`"#
        );
        assert_eq!(one("A=''"), "");
    }

    #[test]
    fn double_quotes_escape_only_quote_backslash_dollar_backtick() {
        assert_eq!(one(r#"A="say \"hi\"""#), r#"say "hi""#);
        assert_eq!(one(r#"A="back\\slash""#), r"back\slash");
        assert_eq!(one(r#"A="\$HOME \`x\`""#), "$HOME `x`");
        // Any other backslash stays, as in the shell.
        assert_eq!(one(r#"A="a\nb\ c""#), r"a\nb\ c");
        assert_eq!(one(r#"A="it's""#), "it's");
    }

    #[test]
    fn unquoted_backslash_makes_the_next_character_literal() {
        assert_eq!(one(r"A=a\ b\\c\$d"), r"a b\c$d");
    }

    #[test]
    fn adjacent_pieces_join_as_in_the_shell() {
        // What Python's shlex.quote writes for a value with a single quote.
        assert_eq!(one(r#"A='it'"'"'s'"#), "it's");
        assert_eq!(one(r"A='it'\''s'"), "it's");
        assert_eq!(one(r#"A=pre"mid"'post'"#), "premidpost");
    }

    #[test]
    fn command_substitution_and_variables_are_kept_literally() {
        assert_eq!(one("A=$(reboot)"), "$(reboot)");
        assert_eq!(one("A=\"$(reboot)\""), "$(reboot)");
        assert_eq!(one("A=`reboot`"), "`reboot`");
        assert_eq!(one("A=\"`reboot`\""), "`reboot`");
        assert_eq!(one("A=$HOME${PATH}"), "$HOME${PATH}");
        assert_eq!(one("A=\"${HOME:-x}\""), "${HOME:-x}");
    }

    #[test]
    fn value_ends_at_whitespace_then_only_a_comment_may_follow() {
        assert_eq!(one("A=x   "), "x");
        assert_eq!(one("A=x # the disk"), "x");
        assert_eq!(one("A=\"x y\"\t# c"), "x y");
        assert_eq!(one("A= # empty"), "");
        assert_eq!(one("A="), "");
        // '#' inside a word is not a comment (shell rule).
        assert_eq!(one("A=a#b"), "a#b");
        assert_eq!(one("A=#x"), "#x");
        assert_eq!(one("A=k=v"), "k=v");
        assert_eq!(syntax("A=x y"), (1, Syntax::TextAfterValue));
        assert_eq!(syntax("A=\"x\" y"), (1, Syntax::TextAfterValue));
        assert_eq!(syntax("A= reboot"), (1, Syntax::TextAfterValue));
    }

    #[test]
    fn line_without_equals_is_an_error_with_its_number() {
        assert_eq!(syntax("A=1\n\nKLDLOAD_DISK\n"), (3, Syntax::NoEquals));
        assert_eq!(syntax("export KLDLOAD_DISK"), (1, Syntax::NoEquals));
        let e = parse(F, b"A=1\nB\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/kldload/autoinstall.env line 2: expected KEY=value (there is no '=')"
        );
    }

    #[test]
    fn bad_names_are_errors() {
        for text in ["KLDLOAD-DISK=x", "1A=x", "=x", "A B=x", "A =x", "ä=x"] {
            assert_eq!(syntax(text), (1, Syntax::BadName), "{text:?}");
        }
    }

    #[test]
    fn unterminated_quotes_and_continuations_are_errors() {
        assert_eq!(syntax("A=1\nB='open"), (2, Syntax::UnterminatedSingle));
        assert_eq!(syntax("B=\"open\nC=1\""), (1, Syntax::UnterminatedDouble));
        assert_eq!(syntax("B=\"open\\\""), (1, Syntax::UnterminatedDouble));
        assert_eq!(syntax("B=\"x\\"), (1, Syntax::UnterminatedDouble));
        assert_eq!(syntax("B=x\\"), (1, Syntax::TrailingBackslash));
    }

    #[test]
    fn duplicates_are_all_kept_in_order() {
        let v = values("A=1\nA=2\n");
        assert_eq!(v, vec![("A".into(), "1".into()), ("A".into(), "2".into())]);
    }

    #[test]
    fn non_utf8_names_its_line_and_huge_files_are_refused() {
        let e = parse(F, b"A=1\nB=\xff\n").unwrap_err();
        assert_eq!(
            e,
            AnswersError::Syntax {
                file: F.into(),
                line: 2,
                problem: Syntax::NotUtf8
            }
        );
        let big = vec![b'#'; MAX_BYTES + 1];
        assert!(matches!(
            parse(F, &big),
            Err(AnswersError::TooLarge { len, .. }) if len == MAX_BYTES + 1
        ));
    }

    #[test]
    fn errors_never_quote_the_line() {
        for text in [
            "KLDLOAD_PASSWORD='hunter2",
            "KLDLOAD_PASSWORD=\"hunter2",
            "KLDLOAD_PASSWORD=hunter2 x",
            "KLDLOAD_PASSWORD=hunter2\\",
            "hunter2",
            "hunter2 x=1",
        ] {
            let e = parse(F, text.as_bytes()).unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        }
    }

    #[test]
    fn secret_values_are_hidden_in_debug() {
        let e = parse(
            F,
            b"KLDLOAD_PASSWORD=hunter2\nZE_RESCUE_AUTH=x1y2\nKLDLOAD_DISK=/dev/vda",
        )
        .unwrap();
        let d = format!("{e:?}");
        assert!(!d.contains("hunter2") && !d.contains("x1y2"), "{d}");
        assert!(d.contains("/dev/vda"), "{d}");
        for k in [
            "KLDLOAD_PASSWORD",
            "KLDLOAD_ZFS_PASSPHRASE",
            "ze.rescue-auth",
            "ZE_SHELL_AUTH",
            "API_TOKEN",
        ] {
            assert!(is_secret(k), "{k}");
        }
        assert!(!is_secret("KLDLOAD_DISK"));
    }

    #[test]
    fn meanings_of_names() {
        assert_eq!(meaning("KLDLOAD_DISK"), Meaning::Sets("ze.target"));
        assert_eq!(meaning("KLDLOAD_HOSTNAME"), Meaning::Sets("ze.hostname"));
        assert_eq!(meaning("KLDLOAD_NET_GW"), Meaning::Sets(NET_GW));
        assert_eq!(meaning("ZE_IMAGE"), Meaning::Sets("ze.image"));
        assert_eq!(meaning("ZE_MEDIA_ID"), Meaning::Sets("ze.media-id"));
        assert_eq!(meaning("ZE_RESCUE_AUTH"), Meaning::Sets("ze.rescue-auth"));
        assert_eq!(meaning("KLDLOAD_PASSWORD"), Meaning::NotApplicable);
        assert_eq!(meaning("KLDLOAD_EXPORT_SCP_PORT"), Meaning::NotApplicable);
        assert_eq!(meaning("KLDLOAD_FROBNICATE"), Meaning::Unknown);
        assert_eq!(meaning("ZE_COLOUR"), Meaning::Unknown);
        assert_eq!(meaning("ZE_Image"), Meaning::Unknown);
        assert_eq!(meaning("ZE_MEDIA-ID"), Meaning::Unknown);
        assert_eq!(meaning("HOME"), Meaning::Foreign);
        assert_eq!(meaning("kldload_disk"), Meaning::Foreign);
    }

    #[test]
    fn every_ze_key_has_a_ze_variable() {
        for (key, _) in super::super::KEYS {
            let var = format!(
                "ZE_{}",
                key.trim_start_matches("ze.")
                    .to_ascii_uppercase()
                    .replace('-', "_")
            );
            assert_eq!(meaning(&var), Meaning::Sets(key), "{var}");
        }
    }

    #[test]
    fn kldload_params_map_to_variable_names() {
        for p in ["kldload.net_ip", "kldload.net-ip", "kldload.NET_IP"] {
            assert_eq!(kldload_param_name(p).as_deref(), Some("KLDLOAD_NET_IP"));
        }
        assert_eq!(
            kldload_param_name("kldload.disk").as_deref(),
            Some("KLDLOAD_DISK")
        );
        assert_eq!(kldload_param_name("ze.disk"), None);
    }

    fn mac(s: &str) -> Mac {
        Mac::parse(s).unwrap()
    }

    #[test]
    fn auto_tries_boot_nic_then_other_nics_then_default() {
        let urls = answers_urls(
            &Answers::Auto,
            Some(Ipv4Addr::new(10, 0, 2, 2)),
            8080,
            Some(mac("52:54:00:00:00:02")),
            &[mac("52:54:00:00:00:01"), mac("52:54:00:00:00:02")],
        );
        assert_eq!(
            urls,
            vec![
                "http://10.0.2.2:8080/install/answers/52-54-00-00-00-02.env",
                "http://10.0.2.2:8080/install/answers/52-54-00-00-00-01.env",
                "http://10.0.2.2:8080/install/answers/default.env",
            ]
        );
    }

    #[test]
    fn auto_without_macs_tries_default_only_and_explicit_url_alone() {
        let s = Some(Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(
            answers_urls(&Answers::Auto, s, 80, None, &[]),
            vec!["http://10.0.2.2:80/install/answers/default.env"]
        );
        let u = Answers::Url("http://h/a/52-54-00-00-00-01.env".into());
        assert_eq!(
            answers_urls(&u, s, 80, Some(mac("52:54:00:00:00:09")), &[]),
            vec!["http://h/a/52-54-00-00-00-01.env"]
        );
    }

    fn replies(script: &[(&str, Result<u16, &str>)]) -> impl FnMut(&str) -> Result<Reply, String> {
        let script: Vec<(String, Result<u16, String>)> = script
            .iter()
            .map(|(u, r)| (u.to_string(), r.map_err(str::to_string)))
            .collect();
        move |url| {
            let (_, r) = script
                .iter()
                .find(|(u, _)| u == url)
                .unwrap_or_else(|| panic!("unexpected fetch {url}"));
            r.clone().map(|status| Reply {
                status,
                body: format!("FROM={url}").into_bytes(),
            })
        }
    }

    #[test]
    fn auto_skips_404s_and_takes_the_first_file() {
        let urls = ["http://s/m.env".to_string(), "http://s/default.env".into()];
        let got = fetch_answers(
            &Answers::Auto,
            &urls,
            replies(&[
                ("http://s/m.env", Ok(404)),
                ("http://s/default.env", Ok(200)),
            ]),
        )
        .unwrap();
        assert_eq!(
            got,
            Some((
                "http://s/default.env".into(),
                b"FROM=http://s/default.env".to_vec()
            ))
        );
        // The per-machine file wins; default.env is not even asked for.
        let got = fetch_answers(
            &Answers::Auto,
            &urls,
            replies(&[("http://s/m.env", Ok(200))]),
        )
        .unwrap();
        assert_eq!(got.unwrap().0, "http://s/m.env");
    }

    #[test]
    fn auto_with_404_on_every_url_is_fine() {
        let urls = ["http://s/m.env".to_string(), "http://s/default.env".into()];
        let got = fetch_answers(
            &Answers::Auto,
            &urls,
            replies(&[
                ("http://s/m.env", Ok(404)),
                ("http://s/default.env", Ok(404)),
            ]),
        );
        assert_eq!(got, Ok(None));
    }

    #[test]
    fn other_statuses_and_transport_errors_are_fatal_naming_the_url() {
        let urls = ["http://s/m.env".to_string(), "http://s/default.env".into()];
        let e = fetch_answers(
            &Answers::Auto,
            &urls,
            replies(&[("http://s/m.env", Ok(500))]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "kldload.answers: http://s/m.env: HTTP status 500"
        );
        let e = fetch_answers(
            &Answers::Auto,
            &urls,
            replies(&[("http://s/m.env", Err("connection refused"))]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "kldload.answers: http://s/m.env: connection refused"
        );
    }

    #[test]
    fn explicit_url_404_is_fatal() {
        let u = "http://s/a.env".to_string();
        let e = fetch_answers(
            &Answers::Url(u.clone()),
            std::slice::from_ref(&u),
            replies(&[("http://s/a.env", Ok(404))]),
        )
        .unwrap_err();
        assert_eq!(e, FetchError::NotFound { url: u });
    }
}
