"""Training cannot hurt the server: it stops promptly on cancel and on
terminate, leaves nothing behind, cannot land in another role's project,
and its errors carry no Rust backtrace even when the server's environment
asks for one."""

import pathlib
import threading
import time

import psycopg
import pytest

from conftest import ROOT, connect

PGDATA = ROOT / "target" / "ambient-cluster"


def noisy_table(conn, rows):
    conn.execute("SELECT setseed(0.3)")
    conn.execute(f"""
        CREATE TABLE noisy AS
        SELECT g AS id, random() AS a, random() AS b, random() AS c, random() AS d, random() AS e
          FROM generate_series(1, {rows}) AS g""")
    conn.execute("ALTER TABLE noisy ADD PRIMARY KEY (id)")
    # 15 % of the labels flipped: an unbounded tree grows until it fits them all.
    conn.execute("ALTER TABLE noisy ADD COLUMN label int")
    conn.execute("UPDATE noisy SET label = (CASE WHEN a + b * c > 0.9 THEN 1 ELSE 0 END) # (random() < 0.15)::int")


def train_in_background(database, sql):
    """Starts `sql` on its own connection; returns the backend pid, the
    thread and a dict that gets the error and the moment it arrived."""
    conn = connect(database, autocommit=True)
    pid = conn.info.backend_pid
    outcome = {}

    def run():
        try:
            conn.execute(sql)
            outcome["finished"] = time.monotonic()
        except psycopg.Error as error:
            outcome["error"] = error
            outcome["failed"] = time.monotonic()
        finally:
            try:
                conn.close()
            except psycopg.Error:
                pass

    thread = threading.Thread(target=run)
    thread.start()
    return pid, thread, outcome


def wait_until_training(admin, pid, seconds):
    """Waits until the backend has run its statement for `seconds`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = admin.execute(
            "SELECT now() - query_start > make_interval(secs => %s) FROM pg_stat_activity"
            " WHERE pid = %s AND state = 'active'", [seconds, pid]).fetchone()
        if running and running[0]:
            return
        time.sleep(0.05)
    raise AssertionError("training never got going")


@pytest.mark.parametrize("signal", ["pg_cancel_backend", "pg_terminate_backend"])
def test_cancel_and_terminate_stop_training_within_a_second(database, signal):
    with connect(database, autocommit=True) as admin:
        noisy_table(admin, 600_000)
        pid, thread, outcome = train_in_background(
            database, "SELECT * FROM ambient.train('slow', relation => 'noisy', target => 'label', algorithm => 'decision_tree')")
        # Past reading the rows: well into sorting and growing the tree.
        wait_until_training(admin, pid, 1.5)
        signalled = time.monotonic()
        assert admin.execute(f"SELECT {signal}(%s)", [pid]).fetchone()[0]
        thread.join(timeout=30)
        assert "finished" not in outcome, "training ended before it was signalled; use more rows"
        stopped_after = outcome["failed"] - signalled
        assert stopped_after < 1.0, f"training stopped {stopped_after:.2f} s after {signal}"
        if signal == "pg_cancel_backend":
            assert outcome["error"].sqlstate == "57014"
        # The postmaster did not reset: this older session still works.
        assert admin.execute("SELECT 1").fetchone()[0] == 1
        assert admin.execute("SELECT count(*) FROM ambient.overview WHERE project = 'slow'").fetchone()[0] == 0


def test_first_train_race_cannot_land_in_another_roles_project(database):
    """While alice's first train of a project reads and fits, bob creates the
    project. Alice's model must not go into bob's project."""
    with connect(database, autocommit=True) as admin:
        for role in ("ambient_it_alice", "ambient_it_bob"):
            # Roles are cluster-wide; a run that died left them without
            # grants (its database was dropped with them).
            admin.execute(f"DROP ROLE IF EXISTS {role}")
            admin.execute(f"CREATE ROLE {role}")
            admin.execute(f"GRANT SELECT ON iris TO {role}")
        try:
            pid, thread, outcome = train_in_background(database, """
                SET ROLE ambient_it_alice;
                SELECT * FROM ambient.train('raced', target => 'species',
                    query => 'SELECT sepal_length, petal_length, species FROM iris, (SELECT pg_sleep(2)) AS pause', algorithm => 'decision_tree')""")
            wait_until_training(admin, pid, 0.2)
            admin.execute("SET ROLE ambient_it_bob")
            admin.execute("SELECT * FROM ambient.train('raced', relation => 'iris', target => 'species', algorithm => 'decision_tree')")
            admin.execute("RESET ROLE")
            thread.join(timeout=30)
            assert "error" in outcome, "alice's model went into bob's project"
            assert outcome["error"].sqlstate == "42710"  # the name is taken; alice may not see bob's project
            owner, models = admin.execute(
                "SELECT p.owner::text, (SELECT count(*) FROM ambient.model_store m WHERE m.project_id = p.id)"
                "  FROM ambient.projects p WHERE p.name = 'raced'").fetchone()
            assert (owner, models) == ("ambient_it_bob", 1)
        finally:
            admin.execute("RESET ROLE")
            admin.execute("SELECT ambient.drop_project('raced', force => true) FROM ambient.projects WHERE name = 'raced'")
            for role in ("ambient_it_alice", "ambient_it_bob"):
                admin.execute(f"DROP OWNED BY {role}")
                admin.execute(f"DROP ROLE {role}")


def test_errors_carry_no_rust_backtrace_when_the_server_asks_for_one(database):
    pid = (PGDATA / "postmaster.pid").read_text().split()[0]
    environment = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"RUST_BACKTRACE=1" in environment, "scripts/cluster.sh must start the server with RUST_BACKTRACE=1"
    with connect(database, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS ambient_it_nobody")
        conn.execute("CREATE ROLE ambient_it_nobody")
        try:
            conn.execute("SET ROLE ambient_it_nobody")
            # A Postgres error raised inside SPI (no SELECT on iris) ...
            with pytest.raises(psycopg.Error) as spi_error:
                conn.execute("SELECT * FROM ambient.train('bt', relation => 'iris', target => 'species', algorithm => 'decision_tree')")
            # ... and one of ours.
            with pytest.raises(psycopg.Error) as own_error:
                conn.execute("SELECT ambient.predict('no such project', ARRAY[1.0])")
            conn.execute("RESET ROLE")
        finally:
            conn.execute("RESET ROLE")
            conn.execute("DROP ROLE ambient_it_nobody")
    assert spi_error.value.sqlstate == "42501"
    assert own_error.value.sqlstate == "42704"
    for error in (spi_error.value, own_error.value):
        assert error.diag.message_detail is None, error.diag.message_detail
