//! Kernel configuration files, read without the kernel's tools: the fragments in
//! `kernel-configs/`, the `*.require` lists, and a resolved `.config`. Checking the
//! resolved config against the required symbols is the point: `olddefconfig` silently
//! turns an option off when one of its dependencies is missing, and the kernel still
//! builds. Pure functions over text, so every rule has a unit test.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A symbol's value in a `.config`: `y`, `m`, `n` (`# CONFIG_X is not set`), a number or
/// a quoted string, exactly as written after the `=`.
pub type Config = BTreeMap<String, String>;

/// One `CONFIG_X=value` or `# CONFIG_X is not set` line of a `.config` or fragment.
fn option_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("# ")
        && let Some(sym) = rest.strip_suffix(" is not set")
        && is_symbol(sym)
    {
        return Some((sym, "n"));
    }
    let (sym, value) = line.split_once('=')?;
    is_symbol(sym).then_some((sym, value))
}

fn is_symbol(s: &str) -> bool {
    s.strip_prefix("CONFIG_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// Parses a resolved `.config`.
pub fn parse_config(text: &str) -> Config {
    text.lines()
        .filter_map(option_line)
        .map(|(s, v)| (s.to_string(), v.to_string()))
        .collect()
}

/// One option a fragment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub symbol: String,
    pub value: String,
    /// `file:line`, for messages.
    pub origin: String,
}

/// A config fragment (`base.config`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub name: String,
    pub settings: Vec<Setting>,
}

/// A fragment that breaks the house rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentError {
    pub origin: String,
    pub problem: String,
}

impl fmt::Display for FragmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.problem)
    }
}

/// Parses a fragment. Rules: every option line has a `# why` comment line directly
/// above it (an option line is not a comment), no symbol is set twice in one fragment,
/// and every other line is blank or a comment.
pub fn parse_fragment(name: &str, text: &str) -> Result<Fragment, Vec<FragmentError>> {
    let mut settings: Vec<Setting> = Vec::new();
    let mut errors = Vec::new();
    let mut previous_is_why = false;
    for (i, line) in text.lines().enumerate() {
        let origin = format!("{name}:{}", i + 1);
        let trimmed = line.trim();
        if let Some((sym, value)) = option_line(trimmed) {
            if !previous_is_why {
                errors.push(FragmentError {
                    origin: origin.clone(),
                    problem: format!("{sym} has no `# why` comment on the line above"),
                });
            }
            if let Some(first) = settings.iter().find(|s| s.symbol == sym) {
                errors.push(FragmentError {
                    origin: origin.clone(),
                    problem: format!("{sym} is already set at {}", first.origin),
                });
            }
            settings.push(Setting {
                symbol: sym.to_string(),
                value: value.to_string(),
                origin,
            });
            previous_is_why = false;
        } else if trimmed.starts_with('#') {
            // `##` headings group options; they are not a reason for the next one.
            previous_is_why = !trimmed.starts_with("##") && trimmed.len() > 2;
        } else if trimmed.is_empty() {
            previous_is_why = false;
        } else {
            errors.push(FragmentError {
                origin,
                problem: format!("not an option, comment or blank line: {trimmed:?}"),
            });
            previous_is_why = false;
        }
    }
    if errors.is_empty() {
        Ok(Fragment {
            name: name.to_string(),
            settings,
        })
    } else {
        Err(errors)
    }
}

/// What a chain of fragments asks for, later fragments overriding earlier ones (the
/// order `merge_config.sh` applies them in).
pub fn requested(fragments: &[Fragment]) -> BTreeMap<String, Setting> {
    let mut out = BTreeMap::new();
    for f in fragments {
        for s in &f.settings {
            out.insert(s.symbol.clone(), s.clone());
        }
    }
    out
}

/// A required symbol and where it was required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    pub symbol: String,
    pub origin: String,
}

/// Parses a `*.require` list: one `CONFIG_X` per line, `#` comments and blank lines.
pub fn parse_require(name: &str, text: &str) -> Result<Vec<Required>, Vec<FragmentError>> {
    let mut out: Vec<Required> = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let origin = format!("{name}:{}", i + 1);
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !is_symbol(t) {
            errors.push(FragmentError {
                origin,
                problem: format!("not a CONFIG_ symbol: {t:?}"),
            });
        } else if let Some(first) = out.iter().find(|r| r.symbol == t) {
            errors.push(FragmentError {
                origin,
                problem: format!("{t} is already required at {}", first.origin),
            });
        } else {
            out.push(Required {
                symbol: t.to_string(),
                origin,
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A required symbol that did not come out `=y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub symbol: String,
    /// The resolved value, or `None` when the symbol is absent from the config (its
    /// dependencies are not met, so Kconfig does not even write it as unset).
    pub actual: Option<String>,
    pub origin: String,
}

impl Missing {
    pub fn describe(&self) -> String {
        match self.actual.as_deref() {
            None => "absent (its dependencies are not met)".into(),
            Some("n") => "is not set".into(),
            Some(v) => format!("={v}"),
        }
    }
}

/// Every required symbol that is not `=y`, in the order they were required.
pub fn check_required(config: &Config, required: &[Required]) -> Vec<Missing> {
    required
        .iter()
        .filter(|r| config.get(&r.symbol).map(String::as_str) != Some("y"))
        .map(|r| Missing {
            symbol: r.symbol.clone(),
            actual: config.get(&r.symbol).cloned(),
            origin: r.origin.clone(),
        })
        .collect()
}

/// A fragment setting that did not survive `olddefconfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub setting: Setting,
    pub actual: Option<String>,
}

/// Every requested setting whose resolved value differs. An unset request (`n`) is met
/// by an absent symbol too.
pub fn drift(config: &Config, requested: &BTreeMap<String, Setting>) -> Vec<Drift> {
    requested
        .values()
        .filter(|s| {
            let got = config.get(&s.symbol).map(String::as_str);
            !(got == Some(s.value.as_str()) || (s.value == "n" && got.is_none()))
        })
        .map(|s| Drift {
            setting: s.clone(),
            actual: config.get(&s.symbol).cloned(),
        })
        .collect()
}

/// Where a symbol is defined in the kernel's Kconfig files and under which conditions:
/// its `depends on` lines, the `if` of its prompt, and the `if` blocks around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub origin: String,
    pub conditions: Vec<String>,
}

/// Finds the definitions of `wanted` symbols (names without `CONFIG_`) in one Kconfig
/// file. A hint for the error message, not a Kconfig parser: menus' own `depends on`
/// and `select`s from elsewhere are not followed.
pub fn find_definitions(
    file: &str,
    text: &str,
    wanted: &BTreeSet<String>,
) -> Vec<(String, Definition)> {
    let mut out: Vec<(String, Definition)> = Vec::new();
    let mut ifs: Vec<String> = Vec::new();
    let mut current: Option<usize> = None;
    // Inside help text: `Some(None)` before its first line, then its indentation.
    let mut help: Option<Option<usize>> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(indent) = help {
            if line.is_empty() {
                continue;
            }
            let here = indentation(raw);
            match indent {
                None => {
                    help = Some(Some(here));
                    continue;
                }
                // Help text ends at the first line indented less than its first line.
                Some(first) if here >= first => continue,
                Some(_) => help = None,
            }
        }
        let word = line.split_whitespace().next().unwrap_or("");
        if word == "help" || word == "---help---" {
            help = Some(None);
            current = None;
            continue;
        }
        match word {
            "config" | "menuconfig" => {
                current = None;
                let name = line[word.len()..].trim();
                if wanted.contains(name) {
                    let conditions = ifs.iter().map(|c| format!("if {c}")).collect();
                    out.push((
                        name.to_string(),
                        Definition {
                            origin: format!("{file}:{}", i + 1),
                            conditions,
                        },
                    ));
                    current = Some(out.len() - 1);
                }
            }
            "if" => {
                current = None;
                ifs.push(line[2..].trim().to_string());
            }
            "endif" => {
                current = None;
                ifs.pop();
            }
            "choice" | "endchoice" | "menu" | "endmenu" | "source" | "comment" => current = None,
            _ => {
                let Some(idx) = current else { continue };
                let conds = &mut out[idx].1.conditions;
                if let Some(dep) = line.strip_prefix("depends on") {
                    conds.push(format!("depends on {}", dep.trim()));
                } else if ["bool", "tristate", "prompt"].contains(&word)
                    && let Some((_, cond)) = line.rsplit_once("\" if ")
                {
                    conds.push(format!("prompt if {}", cond.trim()));
                }
            }
        }
    }
    out
}

/// A line's indentation in columns, tabs to the next multiple of 8 (as Kconfig counts).
fn indentation(line: &str) -> usize {
    let mut col = 0;
    for c in line.chars() {
        match c {
            ' ' => col += 1,
            '\t' => col = (col / 8 + 1) * 8,
            _ => break,
        }
    }
    col
}

/// The symbols an expression names (`PCI && (ACPI || !X86)` → PCI, ACPI, X86), as
/// `CONFIG_` names, skipping the constants `y`, `m` and `n`.
pub fn expression_symbols(expr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        let is_name = w.bytes().any(|b| b.is_ascii_uppercase())
            && w.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        let sym = format!("CONFIG_{w}");
        if is_name && !out.contains(&sym) {
            out.push(sym);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOLVED: &str = "\
#
# Automatically generated file; DO NOT EDIT.
#
CONFIG_64BIT=y
CONFIG_LOCALVERSION=\"-ze-qemu\"
CONFIG_NR_CPUS=1
# CONFIG_VIRTIO_NET is not set
CONFIG_EXT4_FS=m
CONFIG_PACKET=y
";

    fn req(syms: &[&str]) -> Vec<Required> {
        syms.iter()
            .enumerate()
            .map(|(i, s)| Required {
                symbol: s.to_string(),
                origin: format!("t.require:{}", i + 1),
            })
            .collect()
    }

    #[test]
    fn resolved_config_values_are_read_verbatim() {
        let c = parse_config(RESOLVED);
        assert_eq!(c["CONFIG_64BIT"], "y");
        assert_eq!(c["CONFIG_LOCALVERSION"], "\"-ze-qemu\"");
        assert_eq!(c["CONFIG_NR_CPUS"], "1");
        assert_eq!(c["CONFIG_VIRTIO_NET"], "n");
        assert_eq!(c["CONFIG_EXT4_FS"], "m");
        assert_eq!(c.len(), 6, "comments are not options");
    }

    #[test]
    fn check_names_every_required_symbol_that_is_not_y() {
        let c = parse_config(RESOLVED);
        let missing = check_required(
            &c,
            &req(&[
                "CONFIG_64BIT",
                "CONFIG_VIRTIO_NET",
                "CONFIG_EXT4_FS",
                "CONFIG_PACKET",
                "CONFIG_VIRTIO_BLK",
            ]),
        );
        let got: Vec<(&str, String)> = missing
            .iter()
            .map(|m| (m.symbol.as_str(), m.describe()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("CONFIG_VIRTIO_NET", "is not set".to_string()),
                ("CONFIG_EXT4_FS", "=m".to_string()),
                (
                    "CONFIG_VIRTIO_BLK",
                    "absent (its dependencies are not met)".to_string()
                ),
            ]
        );
        assert_eq!(missing[1].origin, "t.require:3");
    }

    #[test]
    fn check_passes_when_everything_is_y() {
        let c = parse_config(RESOLVED);
        assert!(check_required(&c, &req(&["CONFIG_64BIT", "CONFIG_PACKET"])).is_empty());
    }

    #[test]
    fn fragment_options_need_a_why_comment_directly_above() {
        let text = "\
# header
## heading

# why a
CONFIG_A=y
CONFIG_B=y
## heading is not a reason
CONFIG_C=y

CONFIG_D=y
# why e
# CONFIG_E is not set
#
CONFIG_F=y
";
        let errs = parse_fragment("f.config", text).unwrap_err();
        let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            vec![
                "f.config:6: CONFIG_B has no `# why` comment on the line above",
                "f.config:8: CONFIG_C has no `# why` comment on the line above",
                "f.config:10: CONFIG_D has no `# why` comment on the line above",
                "f.config:14: CONFIG_F has no `# why` comment on the line above",
            ]
        );
    }

    #[test]
    fn fragment_settings_keep_value_and_origin() {
        let f = parse_fragment(
            "q.config",
            "# why\nCONFIG_LOCALVERSION=\"-x\"\n# off on purpose\n# CONFIG_IP_PNP is not set\n",
        )
        .unwrap();
        assert_eq!(
            f.settings,
            vec![
                Setting {
                    symbol: "CONFIG_LOCALVERSION".into(),
                    value: "\"-x\"".into(),
                    origin: "q.config:2".into()
                },
                Setting {
                    symbol: "CONFIG_IP_PNP".into(),
                    value: "n".into(),
                    origin: "q.config:4".into()
                },
            ]
        );
    }

    #[test]
    fn fragment_refuses_a_symbol_set_twice_and_stray_lines() {
        let errs = parse_fragment("f.config", "# a\nCONFIG_A=y\n# again\nCONFIG_A=n\nbogus\n")
            .unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].problem.contains("already set at f.config:2"));
        assert!(errs[1].problem.contains("bogus"));
    }

    #[test]
    fn later_fragments_override_earlier_ones() {
        let a = parse_fragment("a", "# w\nCONFIG_LOCALVERSION=\"-a\"\n# w\nCONFIG_X=y\n").unwrap();
        let b = parse_fragment("b", "# w\nCONFIG_LOCALVERSION=\"-b\"\n").unwrap();
        let r = requested(&[a, b]);
        assert_eq!(r["CONFIG_LOCALVERSION"].value, "\"-b\"");
        assert_eq!(r["CONFIG_LOCALVERSION"].origin, "b:2");
        assert_eq!(r["CONFIG_X"].origin, "a:4");
    }

    #[test]
    fn drift_reports_settings_that_did_not_stick() {
        let c = parse_config(RESOLVED);
        let f = parse_fragment(
            "f",
            "# w\nCONFIG_64BIT=y\n# w\nCONFIG_VIRTIO_NET=y\n# w\n# CONFIG_IP_PNP is not set\n# w\nCONFIG_NR_CPUS=4\n",
        )
        .unwrap();
        let d = drift(&c, &requested(&[f]));
        let got: Vec<(&str, Option<&str>)> = d
            .iter()
            .map(|d| (d.setting.symbol.as_str(), d.actual.as_deref()))
            .collect();
        // IP_PNP is absent, which is as good as unset.
        assert_eq!(
            got,
            vec![
                ("CONFIG_NR_CPUS", Some("1")),
                ("CONFIG_VIRTIO_NET", Some("n"))
            ]
        );
    }

    #[test]
    fn require_lists_take_symbols_comments_and_blanks() {
        let r = parse_require("x.require", "# c\n\nCONFIG_A\n  CONFIG_B  \n").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].symbol, "CONFIG_B");
        assert_eq!(r[1].origin, "x.require:4");
        let errs =
            parse_require("x.require", "VIRTIO\nCONFIG_A=y\nCONFIG_C\nCONFIG_C\n").unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn definitions_carry_depends_prompt_conditions_and_enclosing_ifs() {
        let kconfig = "\
config NET_CORE
\tbool \"Network core driver support\"
\tdefault y

if NET_CORE

config VIRTIO_NET
\ttristate \"Virtio network driver\"
\tdepends on VIRTIO
\tselect NET_FAILOVER
\thelp
\t  depends on NOT_THIS
\t  if kernel size matters, say N.

\t  config NOT_A_CONFIG either
\tdepends on NOT_THIS_EITHER

endif # NET_CORE

config VT
\tbool \"Virtual terminal\" if EXPERT
\tselect INPUT
";
        let wanted: BTreeSet<String> = ["VIRTIO_NET", "VT"].map(String::from).into();
        let defs = find_definitions("drivers/net/Kconfig", kconfig, &wanted);
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[0].0, "VIRTIO_NET");
        assert_eq!(defs[0].1.origin, "drivers/net/Kconfig:7");
        // Help text is skipped, and the symbol's attributes end where it starts.
        assert_eq!(ifs_after_help(kconfig), 0);
        assert_eq!(
            defs[0].1.conditions,
            vec!["if NET_CORE", "depends on VIRTIO"]
        );
        assert_eq!(defs[1].1.conditions, vec!["prompt if EXPERT"]);
    }

    /// How many `if` blocks are open at the end of `text` by find_definitions' reading
    /// (a definition placed after everything shows them).
    fn ifs_after_help(text: &str) -> usize {
        let probe = format!("{text}\nconfig PROBE\n");
        let wanted: BTreeSet<String> = ["PROBE".to_string()].into();
        find_definitions("k", &probe, &wanted)[0].1.conditions.len()
    }

    #[test]
    fn expression_symbols_skip_constants_and_operators() {
        assert_eq!(
            expression_symbols("depends on PCI && (ACPI || !X86_32) && m && FOO=y"),
            vec!["CONFIG_PCI", "CONFIG_ACPI", "CONFIG_X86_32", "CONFIG_FOO"]
        );
    }
}
