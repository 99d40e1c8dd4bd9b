//! `lite2pg local`: the managed local PostgreSQL used when no URL is given.

use std::process::ExitCode;

use clap::Subcommand;

use crate::error::Result;
use crate::pg::local::LocalServer;

/// What `local` does.
#[derive(Debug, Clone, Subcommand)]
pub enum LocalAction {
    /// Start it (made on first use) and print its URL.
    Start,
    /// Stop it.
    Stop,
    /// Say whether it runs, and where.
    Status,
}

pub(super) fn local(action: &LocalAction) -> Result<ExitCode> {
    match action {
        LocalAction::Start => println!("{}", LocalServer::ensure_running()?),
        LocalAction::Stop => match LocalServer::open()?.stop()? {
            true => println!("local PostgreSQL stopped"),
            false => println!("local PostgreSQL was not running"),
        },
        LocalAction::Status => {
            let server = LocalServer::open()?;
            match server.is_running() {
                true => println!("running: {}", server.url(crate::pg::local::LOCAL_DATABASE)),
                false => println!("not running (data in {})", crate::pg::local::data_dir().join("postgres").display()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
