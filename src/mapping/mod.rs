//! How SQLite becomes PostgreSQL, decided without touching either: the type of each column and the binary form
//! of each value (`types`), the plan of each table (`table`) with its defaults (`defaults`), the DDL text that
//! makes it (`ddl`), and where several sources' tables go (`layout`).

pub(crate) mod ddl;
pub(crate) mod defaults;
pub mod layout;
pub(crate) mod table;
pub mod types;
