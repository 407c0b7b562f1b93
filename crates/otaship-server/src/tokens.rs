//! API tokens: generated with 256 random bits, shown once, stored only as a SHA-256 hash, each
//! with a scope that says what it may do.

use sha2::{Digest, Sha256};

/// Prefix of every token, so that secret scanners and people recognise them.
pub const TOKEN_PREFIX: &str = "ots_";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything: the API, and signing in to the web UI.
    Admin,
    /// Uploading builds only (`POST /api/v1/builds` and the resumable uploads): for CI, where a
    /// leaked token must not be able to delete or read anything.
    Upload,
}

impl Scope {
    /// The name stored and shown (`admin`, `upload`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Upload => "upload",
        }
    }

    /// The scope a stored or typed name means.
    pub fn parse(name: &str) -> Option<Scope> {
        match name {
            "admin" => Some(Scope::Admin),
            "upload" => Some(Scope::Upload),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Random bytes from the operating system's generator.
pub fn random_bytes(count: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; count];
    // Failing the operating system's generator is not recoverable.
    if getrandom::fill(&mut buffer).is_err() {
        std::process::abort();
    }
    buffer
}

/// Random bytes as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    hex(&random_bytes(bytes))
}

/// A new secret token.
pub fn generate() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex(32))
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.trim().as_bytes()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), a);
        assert_eq!(hash(&a), hash(&format!(" {a}\n")));
    }

    #[test]
    fn scopes_have_stable_names() {
        for scope in [Scope::Admin, Scope::Upload] {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("Admin"), None);
        assert_eq!(Scope::parse(""), None);
    }
}
