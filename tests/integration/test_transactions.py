"""Deploys become visible to other sessions when, and only when, they commit."""

import threading
import time

import psycopg
import pytest

from conftest import connect, train_tree_and_stump


def live_label(conn, features=(7.7, 3.0, 6.1, 2.3)):
    return conn.execute("SELECT ambient.predict_label('iris', %s::float8[])", [list(features)]).fetchone()[0]


def test_deploy_is_seen_on_the_next_statement_after_commit(database):
    stump = train_tree_and_stump(database)
    with connect(database) as deployer, connect(database, autocommit=True) as reader:
        assert live_label(reader) == "virginica"
        deployer.execute("SELECT ambient.deploy('iris', %s, reason => 'tx test')", [stump])
        # Inside the deploying transaction the stump is live already ...
        assert live_label(deployer) == "versicolor"
        # ... but no one else sees it before COMMIT.
        assert live_label(reader) == "virginica"
        deployer.commit()
        assert live_label(reader) == "versicolor"

        deployer.execute("SELECT ambient.rollback('iris')")
        assert live_label(reader) == "versicolor"
        deployer.rollback()
        assert live_label(reader) == "versicolor"
        deployer.execute("SELECT ambient.rollback('iris')")
        deployer.commit()
        assert live_label(reader) == "virginica"


def test_failed_train_inside_a_transaction_leaves_nothing(database):
    with connect(database) as conn:
        conn.execute("SELECT * FROM ambient.train('iris', relation => 'iris', target => 'species', algorithm => 'decision_tree')")
        conn.execute("SAVEPOINT before_bad")
        with pytest.raises(psycopg.Error) as error:
            conn.execute("SELECT * FROM ambient.train('iris', relation => 'iris', algorithm => 'nope')")
        assert error.value.sqlstate == "22023"
        conn.execute("ROLLBACK TO SAVEPOINT before_bad")
        conn.commit()
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM ambient.model_store), (SELECT count(*) FROM ambient.snapshots),"
            " (SELECT count(*) FROM ambient.deployment_log)").fetchone()
        assert counts == (1, 1, 1)


def test_rolled_back_savepoint_deploy_is_not_seen_by_the_next_statement(database):
    stump = train_tree_and_stump(database)
    with connect(database) as conn:
        assert live_label(conn) == "virginica"
        conn.execute("SAVEPOINT before_deploy")
        conn.execute("SELECT ambient.deploy('iris', %s)", [stump])
        assert live_label(conn) == "versicolor"
        conn.execute("ROLLBACK TO SAVEPOINT before_deploy")
        assert live_label(conn) == "virginica"
        assert live_label(conn) == "virginica"
        conn.commit()


def test_repeatable_read_keeps_its_snapshot_of_the_live_model(database):
    stump = train_tree_and_stump(database)
    with connect(database) as reader, connect(database, autocommit=True) as deployer:
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        assert live_label(reader) == "virginica"
        deployer.execute("SELECT ambient.deploy('iris', %s)", [stump])
        # The reader's snapshot predates the deploy ...
        assert live_label(reader) == "virginica"
        reader.commit()
        # ... and its next transaction sees it.
        assert live_label(reader) == "versicolor"
        # Read-only statements in between change nothing; the next commit does.
        assert live_label(reader) == "versicolor"
        deployer.execute("SELECT ambient.rollback('iris')")
        assert live_label(reader) == "virginica"


def test_a_plpgsql_loop_sees_a_deploy_another_session_commits(database):
    """PL/pgSQL keeps an expression's call site for the whole transaction;
    each round of the loop still sees others' commits, as a statement would."""
    stump = train_tree_and_stump(database)
    with connect(database, autocommit=True) as conn:
        conn.execute("""
            CREATE FUNCTION labels_over_time() RETURNS text LANGUAGE plpgsql AS $$
            DECLARE seen text := '';
            BEGIN
              FOR round IN 1..2 LOOP
                seen := seen || ambient.predict_label('iris', ARRAY[7.7, 3.0, 6.1, 2.3]) || ' ';
                IF round = 1 THEN PERFORM pg_sleep(1.5); END IF;
              END LOOP;
              RETURN seen;
            END $$""")
    result = {}

    def loop():
        with connect(database, autocommit=True) as conn:
            result["labels"] = conn.execute("SELECT labels_over_time()").fetchone()[0]

    thread = threading.Thread(target=loop)
    thread.start()
    time.sleep(0.5)
    with connect(database, autocommit=True) as deployer:
        deployer.execute("SELECT ambient.deploy('iris', %s)", [stump])
    thread.join(timeout=30)
    assert result["labels"] == "virginica versicolor "


def test_single_row_predicts_read_the_catalog_only_after_something_changed(database):
    """A stream of single-row statements resolves the live model from memory
    while nothing has changed (0.1.0 read the catalog every statement: its
    memo was keyed on a count Postgres zeroes in the snapshot it reads), and
    reads it again after another session's deploy commits."""
    stump = train_tree_and_stump(database)
    with connect(database, autocommit=True) as reader, connect(database, autocommit=True) as observer:
        def catalog_scans():
            reader.execute("SELECT pg_stat_force_next_flush()")
            reader.execute("SELECT 1")
            observer.execute("SELECT pg_stat_clear_snapshot()")
            return observer.execute(
                "SELECT idx_scan + seq_scan FROM pg_stat_all_tables"
                " WHERE schemaname = 'ambient' AND relname = 'projects'").fetchone()[0]

        assert live_label(reader) == "virginica"
        before = catalog_scans()
        for _ in range(200):
            assert live_label(reader) == "virginica"
        assert catalog_scans() - before == 0
        with connect(database, autocommit=True) as deployer:
            deployer.execute("SELECT ambient.deploy('iris', %s)", [stump])
        before = catalog_scans()
        assert live_label(reader) == "versicolor"
        looked_up = catalog_scans()
        assert looked_up > before
        assert live_label(reader) == "versicolor"
        assert catalog_scans() == looked_up
