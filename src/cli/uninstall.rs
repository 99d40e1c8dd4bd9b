//! `lite2pg uninstall`: remove change capture from the SQLite file.

use std::process::ExitCode;

use crate::error::Result;

use super::CommonArgs;

pub(super) fn uninstall(common: &CommonArgs) -> Result<ExitCode> {
    let path = common.sqlite()?;
    let mut conn = crate::sqlite::open(&path, crate::sqlite::Access::ReadWrite)?;
    let had_capture = crate::sqlite::capture::uninstall(&mut conn)?;
    match had_capture {
        true => println!("capture removed from {}; the application's tables are untouched", path.display()),
        false => println!("{} had no lite2pg capture installed; nothing changed", path.display()),
    }
    Ok(ExitCode::SUCCESS)
}
