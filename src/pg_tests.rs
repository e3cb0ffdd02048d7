//! Behaviour inside Postgres that the golden SQL sessions cannot see.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn fixture() {
        Spi::run(
            "CREATE TABLE pts AS
         SELECT g AS id, (g % 10)::float8 AS a, ((g * 3) % 7)::float8 AS b,
                CASE WHEN g % 10 < 5 THEN 'left' ELSE 'right' END AS side
           FROM generate_series(1, 200) g;
         ALTER TABLE pts ADD PRIMARY KEY (id)",
        )
        .expect("fixture table");
    }

    fn one<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(sql: &str) -> T {
        Spi::get_one::<T>(sql)
            .expect("query runs")
            .expect("a value")
    }

    #[pg_test]
    fn catalog_writes_run_as_owner_with_pinned_search_path_then_restore() {
        Spi::run(
            "CREATE ROLE ambient_test_role; SET ROLE ambient_test_role; SET search_path = public",
        )
        .expect("role");
        let inside = crate::catalog::as_extension_owner(|| {
            Ok((
                one::<String>("SELECT current_user::text"),
                one::<String>("SELECT current_setting('search_path')"),
            ))
        })
        .expect("owner block");
        assert_eq!(inside.1, "pg_catalog, pg_temp");
        assert_ne!(inside.0, "ambient_test_role");
        assert_eq!(
            one::<String>("SELECT current_user::text"),
            "ambient_test_role"
        );
        assert_eq!(
            one::<String>("SELECT current_setting('search_path')"),
            "public"
        );
        Spi::run("RESET ROLE").expect("reset");
    }

    #[pg_test]
    fn model_cache_holds_at_most_the_configured_number() {
        fixture();
        Spi::run("SET ambient.model_cache_size = 1").expect("guc");
        Spi::run("SELECT * FROM ambient.train('one', relation => 'pts', target => 'side')")
            .expect("train");
        Spi::run("SELECT * FROM ambient.train('two', relation => 'pts', target => 'side', hyperparams => '{\"max_depth\": 1}')")
        .expect("train");
        assert_eq!(
            one::<f64>("SELECT sum(ambient.predict('one', ARRAY[a, b])) FROM pts"),
            100.0
        );
        assert_eq!(
            one::<f64>("SELECT sum(ambient.predict('two', ARRAY[a, b])) FROM pts"),
            100.0
        );
        assert_eq!(crate::api::cached_models(), 1);
        Spi::run("SET ambient.model_cache_size = 0").expect("guc");
        assert_eq!(
            one::<f64>("SELECT sum(ambient.predict('one', ARRAY[a, b])) FROM pts"),
            100.0
        );
        assert_eq!(crate::api::cached_models(), 0);
    }

    #[pg_test]
    fn model_cache_is_bounded_by_bytes_too() {
        fixture();
        Spi::run("SELECT * FROM ambient.train('stump', relation => 'pts', target => 'side', algorithm => 'decision_tree', hyperparams => '{\"max_depth\": 1}')")
            .expect("train");
        Spi::run("SELECT * FROM ambient.train('forest', relation => 'pts', target => 'side', algorithm => 'random_forest')")
            .expect("train");
        let bytes = |project: &str| {
            one::<i64>(&format!(
                "SELECT artifact_bytes FROM ambient.models WHERE project = '{project}'"
            ))
        };
        // Room for the stump's decoded form (twice its artifact), not the forest's.
        assert!(bytes("forest") > 10 * bytes("stump"));
        let kb = (2 * bytes("stump")) / 1024 + 1;
        assert!(kb * 1024 < 2 * bytes("forest"));
        Spi::run(&format!("SET ambient.model_cache_memory = '{kb}kB'")).expect("guc");
        Spi::run("SELECT sum(ambient.predict('forest', ARRAY[a, b])) FROM pts").expect("predict");
        assert_eq!(
            crate::api::cached_models(),
            0,
            "the forest is too big to keep"
        );
        Spi::run("SELECT sum(ambient.predict('stump', ARRAY[a, b])) FROM pts").expect("predict");
        assert_eq!(crate::api::cached_models(), 1);
        Spi::run("RESET ambient.model_cache_memory").expect("guc");
    }

    #[pg_test]
    fn a_call_site_resolves_its_model_once_per_statement() {
        fixture();
        Spi::run("SELECT * FROM ambient.train('once', relation => 'pts', target => 'side')")
            .expect("train");
        let resolutions = || crate::api::RESOLUTIONS.with(|n| n.get());
        let before = resolutions();
        // 200 rows, one call site: one catalog resolution.
        assert_eq!(
            one::<f64>("SELECT sum(ambient.predict('once', ARRAY[a, b])) FROM pts"),
            100.0
        );
        assert_eq!(resolutions() - before, 1);
        // Two call sites in one statement: one each.
        let before = resolutions();
        Spi::run("SELECT ambient.predict('once', ARRAY[a, b]), ambient.predict_label('once', pts) FROM pts")
            .expect("predict");
        assert_eq!(resolutions() - before, 2);
        // A deploy in this transaction is seen by the next statement.
        // (Whether a read-only statement reuses the previous one's answer
        // cannot be seen from here: SPI increments the command counter
        // before every statement it runs.)
        Spi::run("SELECT * FROM ambient.train('once', relation => 'pts', features => ARRAY['b'], deploy => 'always', new_contract => true)")
            .expect("train");
        let reads = || crate::api::LIVE_MODEL_READS.with(|n| n.get());
        let reads_before = reads();
        let stump_sum: f64 = one("SELECT sum((ambient.predict_proba('once', pts))[1]) FROM pts");
        assert_eq!(reads() - reads_before, 1);
        Spi::run("SELECT ambient.rollback('once', new_contract => true)").expect("rollback");
        let full_sum: f64 = one("SELECT sum((ambient.predict_proba('once', pts))[1]) FROM pts");
        assert_ne!(stump_sum, full_sum);
    }

    #[pg_test(error = "project \"nope\" does not exist")]
    fn unknown_project_is_an_error() {
        Spi::run("SELECT ambient.predict('nope', ARRAY[1.0])").expect("raises");
    }

    #[pg_test(error = "query must be a SELECT")]
    fn a_query_source_must_be_a_select() {
        Spi::run("SELECT ambient.train('q', query => 'CREATE TABLE x (a int)', target => 'a')")
            .expect("raises");
    }
}
