//! `otaship account`: named accounts for the web UI, managed on the database directly (like
//! `otaship token`), from any machine that reaches it.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::anyhow;
use otaship_server::accounts::{self, Role};
use otaship_server::db::{AccountRow, Db, timestamp};
use otaship_server::tokens;

use super::serve::open_database;
use super::{Failure, print, runtime};

/// `otaship account`.
#[derive(Debug, clap::Args)]
pub struct AccountArgs {
    #[command(subcommand)]
    command: AccountCommand,
    /// The server's data directory [default: ./otaship-data].
    #[arg(long, global = true, env = "OTASHIP_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The server's database URL [default: sqlite://<data-dir>/otaship.db].
    #[arg(long, global = true, env = "OTASHIP_DATABASE", value_name = "URL")]
    database: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum AccountCommand {
    /// Create an account. Without --password-stdin a strong password is generated and printed
    /// once.
    Create {
        /// Letters A-Z, digits and . _ @ -; unique whatever the case.
        username: String,
        /// `admin` (everything) or `uploader` (upload and browse; no deleting, no admin pages).
        #[arg(long, value_parser = ["admin", "uploader"])]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts (never their passwords).
    List,
    /// Set an account's password and end its sessions. Without --password-stdin a strong
    /// password is generated and printed once.
    SetPassword {
        /// The account.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change an account's role (its open sessions get the new role at once).
    SetRole {
        /// The account.
        username: String,
        /// `admin` or `uploader`.
        #[arg(value_parser = ["admin", "uploader"])]
        role: String,
    },
    /// Delete an account and end its sessions.
    Delete {
        /// The account.
        username: String,
    },
}

/// Runs `otaship account ...`.
pub fn run(args: &AccountArgs) -> Result<(), Failure> {
    // Read before the runtime starts: standard input is blocking.
    let typed = match &args.command {
        AccountCommand::Create { password_stdin: true, .. }
        | AccountCommand::SetPassword { password_stdin: true, .. } => Some(password_from_stdin()?),
        _ => None,
    };
    runtime()?.block_on(async {
        let db = open_database(args.data_dir.as_ref(), args.database.as_ref()).await?;
        match &args.command {
            AccountCommand::Create { username, role, .. } => {
                let username = accounts::check_username(username).map_err(refused)?;
                let role = role_named(role)?;
                let (password, generated) = chosen_password(typed)?;
                let hash = accounts::hash_password(password.clone()).await?;
                if !db.insert_account(&tokens::random_hex(8), &username, &hash, role).await? {
                    return Err(Failure::Refused {
                        code: "account-exists".into(),
                        message: format!(
                            "There is already an account named {username} (in any case); see `otaship account list`."
                        ),
                    });
                }
                if generated {
                    eprintln!("created the account {username} ({role}); its password, shown only this once:");
                    print(&format!("{password}\n"))?;
                } else {
                    print(&format!("created the account {username} ({role})\n"))?;
                }
            }
            AccountCommand::List => {
                let mut out =
                    String::from("USERNAME                          ROLE      CREATED               LAST SIGN-IN\n");
                for account in db.accounts().await? {
                    let minute = |at: time::OffsetDateTime| timestamp(at).chars().take(16).collect::<String>();
                    out.push_str(&format!(
                        "{:<33} {:<9} {:<21} {}\n",
                        account.username,
                        account.role.as_str(),
                        minute(account.created_at),
                        account.last_sign_in_at.map(minute).unwrap_or_else(|| "never".into()),
                    ));
                }
                print(&out)?;
            }
            AccountCommand::SetPassword { username, .. } => {
                let account = existing(&db, username).await?;
                let (password, generated) = chosen_password(typed)?;
                let hash = accounts::hash_password(password.clone()).await?;
                if !db.set_account_password(&account.id, &hash, None).await? {
                    return Err(no_account(username));
                }
                if generated {
                    eprintln!("set a new password for {}; its sessions ended. Shown only this once:", account.username);
                    print(&format!("{password}\n"))?;
                } else {
                    print(&format!("set a new password for {}; its sessions ended\n", account.username))?;
                }
            }
            AccountCommand::SetRole { username, role } => {
                let account = existing(&db, username).await?;
                let role = role_named(role)?;
                if !db.set_account_role(&account.id, role).await? {
                    return Err(no_account(username));
                }
                print(&format!("{} is now {role}\n", account.username))?;
            }
            AccountCommand::Delete { username } => {
                let account = existing(&db, username).await?;
                if !db.delete_account(&account.id).await? {
                    return Err(no_account(username));
                }
                print(&format!("deleted the account {}; its sessions ended\n", account.username))?;
            }
        }
        Ok::<(), Failure>(())
    })
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| Failure::Failed(anyhow!("cannot read the password from standard input: {error}")))?;
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}

/// The typed password (checked), or a generated one; and whether it was generated.
fn chosen_password(typed: Option<String>) -> Result<(String, bool), Failure> {
    match typed {
        Some(password) => {
            accounts::check_password(&password).map_err(refused)?;
            Ok((password, false))
        }
        None => Ok((accounts::generate_password(), true)),
    }
}

fn role_named(name: &str) -> Result<Role, Failure> {
    Role::parse(name).ok_or_else(|| Failure::Refused {
        code: "bad-role".into(),
        message: format!("There is no role {name:?}; choose admin or uploader."),
    })
}

async fn existing(db: &Db, username: &str) -> Result<AccountRow, Failure> {
    match db.account_by_username(username.trim()).await? {
        Some((account, _)) => Ok(account),
        None => Err(no_account(username)),
    }
}

fn no_account(username: &str) -> Failure {
    Failure::Refused {
        code: "no-such-account".into(),
        message: format!("There is no account named {username}; see `otaship account list`."),
    }
}

fn refused(refused: accounts::Refused) -> Failure {
    Failure::Refused { code: "invalid".into(), message: refused.0 }
}
