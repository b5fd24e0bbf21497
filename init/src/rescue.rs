//! The recovery console (SPEC.md "Recovery console", docs/recovery.md): what PID 1 does
//! after any FATAL or panic. It prints the error, then a fixed menu — 1 retry network,
//! 2 diagnostics, 3 reboot, 4 power off — on every console, and reads the choice from
//! whichever console the operator types on. There is no shell.
//!
//! Policy ([`policy`]): a configured secret gates the menu (`ze.rescue-auth`, argon2id;
//! or `ze.shell-auth`, sha256, weak), three wrong tries reboot; with no secret an ISO
//! install (an operator is at the machine) opens the menu, and a network install prints
//! the error and reboots 30 s later, so an unattended box never waits for input nobody
//! can give.
//!
//! The menu logic ([`Session::run`]) talks to a [`Terminal`], so it runs on in-memory
//! scripts in the unit tests and on the real consoles ([`tty::Ttys`]) in PID 1.

pub mod auth;
pub mod diagnostics;
pub mod tty;

pub use auth::{AuthError, Verifier};

use crate::boot::{Env, Fatal};
use crate::config::{Config, ConfigBuilder, Secret, Source};
use std::sync::Mutex;
use std::time::Duration;

/// How long an unattended network install shows its error before rebooting.
pub const UNATTENDED_DELAY: Duration = Duration::from_secs(30);
/// Wrong secrets before the machine reboots.
pub const TRIES: u32 = 3;

/// What the policy and the diagnostics need of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub source: Source,
    pub target: Option<String>,
    pub rescue_auth: Option<Secret>,
    pub shell_auth: Option<Secret>,
    /// A secret key whose value is invalid (as written: `ze.rescue-auth`,
    /// `ZE_RESCUE_AUTH`). Nothing can be checked against it, so the console stays shut.
    pub bad_secret: Option<String>,
}

impl Context {
    pub fn of(c: &Config) -> Context {
        Context {
            source: c.source,
            target: c.target.clone(),
            rescue_auth: c.rescue_auth.clone(),
            shell_auth: c.shell_auth.clone(),
            bad_secret: None,
        }
    }
}

/// The newest configuration the install built (boot.rs reports every one here), so a
/// secret or source from a late source (ISO media, `kldload.answers`) counts too.
static REMEMBERED: Mutex<Option<Context>> = Mutex::new(None);

/// Called with every configuration the install builds.
pub fn remember(c: &Config) {
    *REMEMBERED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Context::of(c));
}

fn remembered() -> Option<Context> {
    REMEMBERED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The keys the policy and diagnostics read.
const POLICY_KEYS: &[&str] = &["ze.source", "ze.target", "ze.rescue-auth", "ze.shell-auth"];

/// The context for a failure: the configuration the install last built, or — when the
/// configuration itself was the FATAL, or a panic came first — the policy keys read one
/// by one from the initrd's answers file and the command line.
pub fn context(env: &Env) -> Context {
    if let Some(c) = remembered() {
        return c;
    }
    let answers = std::fs::read(&env.answers).ok();
    let name = env.answers.display().to_string();
    let cmdline = std::fs::read_to_string(env.proc_root.join("cmdline")).unwrap_or_default();
    context_from(answers.as_deref().map(|b| (name.as_str(), b)), &cmdline)
}

/// [`context`] from the sources themselves: each policy key on its own, so `ze.port=0`
/// does not hide `ze.source=iso` or the secret.
pub fn context_from(answers: Option<(&str, &[u8])>, cmdline: &str) -> Context {
    let mut b = ConfigBuilder::new();
    if let Some((name, bytes)) = answers {
        // An answers file that does not parse contributes nothing.
        let _ = b.add_initrd_answers(name, bytes);
    }
    b.add_cmdline(cmdline);
    if let Ok(p) = b.build() {
        return Context::of(&p.config);
    }
    let (c, errors) = b.build_keys(POLICY_KEYS);
    let mut ctx = Context::of(&c);
    ctx.bad_secret = errors
        .iter()
        .find(|e| crate::config::answers::is_secret(&e.key))
        .map(|e| e.key.clone());
    ctx
}

/// What happens after a failure, before anyone types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// The menu opens once the secret is typed.
    Gated(Verifier),
    /// The menu opens (ISO install, no secret: the operator is at the machine).
    Open,
    /// Print the error and reboot after [`UNATTENDED_DELAY`] (network install, no
    /// secret: nobody may be there).
    Unattended,
    /// A secret is configured but invalid: nothing can open the menu; reboot after
    /// [`UNATTENDED_DELAY`].
    Locked(String),
}

/// The policy table (docs/recovery.md).
pub fn policy(c: &Context) -> Policy {
    if let Some(key) = &c.bad_secret {
        return Policy::Locked(format!("{key} is not valid"));
    }
    match (&c.rescue_auth, &c.shell_auth, c.source) {
        // The argon2id token wins over the weak form when both are set.
        (Some(a), _, _) => Policy::Gated(Verifier::Argon2id(a.clone())),
        (None, Some(s), _) => Policy::Gated(Verifier::Sha256(s.clone())),
        (None, None, Source::Iso) => Policy::Open,
        (None, None, Source::Http) => Policy::Unattended,
    }
}

/// Where the console's text goes and where lines come from.
pub trait Terminal {
    /// Writes `text` to every console.
    fn show(&mut self, text: &str);
    /// Shows `text` and returns the next line typed on any console, without its line
    /// ending. For a `secret` the typing is not echoed and anything typed before the
    /// prompt appeared is discarded. `None` when no console can take input.
    fn prompt(&mut self, text: &str, secret: bool) -> Option<String>;
    /// Waits until everything shown has left the machine (before a reboot).
    fn drain(&mut self) {}
}

/// What PID 1 does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the install again (docs/recovery.md: from the top, which is idempotent up to
    /// the network stage).
    Retry,
    Reboot {
        after: Duration,
    },
    PowerOff,
}

/// One failed attempt's FATAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// 1 for the first run, +1 per retry.
    pub attempt: u32,
    pub fatal: Fatal,
}

/// What the menu works with.
pub struct Menu<'a> {
    /// Every failure so far, oldest first: retries never lose an earlier FATAL.
    pub failures: &'a [Failure],
    pub diagnostics: &'a mut dyn FnMut() -> Vec<String>,
    /// Whether a retry may start now (not while the previous attempt still runs).
    pub can_retry: &'a dyn Fn() -> Result<(), String>,
}

/// How many failures the header lists (the newest; an older count is summarized).
const SHOWN_FAILURES: usize = 10;

/// The console across failures of one boot: once the operator has typed the secret,
/// a later failure (after a retry) opens the menu without asking again.
#[derive(Debug, Default)]
pub struct Session {
    authenticated: bool,
}

impl Session {
    pub fn new() -> Session {
        Session::default()
    }

    /// Prints the failures, applies the policy, and runs the menu until the operator
    /// picks an action (or the policy picks one).
    pub fn run(&mut self, term: &mut dyn Terminal, policy: &Policy, menu: Menu<'_>) -> Action {
        term.show(&header(menu.failures));
        match policy {
            Policy::Unattended => {
                term.show(
                    "[ze-install] recovery: network install with no ze.rescue-auth: nobody \
                     may be at this console; rebooting in 30 s\n",
                );
                return reboot_later(term);
            }
            Policy::Locked(why) => {
                term.show(&format!(
                    "[ze-install] recovery console locked: {why}; rebooting in 30 s\n"
                ));
                return reboot_later(term);
            }
            Policy::Gated(v) if !self.authenticated => match gate(term, v) {
                Gate::Open => self.authenticated = true,
                Gate::Shut(action) => return action,
            },
            Policy::Gated(_) | Policy::Open => {}
        }
        loop {
            let Some(choice) = term.prompt(MENU, false) else {
                term.show("[ze-install] recovery: no console takes input; rebooting in 30 s\n");
                return reboot_later(term);
            };
            match choice.trim() {
                "1" => match (menu.can_retry)() {
                    Ok(()) => {
                        term.show("[ze-install] recovery: retrying the install\n");
                        return Action::Retry;
                    }
                    Err(why) => term.show(&format!("cannot retry yet: {why}\n")),
                },
                "2" => {
                    let mut text = (menu.diagnostics)().join("\n");
                    text.push('\n');
                    term.show(&text);
                    term.show(&header(menu.failures));
                }
                "3" => {
                    term.show("[ze-install] recovery: rebooting\n");
                    term.drain();
                    return Action::Reboot {
                        after: Duration::ZERO,
                    };
                }
                "4" => {
                    term.show("[ze-install] recovery: powering off\n");
                    term.drain();
                    return Action::PowerOff;
                }
                "" => {}
                _ => term.show("choose 1, 2, 3 or 4\n"),
            }
        }
    }
}

const MENU: &str =
    "\n  1) retry network\n  2) diagnostics\n  3) reboot\n  4) power off\nchoice [1-4]: ";

/// The failures, newest last. Never says `FATAL` (that line is printed exactly once,
/// by the logger), but always carries the whole message.
fn header(failures: &[Failure]) -> String {
    let mut s = String::from("\n[ze-install] recovery console: the install failed\n");
    let skip = failures.len().saturating_sub(SHOWN_FAILURES);
    if skip > 0 {
        s.push_str(&format!("  ({skip} earlier failures not shown)\n"));
    }
    for f in &failures[skip..] {
        s.push_str(&format!("  attempt {}: {}\n", f.attempt, f.fatal));
    }
    s
}

fn reboot_later(term: &mut dyn Terminal) -> Action {
    term.drain();
    Action::Reboot {
        after: UNATTENDED_DELAY,
    }
}

enum Gate {
    Open,
    Shut(Action),
}

/// Up to [`TRIES`] secrets. An empty line is not a try (an operator pressing Enter to
/// wake the console should not lose one).
fn gate(term: &mut dyn Terminal, v: &Verifier) -> Gate {
    let (word, note) = match v {
        Verifier::Argon2id(_) => ("token", ""),
        Verifier::Sha256(_) => (
            "password",
            "[ze-install] warning: ze.shell-auth is an unsalted sha256 and weak; prefer \
             ze.rescue-auth (argon2id)\n",
        ),
    };
    term.show(&format!(
        "[ze-install] recovery console locked: enter the recovery {word} ({})\n{note}",
        v.key()
    ));
    let mut wrong = 0;
    while wrong < TRIES {
        let Some(typed) = term.prompt(&format!("{word}: "), true) else {
            term.show("[ze-install] recovery: no console takes input; rebooting in 30 s\n");
            return Gate::Shut(reboot_later(term));
        };
        if typed.is_empty() {
            continue;
        }
        let verdict = v.verify(typed.as_bytes());
        auth::wipe(typed);
        match verdict {
            Ok(true) => return Gate::Open,
            Ok(false) => {
                wrong += 1;
                term.show(&format!("[ze-install] wrong {word} ({wrong} of {TRIES})\n"));
            }
            Err(e) => {
                term.show(&format!(
                    "[ze-install] recovery console locked: {e}; rebooting in 30 s\n"
                ));
                return Gate::Shut(reboot_later(term));
            }
        }
    }
    term.show(&format!("[ze-install] {TRIES} wrong tries: rebooting\n"));
    term.drain();
    Gate::Shut(Action::Reboot {
        after: Duration::ZERO,
    })
}

/// The recovery console on this machine's consoles: the policy from [`context`], the
/// menu on every console ([`tty::Ttys`], serial first), diagnostics from the real sysfs,
/// rtnetlink and log ring. Returns what PID 1 does next; the caller waits
/// `Reboot::after` and halts.
pub fn enter(
    env: &Env,
    session: &mut Session,
    failures: &[Failure],
    can_retry: &dyn Fn() -> Result<(), String>,
) -> Action {
    let ctx = context(env);
    let policy = policy(&ctx);
    let cmdline = std::fs::read_to_string(env.proc_root.join("cmdline")).unwrap_or_default();
    let list = crate::logger::console_list(&env.sys_root, &cmdline);
    let mut term = tty::Ttys::open(&env.dev_root, &list);
    let mut diagnostics = || machine_diagnostics(env, &ctx);
    session.run(
        &mut term,
        &policy,
        Menu {
            failures,
            diagnostics: &mut diagnostics,
            can_retry,
        },
    )
}

fn machine_diagnostics(env: &Env, ctx: &Context) -> Vec<String> {
    use crate::net::netlink::RtNetlink;
    let bundle = crate::modules::read_index(&env.bundle).ok();
    let net = match RtNetlink::open() {
        Ok(mut nl) => diagnostics::NetState::read(&mut nl),
        Err(e) => diagnostics::NetState::unavailable(e.to_string()),
    };
    let recent = crate::logger::recent();
    diagnostics::report(
        &diagnostics::Inputs {
            roots: env.into(),
            mode: ctx.source.into(),
            target: ctx.target.as_deref(),
            bundle: bundle.as_ref(),
            recent: &recent,
        },
        &net,
    )
}

#[cfg(test)]
mod tests;
