//! What a command is told about its source: `SourceOptions` for every command on one source, `SnapshotOptions`
//! for the commands that may copy it whole.

use std::path::PathBuf;

use crate::config::Policies;
use crate::pg::PgTarget;
use crate::source::Selection;

/// One SQLite source and where it goes in PostgreSQL.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub sqlite: PathBuf,
    pub target: PgTarget,
    pub schema: String,
    pub selection: Selection,
    /// Overrides the source id stored in the SQLite file.
    pub source_id: Option<String>,
    /// Misfit policies, type overrides and what dropped tables become.
    pub policies: Policies,
}

impl SourceOptions {
    /// These options under the source id `source_id`.
    pub fn with_source_id(&self, source_id: &str) -> SourceOptions {
        SourceOptions { source_id: Some(source_id.to_string()), ..self.clone() }
    }
}

/// A source and how to copy it whole when it has not been copied yet (or `replace` asks for it again).
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub source: SourceOptions,
    /// Drop and re-create tables that already exist.
    pub replace: bool,
    /// Parallel copy connections.
    pub jobs: usize,
    /// Show progress bars (on a terminal).
    pub progress: bool,
}

impl SnapshotOptions {
    /// These options under the source id `source_id`.
    pub fn with_source_id(&self, source_id: &str) -> SnapshotOptions {
        SnapshotOptions { source: self.source.with_source_id(source_id), ..self.clone() }
    }
}

/// What the sources of a config file share when one process streams them all: each source adds its file, id
/// and schema (see `Fleet::options_for`).
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub target: PgTarget,
    pub selection: Selection,
    pub policies: Policies,
    /// Parallel copy connections of a source's snapshot.
    pub jobs: usize,
}
