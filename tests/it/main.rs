//! Integration tests against a real PostgreSQL and real SQLite files; each test makes its own database.

mod support;

mod crash;
mod cutover;
mod demo;
mod evolve;
mod fleet;
mod misfit;
mod observe;
mod random;
mod security;
mod snapshot;
mod stream;
mod untyped;
