//! Checking a typed recovery token against the configured verifier: an argon2id PHC
//! string (`ze.rescue-auth`) or the seed's unsalted sha256 hex (`ze.shell-auth`). Both
//! comparisons are constant-time: argon2's output comparison is (`phc::Output` uses
//! `subtle`), and the sha256 one uses `subtle` directly.

use crate::config::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a typed token is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verifier {
    /// `ze.rescue-auth`: `$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`.
    Argon2id(Secret),
    /// `ze.shell-auth`: sha256 of the password, 64 hex digits. Weak: unsalted and fast.
    Sha256(Secret),
}

/// A verifier that cannot check anything. Never quotes the verifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("ze.rescue-auth is not a usable argon2id PHC string ({0})")]
    Phc(String),
    #[error("ze.shell-auth is not a sha256 hex digest (64 hex digits)")]
    Hex,
}

impl Verifier {
    /// The parameter the verifier came from.
    pub fn key(&self) -> &'static str {
        match self {
            Verifier::Argon2id(_) => "ze.rescue-auth",
            Verifier::Sha256(_) => "ze.shell-auth",
        }
    }

    /// Whether `token` (the typed line without its line ending) matches.
    pub fn verify(&self, token: &[u8]) -> Result<bool, AuthError> {
        match self {
            Verifier::Argon2id(s) => verify_argon2id(s.expose(), token),
            Verifier::Sha256(s) => verify_sha256(s.expose(), token),
        }
    }
}

/// Recomputes argon2id with the PHC string's own parameters and salt.
pub fn verify_argon2id(phc: &str, token: &[u8]) -> Result<bool, AuthError> {
    use argon2::password_hash::{Error, PasswordVerifier};
    // The same rules the command line was checked with (algorithm, version, m/t/p).
    crate::config::check_argon2id_phc(phc).map_err(AuthError::Phc)?;
    let hash = argon2::PasswordHash::new(phc).map_err(|e| AuthError::Phc(e.to_string()))?;
    match argon2::Argon2::default().verify_password(token, &hash) {
        Ok(()) => Ok(true),
        Err(Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(AuthError::Phc(e.to_string())),
    }
}

/// sha256(token) against 64 hex digits (any case).
pub fn verify_sha256(hex: &str, token: &[u8]) -> Result<bool, AuthError> {
    let want = decode_hex32(hex).ok_or(AuthError::Hex)?;
    let got: [u8; 32] = Sha256::digest(token).into();
    Ok(bool::from(got.ct_eq(&want)))
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Overwrites a typed token before its memory is freed: best effort (the kernel's tty
/// buffers held it too), but it keeps the token out of later heap reuse.
pub fn wipe(token: String) {
    let mut bytes = token.into_bytes();
    bytes.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// argon2id("password", salt "somesalt", m=256, t=2, p=1): the reference vector.
    const PHC: &str =
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";

    #[test]
    fn argon2id_known_vector_accepts_the_right_password_only() {
        assert_eq!(verify_argon2id(PHC, b"password"), Ok(true));
        assert_eq!(verify_argon2id(PHC, b"Password"), Ok(false));
        assert_eq!(verify_argon2id(PHC, b"password\n"), Ok(false));
        assert_eq!(verify_argon2id(PHC, b""), Ok(false));
    }

    #[test]
    fn argon2id_from_the_debian_tool_at_a_real_cost_verifies() {
        // printf %s 'the-token' | argon2 'ze-install-salt' -id -t 3 -m 16 -p 4 -e
        // (docs/recovery.md's recipe; 64 MiB, four lanes).
        let phc = "$argon2id$v=19$m=65536,t=3,p=4$emUtaW5zdGFsbC1zYWx0\
                   $q/DGCFDriM0106ViDtb4ccXOsTf4rNT1E115ph1G7rg";
        assert_eq!(verify_argon2id(phc, b"the-token"), Ok(true));
        assert_eq!(verify_argon2id(phc, b"the-token "), Ok(false));
    }

    #[test]
    fn argon2id_with_a_changed_parameter_does_not_match() {
        // Same hash, other cost: a different function, so no match (not an error).
        let t3 = PHC.replace("t=2", "t=3");
        assert_eq!(verify_argon2id(&t3, b"password"), Ok(false));
    }

    #[test]
    fn malformed_phc_strings_are_errors_not_mismatches() {
        for bad in [
            "",
            "argon2id",
            "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ",
            "$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "$argon2id$v=16$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "$argon2id$v=19$m=256,t=0,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "$argon2id$v=19$t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "$argon2id$v=19$m=256,t=2,p=1$c29t!!!$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        ] {
            let e = verify_argon2id(bad, b"password").unwrap_err();
            assert!(matches!(e, AuthError::Phc(_)), "{bad:?}: {e:?}");
            // The message never quotes the verifier.
            assert!(!e.to_string().contains("nf65EO"), "{e}");
        }
    }

    #[test]
    fn sha256_form_matches_the_hex_digest_of_the_typed_password() {
        // printf %s password | sha256sum
        let hex = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
        assert_eq!(verify_sha256(hex, b"password"), Ok(true));
        assert_eq!(
            verify_sha256(&hex.to_ascii_uppercase(), b"password"),
            Ok(true)
        );
        assert_eq!(verify_sha256(hex, b"password\n"), Ok(false));
        assert_eq!(verify_sha256(hex, b"passwore"), Ok(false));
        assert_eq!(verify_sha256(&hex[..63], b"password"), Err(AuthError::Hex));
        assert_eq!(
            verify_sha256(&format!("{}g", &hex[..63]), b"password"),
            Err(AuthError::Hex)
        );
    }

    #[test]
    fn verifiers_from_the_command_line() {
        let c = crate::config::from_cmdline(&format!(
            "ze.source=iso ze.media-id={} ze.rescue-auth={PHC} ze.shell-auth={}",
            "0".repeat(32),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        ))
        .unwrap()
        .config;
        let a = Verifier::Argon2id(c.rescue_auth.unwrap());
        let s = Verifier::Sha256(c.shell_auth.unwrap());
        assert_eq!((a.key(), s.key()), ("ze.rescue-auth", "ze.shell-auth"));
        assert_eq!(a.verify(b"password"), Ok(true));
        assert_eq!(s.verify(b"password"), Ok(true));
        assert_eq!(a.verify(b"hunter2"), Ok(false));
        // Debug never shows the verifier either.
        assert!(!format!("{a:?}").contains("argon2id$"));
    }
}
