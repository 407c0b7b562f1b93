//! API tokens: generated with 256 random bits, shown once, stored only as a SHA-256 hash.

use sha2::{Digest, Sha256};

/// Prefix of every token, so that secret scanners and people recognise them.
pub const TOKEN_PREFIX: &str = "ots_";

/// Random bytes as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // The operating system's generator; failing it is not recoverable.
    if getrandom::fill(&mut buffer).is_err() {
        std::process::abort();
    }
    hex(&buffer)
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
}
