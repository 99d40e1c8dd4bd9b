//! Integration tests against a real PostgreSQL and real SQLite files; each test makes its own database.

mod support;

mod citus;
mod constraints;
mod crash;
mod cutover;
mod demo;
mod errors;
mod evolve;
mod fleet;
mod foreign_keys;
mod identity;
mod misfit;
mod names;
mod observe;
mod random;
mod realapps;
mod replace;
mod security;
mod snapshot;
mod stream;
mod untyped;
