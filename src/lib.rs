//! lite2pg keeps a PostgreSQL database equal to a live SQLite file, and proves it.
//!
//! The pipeline, one module per step: [`sqlite`] opens the file, reads its schema, installs change capture and
//! reads changes; [`mapping`] decides how each table and value is held in PostgreSQL and where several sources'
//! tables go; [`pg`] connects (TLS, the managed local server), creates tables, copies and applies; [`snapshot`]
//! copies everything once; [`stream`] applies changes as they are committed; [`verify`] proves equality (`repair` sends differences through the stream again). Around it: [`status`], [`doctor`] and [`metrics`] to watch it, [`cutover`] to leave SQLite,
//! [`demo`] and [`bench`](mod@bench) to try and measure it, [`cli`] the command line.

pub(crate) mod app_constraints;
pub(crate) mod bench;
pub mod cli;
pub mod config;
pub(crate) mod constraints;
pub(crate) mod cutover;
pub(crate) mod demo;
pub(crate) mod doctor;
pub mod error;
pub(crate) mod evolve;
pub(crate) mod existing;
pub(crate) mod fleet;
pub(crate) mod generated;
pub(crate) mod ident;
pub mod mapping;
pub mod metrics;
pub mod options;
pub mod pg;
pub(crate) mod progress;
pub(crate) mod repair;
pub mod snapshot;
pub mod source;
pub(crate) mod sqlite;
pub mod status;
pub mod stream;
pub mod verify;

pub use error::{Error, ErrorKind, Result};

/// A crash-injection point (`FAILPOINTS=name=panic`), compiled in with the `failpoints` feature only (on for
/// `cargo test`, off in release builds).
#[macro_export]
#[doc(hidden)]
macro_rules! fail_point {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name);
    };
}
