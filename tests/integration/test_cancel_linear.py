"""Every linear learner stops within a second of a cancel or of its
statement_timeout, however many iterations it was allowed: with tolerance 0
and a million iterations on 300,000 rows, alone and inside a search, whose
threads must drop a fit in the middle (successive halving cross-validates
them on 10,000 of the rows, which endless settings keep busy). (0.2.0's
linfa fits ignored both: only kill -9 stopped them, resetting every
connection.)"""

import time

import psycopg
import pytest

from conftest import connect, fresh_database
from test_safety import train_in_background, wait_until_training

ENDLESS = {
    "ridge": '{"max_iterations": 1000000, "tolerance": 0}',
    "lasso": '{"max_iterations": 1000000, "tolerance": 0}',
    "elastic_net": '{"max_iterations": 1000000, "tolerance": 0}',
    "logistic_regression": '{"max_iterations": 100000, "gradient_tolerance": 1e-300}',
}


@pytest.fixture(scope="module")
def wide_rows():
    """300,000 rows, 10 noisy features, a numeric and a class label."""
    database = fresh_database("it_cancel_linear")
    with connect(database, autocommit=True) as conn:
        conn.execute("SELECT setseed(0.5)")
        columns = ", ".join(f"random() AS f{i}" for i in range(10))
        conn.execute(f"CREATE TABLE wide AS SELECT g AS id, {columns} FROM generate_series(1, 300000) g")
        conn.execute("ALTER TABLE wide ADD PRIMARY KEY (id)")
        conn.execute("ALTER TABLE wide ADD COLUMN y float8, ADD COLUMN k text")
        conn.execute("UPDATE wide SET y = f0 * 3 - f1 + f2 * f3 + random(),"
                     " k = CASE WHEN f0 + f1 + random() > 1.8 THEN 'a' WHEN f2 > 0.5 THEN 'b' ELSE 'c' END")
    return database


def train_sql(algorithm):
    target = "k" if algorithm == "logistic_regression" else "y"
    if algorithm.startswith("search_"):
        learner = algorithm.removeprefix("search_")
        target = "k" if learner == "logistic_regression" else "y"
        return (f"SELECT * FROM ambient.train('{algorithm}', relation => 'wide', target => '{target}',"
                f" algorithm => '{learner}', hyperparams => '{ENDLESS[learner]}',"
                " search => 'grid', search_params => '{\"alpha\": [0.5, 1.0]}')")
    params = ENDLESS.get(algorithm, "{}")
    return (f"SELECT * FROM ambient.train('{algorithm}', relation => 'wide', target => '{target}',"
            f" algorithm => '{algorithm}', hyperparams => '{params}')")


ALGORITHMS = ["linear_regression", "ridge", "lasso", "elastic_net", "logistic_regression",
              "search_ridge", "search_logistic_regression"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_pg_cancel_backend_stops_the_fit_within_a_second(wide_rows, algorithm):
    with connect(wide_rows, autocommit=True) as admin:
        pid, thread, outcome = train_in_background(
            wide_rows, "SET ambient.progress = off; " + train_sql(algorithm))
        if algorithm == "linear_regression":
            # Least squares is one pass over the rows (0.05 s here): it may
            # be done before any cancel can come. Unit tests count its
            # checks per block of rows.
            thread.join(timeout=60)
            if "finished" in outcome:
                return
        wait_until_training(admin, pid, 3.0)
        signalled = time.monotonic()
        admin.execute("SELECT pg_cancel_backend(%s)", [pid])
        thread.join(timeout=60)
        assert not thread.is_alive(), "the fit ignored the cancel for a minute"
        assert isinstance(outcome.get("error"), psycopg.errors.QueryCanceled), outcome
        assert outcome["failed"] - signalled < 1.0, outcome["failed"] - signalled


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_statement_timeout_stops_the_fit_within_a_second(wide_rows, algorithm):
    with connect(wide_rows, autocommit=True) as conn:
        conn.execute("SET ambient.progress = off")
        conn.execute("SET statement_timeout = '4s'")
        started = time.monotonic()
        try:
            conn.execute(train_sql(algorithm))
            ended, error = time.monotonic(), None
        except psycopg.Error as e:
            ended, error = time.monotonic(), e
        if error is None:
            assert algorithm == "linear_regression", f"{algorithm} finished within 4 s: use more rows"
            return
        assert isinstance(error, psycopg.errors.QueryCanceled), error
        assert ended - started < 5.0, ended - started
