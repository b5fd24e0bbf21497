use super::*;
use std::collections::VecDeque;

/// argon2id of `password` (salt `somesalt`, m=256, t=2, p=1).
const PHC: &str =
    "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";
/// `printf %s password | sha256sum`
const SHA: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
const MEDIA: &str = "0123456789abcdef0123456789abcdef";

/// A scripted operator: each prompt takes the next line (`None` once they run out, as
/// when no console takes input).
#[derive(Default)]
struct Script {
    input: VecDeque<String>,
    out: String,
    /// Every prompt shown, and whether it was for a secret.
    prompts: Vec<(String, bool)>,
    drained: usize,
}

impl Script {
    fn new(lines: &[&str]) -> Script {
        Script {
            input: lines.iter().map(|l| l.to_string()).collect(),
            ..Script::default()
        }
    }
}

impl Terminal for Script {
    fn show(&mut self, text: &str) {
        self.out.push_str(text);
    }
    fn prompt(&mut self, text: &str, secret: bool) -> Option<String> {
        self.out.push_str(text);
        self.prompts.push((text.to_string(), secret));
        let line = self.input.pop_front()?;
        if !secret {
            self.out.push_str(&line);
        }
        self.out.push('\n');
        Some(line)
    }
    fn drain(&mut self) {
        self.drained += 1;
    }
}

fn ctx(cmdline: &str) -> Context {
    context_from(None, cmdline)
}

fn failure() -> Vec<Failure> {
    vec![Failure {
        attempt: 1,
        fatal: Fatal::new(
            "network",
            "no interface reaches 10.0.2.2:80: eth0: no carrier",
        ),
    }]
}

/// Runs one session on `lines` with `policy`; returns the action, the script and how
/// often diagnostics ran.
fn run(session: &mut Session, policy: &Policy, lines: &[&str]) -> (Action, Script, usize) {
    run_with(session, policy, lines, &|| Ok(()))
}

fn run_with(
    session: &mut Session,
    policy: &Policy,
    lines: &[&str],
    can_retry: &dyn Fn() -> Result<(), String>,
) -> (Action, Script, usize) {
    let mut term = Script::new(lines);
    let mut calls = 0;
    let mut diagnostics = || {
        calls += 1;
        vec![
            "== interfaces ==".to_string(),
            "  eth0  mac=52:54:00:12:34:56".into(),
        ]
    };
    let failures = failure();
    let action = session.run(
        &mut term,
        policy,
        Menu {
            failures: &failures,
            diagnostics: &mut diagnostics,
            can_retry,
        },
    );
    (action, term, calls)
}

fn gated() -> Policy {
    policy(&ctx(&format!("ze.server=10.0.2.2 ze.rescue-auth={PHC}")))
}

/// A policy as one word, for the table.
fn kind(p: &Policy) -> String {
    match p {
        Policy::Gated(Verifier::Argon2id(_)) => "token".into(),
        Policy::Gated(Verifier::Sha256(_)) => "password".into(),
        Policy::Open => "open".into(),
        Policy::Unattended => "reboot in 30 s".into(),
        Policy::Locked(why) => format!("locked: {why}"),
    }
}

#[test]
fn policy_table() {
    let http = "ze.server=10.0.2.2";
    let iso = format!("ze.source=iso ze.media-id={MEDIA}");
    let rows = [
        (format!("{http} ze.rescue-auth={PHC}"), "token"),
        (format!("{iso} ze.rescue-auth={PHC}"), "token"),
        (format!("{http} ze.shell-auth={SHA}"), "password"),
        (format!("{iso} ze.shell-auth={SHA}"), "password"),
        // Both: the argon2id token, never the weak form.
        (
            format!("{http} ze.shell-auth={SHA} ze.rescue-auth={PHC}"),
            "token",
        ),
        (iso.clone(), "open"),
        (http.to_string(), "reboot in 30 s"),
        // The default source is http.
        (String::new(), "reboot in 30 s"),
        // An invalid secret shuts the console, whatever the source.
        (
            format!("{iso} ze.rescue-auth=hunter2"),
            "locked: ze.rescue-auth is not valid",
        ),
        (
            format!("{http} ze.shell-auth=abc"),
            "locked: ze.shell-auth is not valid",
        ),
    ];
    for (line, want) in rows {
        assert_eq!(kind(&policy(&ctx(&line))), want, "{line:?}");
    }
}

#[test]
fn policy_keys_survive_a_configuration_that_is_a_fatal() {
    // ze.port=0 makes the whole configuration invalid (the FATAL on screen); the
    // source and the secret still decide the console.
    let c = ctx(&format!(
        "ze.source=iso ze.media-id={MEDIA} ze.port=0 ze.target=/dev/vdb"
    ));
    assert_eq!(c.source, Source::Iso);
    assert_eq!(c.target.as_deref(), Some("/dev/vdb"));
    assert_eq!(policy(&c), Policy::Open);
    let c = ctx(&format!("ze.port=99999 ze.rescue-auth={PHC}"));
    assert!(matches!(policy(&c), Policy::Gated(Verifier::Argon2id(_))));
    // A bad source falls back to the default (http): no secret, so unattended.
    assert_eq!(policy(&ctx("ze.source=usb")), Policy::Unattended);
}

#[test]
fn a_secret_from_the_initrd_answers_file_gates_and_the_cmdline_still_wins() {
    let file = format!("ZE_SHELL_AUTH={SHA}\nZE_SOURCE=iso\nZE_MEDIA_ID={MEDIA}\n");
    let c = context_from(
        Some(("/etc/kldload/autoinstall.env", file.as_bytes())),
        "ze.port=0",
    );
    assert!(matches!(policy(&c), Policy::Gated(Verifier::Sha256(_))));
    let c = context_from(
        Some(("/etc/kldload/autoinstall.env", b"ZE_RESCUE_AUTH=oops\n")),
        &format!("ze.rescue-auth={PHC}"),
    );
    assert!(matches!(policy(&c), Policy::Gated(Verifier::Argon2id(_))));
    let c = context_from(
        Some(("/etc/kldload/autoinstall.env", b"ZE_RESCUE_AUTH=oops\n")),
        "ze.server=10.0.2.2",
    );
    assert_eq!(
        policy(&c),
        Policy::Locked("ZE_RESCUE_AUTH is not valid".into())
    );
}

#[test]
fn unattended_prints_the_error_and_reboots_in_30_s_without_reading() {
    let (action, term, diag) = run(&mut Session::new(), &Policy::Unattended, &["4"]);
    assert_eq!(
        action,
        Action::Reboot {
            after: Duration::from_secs(30)
        }
    );
    assert!(term.prompts.is_empty(), "{:?}", term.prompts);
    assert!(
        term.out
            .contains("attempt 1: network: no interface reaches 10.0.2.2:80: eth0: no carrier"),
        "{}",
        term.out
    );
    assert!(term.out.contains("rebooting in 30 s"), "{}", term.out);
    assert!(!term.out.contains("1) retry network"));
    assert!(
        !term.out.contains("FATAL"),
        "the FATAL line is the logger's, once"
    );
    assert_eq!((diag, term.drained), (0, 1));
}

#[test]
fn locked_reboots_in_30_s_without_reading() {
    let p = Policy::Locked("ze.rescue-auth is not valid".into());
    let (action, term, _) = run(&mut Session::new(), &p, &["password"]);
    assert_eq!(
        action,
        Action::Reboot {
            after: UNATTENDED_DELAY
        }
    );
    assert!(term.prompts.is_empty());
    assert!(
        term.out
            .contains("locked: ze.rescue-auth is not valid; rebooting in 30 s")
    );
}

#[test]
fn open_menu_has_no_prompt_for_a_secret() {
    let (action, term, _) = run(&mut Session::new(), &Policy::Open, &["4"]);
    assert_eq!(action, Action::PowerOff);
    assert_eq!(term.prompts.len(), 1);
    assert!(!term.prompts[0].1, "the menu prompt is not a secret");
    for item in [
        "1) retry network",
        "2) diagnostics",
        "3) reboot",
        "4) power off",
    ] {
        assert!(term.out.contains(item), "{item}: {}", term.out);
    }
    // The error comes before the menu.
    assert!(term.out.find("attempt 1: network").unwrap() < term.out.find("1) retry").unwrap());
    assert!(term.drained > 0, "output drained before the power-off");
}

#[test]
fn three_wrong_tokens_reboot() {
    let (action, term, diag) = run(&mut Session::new(), &gated(), &["a", "b", "c", "password"]);
    assert_eq!(
        action,
        Action::Reboot {
            after: Duration::ZERO
        }
    );
    assert_eq!(term.prompts.len(), 3);
    assert!(
        term.prompts
            .iter()
            .all(|(p, secret)| p == "token: " && *secret)
    );
    for n in 1..=3 {
        assert!(
            term.out.contains(&format!("wrong token ({n} of 3)")),
            "{}",
            term.out
        );
    }
    assert!(term.out.contains("3 wrong tries: rebooting"));
    assert!(
        !term.out.contains("1) retry network"),
        "menu shown without the token"
    );
    assert_eq!(diag, 0);
    // The scripted operator still has the right one: it was never asked for.
    assert_eq!(term.input.len(), 1);
}

#[test]
fn empty_lines_are_not_tries_and_the_right_token_opens_the_menu() {
    let (action, term, diag) = run(
        &mut Session::new(),
        &gated(),
        &["", "wrong", "", "password", "2", "9", "3"],
    );
    assert_eq!(
        action,
        Action::Reboot {
            after: Duration::ZERO
        }
    );
    assert!(term.out.contains("wrong token (1 of 3)"));
    assert!(!term.out.contains("(2 of 3)"), "{}", term.out);
    assert_eq!(diag, 1);
    assert!(term.out.contains("== interfaces =="));
    assert!(term.out.contains("choose 1, 2, 3 or 4"));
    // The secret never reaches the screen (the script echoes only non-secret lines).
    assert!(!term.out.contains("password\n"), "{}", term.out);
    // After diagnostics the failure is shown again above the menu.
    let after = &term.out[term.out.find("== interfaces ==").unwrap()..];
    assert!(after.contains("attempt 1: network"), "{after}");
}

#[test]
fn the_weak_sha256_form_warns_and_accepts_the_password() {
    let p = policy(&ctx(&format!("ze.server=10.0.2.2 ze.shell-auth={SHA}")));
    let (action, term, _) = run(&mut Session::new(), &p, &["password", "4"]);
    assert_eq!(action, Action::PowerOff);
    assert!(
        term.out
            .contains("ze.shell-auth is an unsalted sha256 and weak")
    );
    assert_eq!(term.prompts[0], ("password: ".to_string(), true));
}

#[test]
fn the_session_remembers_the_operator_after_a_retry() {
    let mut s = Session::new();
    let (action, _, _) = run(&mut s, &gated(), &["password", "1"]);
    assert_eq!(action, Action::Retry);
    // The retry failed again: straight to the menu.
    let (action, term, _) = run(&mut s, &gated(), &["4"]);
    assert_eq!(action, Action::PowerOff);
    assert!(
        term.prompts.iter().all(|(_, secret)| !secret),
        "{:?}",
        term.prompts
    );
}

#[test]
fn a_retry_that_cannot_start_says_why_and_keeps_the_menu() {
    let (action, term, _) = run_with(&mut Session::new(), &Policy::Open, &["1", "3"], &|| {
        Err("the previous attempt is still running".into())
    });
    assert_eq!(
        action,
        Action::Reboot {
            after: Duration::ZERO
        }
    );
    assert!(
        term.out
            .contains("cannot retry yet: the previous attempt is still running")
    );
}

#[test]
fn no_input_at_all_reboots_in_30_s() {
    let (action, term, _) = run(&mut Session::new(), &Policy::Open, &[]);
    assert_eq!(
        action,
        Action::Reboot {
            after: UNATTENDED_DELAY
        }
    );
    assert!(
        term.out
            .contains("no console takes input; rebooting in 30 s")
    );
    let (action, _, _) = run(&mut Session::new(), &gated(), &["x"]);
    assert_eq!(
        action,
        Action::Reboot {
            after: UNATTENDED_DELAY
        }
    );
}

#[test]
fn every_failure_stays_on_screen() {
    let failures: Vec<Failure> = (1..=12)
        .map(|n| Failure {
            attempt: n,
            fatal: Fatal::new("network", format!("try {n} failed")),
        })
        .collect();
    let h = header(&failures);
    assert!(h.contains("(2 earlier failures not shown)"), "{h}");
    assert!(!h.contains("try 2 failed") && h.contains("try 3 failed"));
    assert!(h.contains("attempt 12: network: try 12 failed"));
    let h = header(&failures[..2]);
    assert!(h.contains("attempt 1: network: try 1 failed\n  attempt 2: network: try 2 failed"));
}
