//! The subcommands, and how their failures become messages and exit codes.
//!
//! Exit codes (documented in the README): 0 success; 1 the command could not do its job
//! (unreadable file, unwritable output); 2 the input was refused (with a stable error code).

pub mod doctor;
pub mod inspect;
pub mod serve;

use std::io::{self, Write};
use std::process::ExitCode;

/// A command's failure: what to print and which exit code to return.
#[derive(Debug)]
pub enum Failure {
    /// The input was refused; carries the stable code and the sentence.
    Refused {
        /// Stable error code.
        code: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// The command could not run to the end.
    Failed(anyhow::Error),
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
        }
    }
}

impl From<otaship_ipa::IpaError> for Failure {
    fn from(error: otaship_ipa::IpaError) -> Self {
        match error {
            otaship_ipa::IpaError::Io(io) => Failure::Failed(io.into()),
            refused => Failure::Refused { code: refused.code(), message: refused.to_string() },
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
