use crate::support::{SqliteFile, TestDb};
