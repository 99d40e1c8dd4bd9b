//! Integration tests against a real PostgreSQL and real SQLite files; each test makes its own database.

mod support;

mod citus;
mod constraints;
mod crash;
mod cutover;
mod demo;
mod django_cutover;
mod errors;
mod evolve;
mod existing;
mod fleet;
mod foreign_keys;
mod generated;
mod identity;
mod misfit;
mod names;
mod observe;
mod parent;
mod random;
mod realapps;
mod replace;
mod security;
mod snapshot;
mod stream;
mod typed;
mod untyped;
