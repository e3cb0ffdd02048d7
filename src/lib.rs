//! pg_ambient: train, register, predict, deploy and roll back models as
//! ordinary SQL. `api` is the SQL surface, `catalog` the only code that
//! writes catalog SQL, `ml` the pure-Rust maths.

use pgrx::prelude::*;

mod api;
mod catalog;
mod error;
mod gucs;
pub mod ml;
mod report;
mod source;

pgrx::pg_module_magic!();

extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
// What \df+ and \d+ show: after every function exists.
extension_sql_file!("../sql/comments.sql", name = "comments", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx captures a Rust backtrace for every error that crosses our code,
    // Postgres errors raised inside SPI included, and appends it to the
    // DETAIL users see whenever the server's environment sets
    // RUST_BACKTRACE (containers often do). RUST_LIB_BACKTRACE=0 turns that
    // capture off; std reads it once, at the first capture, which cannot
    // come before this. The backend is single-threaded here.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    gucs::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
