//! The subcommands, and how their failures become messages and exit codes.
//!
//! Exit codes (documented in the README): 0 success; 1 the command could not do its job
//! (unreadable file, unwritable output, server unreachable or failing); 2 the input was refused
//! (with a stable error code); 3 the server refused the API token.

pub mod account;
pub mod admin;
pub mod client;
pub mod doctor;
pub mod inspect;
pub mod link;
mod progress;
pub mod push;
pub mod remote;
pub mod serve;
pub mod share;

use std::io::{self, Write};
use std::process::ExitCode;

/// A command's failure: what to print and which exit code to return.
#[derive(Debug)]
pub enum Failure {
    /// The input was refused; carries the stable code and the sentence.
    Refused {
        /// Stable error code.
        code: std::borrow::Cow<'static, str>,
        /// What is wrong and what to do.
        message: String,
    },
    /// The command could not run to the end.
    Failed(anyhow::Error),
    /// The server refused the credentials.
    Denied(String),
}

impl Failure {
    /// Prints the failure as one line on stderr and returns the exit code.
    pub fn report(self) -> ExitCode {
        let mut stderr = io::stderr().lock();
        match self {
            Failure::Refused { code, message } => {
                let _ = writeln!(stderr, "error[{code}]: {message}");
                ExitCode::from(2)
            }
            Failure::Failed(error) => {
                let _ = writeln!(stderr, "error: {error:#}");
                ExitCode::from(1)
            }
            Failure::Denied(message) => {
                let _ = writeln!(stderr, "error[unauthorized]: {message}");
                ExitCode::from(3)
            }
        }
    }
}

impl From<otaship_ipa::IpaError> for Failure {
    fn from(error: otaship_ipa::IpaError) -> Self {
        match error {
            otaship_ipa::IpaError::Io(io) => Failure::Failed(io.into()),
            refused => Failure::Refused { code: refused.code().into(), message: refused.to_string() },
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Failed(error)
    }
}

/// Writes to stdout, treating a closed pipe (`otaship inspect x | head`) as success.
pub fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure::Failed(anyhow::Error::new(error).context("cannot write to standard output")))
        }
        _ => Ok(()),
    }
}

impl From<otaship_server::db::DbError> for Failure {
    fn from(error: otaship_server::db::DbError) -> Self {
        Failure::Failed(anyhow::Error::new(error).context("the database failed"))
    }
}

/// A QR code of `text` drawn with Unicode half blocks (light on dark, as phone cameras read best
/// from a terminal), followed by a newline; empty if the text is too long for a QR code.
pub fn terminal_qr(text: &str) -> String {
    use qrcode::render::unicode::Dense1x2;
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let art = code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).build();
            format!("{art}\n")
        }
        Err(_) => String::new(),
    }
}

/// A tokio runtime for the commands that need one.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::Failed(anyhow::Error::new(error).context("cannot start the async runtime")))
}
