//! Named accounts for the web UI: what a username and a password may be, the two roles, and
//! passwords hashed with Argon2id (the `argon2` crate's default parameters, stored as PHC
//! strings). Hashing takes tens of milliseconds of CPU on purpose, so it runs on the blocking
//! pool, never on the async workers. The rows live in `db::accounts`; the pages in
//! `http::accounts`.

use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted, in bytes: Argon2 takes any length, but a megabyte "password" is
/// only a way to make the server work.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// What an account may do in the web UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: upload, delete, devices, accounts, the `/admin` pages.
    Admin,
    /// Upload builds and browse apps, builds and devices; nothing that deletes or administers.
    Uploader,
}

impl Role {
    /// The name stored and shown (`admin`, `uploader`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Uploader => "uploader",
        }
    }

    /// The role a stored or typed name means.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "admin" => Some(Role::Admin),
            "uploader" => Some(Role::Uploader),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A username or password that is refused, with the sentence that says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The username to store for `typed`: trimmed; ASCII letters, digits and `.`, `_`, `@`, `-`,
/// starting with a letter or digit. ASCII keeps "unique whatever the case" the same on both
/// database engines (SQLite's `lower()` only folds ASCII).
pub fn check_username(typed: &str) -> Result<String, Refused> {
    let name = typed.trim();
    if name.is_empty() {
        return Err(Refused("Give a username.".to_owned()));
    }
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err(Refused(format!("A username may have at most {MAX_USERNAME_CHARS} characters.")));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
    if !name.chars().all(allowed) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(Refused(
            "A username may hold only letters A-Z, digits and . _ @ -, and starts with a letter or digit.".to_owned(),
        ));
    }
    Ok(name.to_owned())
}

/// Refuses a password that is too short or too long.
pub fn check_password(password: &str) -> Result<(), Refused> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Refused(format!("A password needs at least {MIN_PASSWORD_CHARS} characters.")));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Refused(format!("A password may have at most {MAX_PASSWORD_BYTES} bytes.")));
    }
    Ok(())
}

/// Letters and digits that cannot be mistaken for one another (no 0/O, 1/l/I).
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A new random password: four groups of five characters from a 57-letter alphabet (about 116
/// bits), easy to read out and to type.
pub fn generate_password() -> String {
    let alphabet_len = PASSWORD_ALPHABET.len();
    // Bytes at or above the largest multiple of the alphabet's size are dropped, so that every
    // character is equally likely.
    let ceiling = 256 - 256 % alphabet_len;
    let mut chars = Vec::with_capacity(20);
    while chars.len() < 20 {
        for byte in crate::tokens::random_bytes(32) {
            let byte = usize::from(byte);
            if byte < ceiling && chars.len() < 20 {
                chars.push(char::from(PASSWORD_ALPHABET[byte % alphabet_len]));
            }
        }
    }
    chars.chunks(5).map(|group| group.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// The Argon2id PHC string of `password`, with a random salt.
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_now(&password)).await.context("the password hasher stopped")?
}

fn hash_now(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| anyhow!("cannot hash the password: {error}"))
}

/// Whether `password` matches `stored` (a PHC string). With no stored hash (no such account) a
/// hash is checked all the same, so that an unknown username takes as long as a wrong password
/// and the answer's timing does not tell which usernames exist.
pub async fn verify_password(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let Some(stored) = stored else {
            let decoy = decoy_hash()?;
            let _ = Argon2::default().verify_password(password.as_bytes(), decoy);
            return Ok(false);
        };
        match Argon2::default().verify_password(password.as_bytes(), stored.as_str()) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(error) => Err(anyhow!("a stored password hash cannot be read: {error}")),
        }
    })
    .await
    .context("the password hasher stopped")?
}

/// A hash of a random password, made once, for [`verify_password`] to check against when there
/// is no account.
fn decoy_hash() -> anyhow::Result<&'static str> {
    static DECOY: OnceLock<String> = OnceLock::new();
    if let Some(decoy) = DECOY.get() {
        return Ok(decoy);
    }
    let made = hash_now(&generate_password())?;
    Ok(DECOY.get_or_init(|| made))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_ascii_words() {
        assert_eq!(check_username("  alice@example.com "), Ok("alice@example.com".to_owned()));
        assert_eq!(check_username("Bob_2"), Ok("Bob_2".to_owned()));
        for bad in ["", "   ", "-alice", "al ice", "ålice", "a/b", &"x".repeat(65)] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_have_bounds() {
        assert!(check_password("123456789").is_err());
        assert!(check_password("1234567890").is_ok());
        // Ten characters, more than ten bytes.
        assert!(check_password("ééééééééé").is_err() && check_password("éééééééééé").is_ok());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_BYTES)).is_ok());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }

    #[test]
    fn generated_passwords_are_random_and_acceptable() {
        let (a, b) = (generate_password(), generate_password());
        assert_ne!(a, b);
        assert_eq!(a.len(), 23, "{a}");
        assert!(check_password(&a).is_ok());
        assert!(a.split('-').all(|group| group.len() == 5 && group.bytes().all(|c| PASSWORD_ALPHABET.contains(&c))));
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() -> anyhow::Result<()> {
        let hash = hash_password("correct horse battery".to_owned()).await?;
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert_ne!(hash, hash_password("correct horse battery".to_owned()).await?, "salted");
        assert!(verify_password("correct horse battery".to_owned(), Some(hash.clone())).await?);
        assert!(!verify_password("correct horse battery!".to_owned(), Some(hash)).await?);
        assert!(!verify_password("anything at all".to_owned(), None).await?);
        assert!(verify_password("x".repeat(12), Some("not a hash".to_owned())).await.is_err());
        Ok(())
    }

    #[test]
    fn roles_have_stable_names() {
        for role in [Role::Admin, Role::Uploader] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("upload"), None);
    }
}
