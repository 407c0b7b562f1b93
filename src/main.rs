//! `otaship`: one binary for the server and the command line.
//!
//! This file only parses the command line and dispatches; each command lives in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Over-the-air distribution of iOS apps.
#[derive(Debug, Parser)]
#[command(name = "otaship", version, about, propagate_version = true)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: upload builds, get install pages that install.
    Serve(Box<otaship_server::ServeArgs>),
    /// Create, list and revoke API tokens (admin, or upload-only for CI).
    Token(cli::serve::TokenArgs),
    /// Create, list, change and delete the accounts that sign in to the web UI.
    Account(cli::account::AccountArgs),
    /// Read an .ipa or a provisioning profile and say what it is and whether it will install.
    Inspect(cli::inspect::InspectArgs),
    /// Say why an install link (page, itms-services link, manifest, .ipa) fails, and how to fix it.
    Doctor(cli::doctor::DoctorArgs),
    /// Upload a build to a server (resumable, with progress) and print its install URL.
    Push(Box<cli::push::PushArgs>),
    /// List the apps on a server.
    Apps(cli::remote::AppsArgs),
    /// List, show and delete builds on a server.
    Builds(cli::remote::BuildsArgs),
    /// Print the correctly encoded itms-services:// link for a manifest URL.
    Link(cli::link::LinkArgs),
    /// Create, list and revoke share links (password, expiry, install limit).
    Share(cli::share::ShareArgs),
    /// Apply the database's pending migrations (the server also applies them when it starts).
    Migrate(Box<cli::admin::MigrateArgs>),
    /// Copy every build's files to another storage (file:// or s3://); run again to resume.
    MigrateStorage(Box<cli::admin::MigrateStorageArgs>),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match args.command {
        Command::Serve(serve) => cli::serve::serve(&serve),
        Command::Token(token) => cli::serve::token(&token),
        Command::Account(account) => cli::account::run(&account),
        Command::Inspect(inspect) => cli::inspect::run(&inspect),
        Command::Push(push) => cli::push::run(&push),
        Command::Apps(apps) => cli::remote::apps(&apps),
        Command::Builds(builds) => cli::remote::builds(&builds),
        Command::Link(link) => cli::link::run(&link),
        Command::Share(share) => cli::share::run(&share),
        Command::Migrate(migrate) => cli::admin::migrate(&migrate),
        Command::MigrateStorage(migrate) => cli::admin::migrate_storage(&migrate),
        // The doctor's exit codes are its verdict, not only success or failure.
        Command::Doctor(doctor) => return cli::doctor::run(&doctor),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Args::command().debug_assert();
    }
}
