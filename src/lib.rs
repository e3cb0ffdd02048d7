//! pg_ambient: train, register, predict, deploy and roll back models as
//! ordinary SQL. `api` is the SQL surface, `catalog` the only code that
//! writes catalog SQL, `ml` the pure-Rust maths.

use pgrx::prelude::*;

mod api;
mod catalog;
mod error;
mod gucs;
pub mod ml;
mod source;

pgrx::pg_module_magic!();

extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
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
