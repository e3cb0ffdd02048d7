"""Crashes leave nothing half-written: on a private copy of the test
cluster, a backend is killed with SIGKILL mid-training, mid-INSERT into an
attached table and mid-policy-run, and the server is stopped in immediate
mode mid-deploy. After crash recovery the catalog is consistent: no partial
model, the live model is the one committed before, and no log or audit
entry of what did not commit."""

import os
import signal
import threading
import time

import psycopg

from conftest import pg_ctl, PRIVATE_DIR, psql


def wait_until_up(conninfo, killed=None, timeout=60):
    """Waits until the server takes connections; after a backend `killed`
    with SIGKILL, until crash recovery is over: the dead backend's entry
    stays in pg_stat_activity until the postmaster resets shared memory, so
    a connection that still sees it came before the restart (and would be
    cut by it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=2) as conn:
                if killed is None or not conn.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE pid = %s", [killed]).fetchone():
                    return
        except psycopg.OperationalError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not come back")


def run_and_kill(conninfo, statement, when_active_for=1.0, setup=None):
    """Runs `statement` in a session and SIGKILLs its backend once it has
    run for `when_active_for` seconds; returns after crash recovery."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        if setup:
            conn.execute(setup)
        failure = []

        def run():
            try:
                conn.execute(statement)
            except psycopg.Error as e:
                failure.append(e)

        worker = threading.Thread(target=run)
        worker.start()
        with psycopg.connect(conninfo, autocommit=True) as watcher:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                state = watcher.execute("SELECT state, now() - query_start > %s * interval '1 second' "
                                        "FROM pg_stat_activity WHERE pid = %s", [when_active_for, pid]).fetchone()
                if state and state[0] == "active" and state[1]:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the statement never ran long enough to be killed")
        os.kill(pid, signal.SIGKILL)
        worker.join(60)
        assert failure, "the killed statement reported success"
    wait_until_up(conninfo, killed=pid)


def state(conninfo):
    """What must hold whatever crashed: the catalog as committed."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        entries, valid, problem = conn.execute(
            "SELECT entries, valid, problem FROM ambient.verify_audit()").fetchone()
        assert valid, problem
        # Every model has its snapshot; every train entry names a model that
        # exists and every model has its train entry: one commit made both.
        assert conn.execute("SELECT count(*) FROM ambient.model_store m "
                            "LEFT JOIN ambient.snapshots s ON s.id = m.snapshot_id WHERE s.id IS NULL").fetchone()[0] == 0
        models = {r[0] for r in conn.execute("SELECT id FROM ambient.model_store")}
        trained = {r[0] for r in conn.execute("SELECT model_id FROM ambient.audit_log WHERE action = 'train'")}
        assert models == trained, (models, trained)
        deployments = {r[0] for r in conn.execute("SELECT id FROM ambient.deployment_log")}
        audited = {int(r[0]) for r in conn.execute(
            "SELECT details ->> 'deployment_id' FROM ambient.audit_log WHERE action IN ('deploy', 'rollback')")}
        assert deployments == audited, (deployments, audited)
        runs = conn.execute("SELECT count(*) FROM ambient.policy_log WHERE status <> 'nothing to do'").fetchone()[0]
        assert runs == conn.execute("SELECT count(*) FROM ambient.audit_log WHERE action = 'run policy'").fetchone()[0]
        return {
            "entries": entries,
            "models": sorted(models),
            "live": conn.execute("SELECT project, live_model_id FROM ambient.overview ORDER BY 1").fetchall(),
            "policy_runs": conn.execute("SELECT count(*) FROM ambient.policy_log").fetchone()[0],
        }


def test_crashes_leave_the_catalog_as_committed(database, private_cluster):
    psql(database, """
        SET ambient.progress = off;
        CREATE TABLE big AS
        SELECT g AS id, random() AS a, random() AS b, random() AS c, (random() < 0.3) AS y
          FROM generate_series(1, 300000) g;
        ALTER TABLE big ADD PRIMARY KEY (id);
        SELECT version FROM ambient.train('crash', relation => 'big', target => 'y',
                                          algorithm => 'decision_tree', hyperparams => '{"max_depth": 3}');
        SELECT version FROM ambient.train('crash', relation => 'big', algorithm => 'decision_tree',
                                          hyperparams => '{"max_depth": 2}', deploy => 'never');
        CREATE TABLE incoming (id int PRIMARY KEY, a float8, b float8, c float8);
        SELECT prediction_column FROM ambient.attach('crash', 'incoming');
        INSERT INTO incoming SELECT g, random(), random(), random() FROM generate_series(1, 100) g;
        SELECT ambient.set_policy('crash', '{"action": "retrain", "retrain_after_changed_rows": 1}') ->> 'action';
        INSERT INTO big SELECT g, random(), random(), random(), random() < 0.3 FROM generate_series(300001, 300100) g;
    """, "-q")
    private = private_cluster()
    before = state(private)

    # 1. Mid-training: a forest on 300,000 rows.
    run_and_kill(private, "SELECT * FROM ambient.train('crash', relation => 'big', algorithm => 'random_forest', "
                          "hyperparams => '{\"n_estimators\": 200}', deploy => 'always')",
                 setup="SET ambient.progress = off")
    assert state(private) == before

    # 2. Mid-INSERT into the attached table: a million rows, each predicted.
    run_and_kill(private, "INSERT INTO incoming SELECT g, random(), random(), random() "
                          "FROM generate_series(1000, 2000000) g")
    assert state(private) == before
    with psycopg.connect(private, autocommit=True) as conn:
        assert conn.execute("SELECT count(*), count(prediction) FROM incoming").fetchone() == (100, 100)

    # 3. Mid-policy-run: the policy retrains a forest.
    with psycopg.connect(private, autocommit=True) as conn:
        conn.execute("""SELECT ambient.set_policy('crash', '{"action": "retrain", "retrain_after_changed_rows": 1}')""")
        conn.execute("SELECT ambient.train('crash', relation => 'big', algorithm => 'random_forest', "
                     "hyperparams => '{\"n_estimators\": 1, \"max_depth\": 2}', deploy => 'always')")
        conn.execute("INSERT INTO big SELECT g, random(), random(), random(), random() < 0.3 "
                     "FROM generate_series(400001, 400100) g")
        # The live model is now a forest: its retrain is as slow as we make it.
        conn.execute("UPDATE ambient.model_store SET request = jsonb_set(request, '{hyperparams}', "
                     "'{\"n_estimators\": 300}') WHERE id = (SELECT live_model_id FROM ambient.overview "
                     "WHERE project = 'crash')")
    before = state(private)
    run_and_kill(private, "SELECT * FROM ambient.run_policy('crash')", setup="SET ambient.progress = off")
    after = state(private)
    assert after == before

    # 4. An immediate stop mid-deploy: one deploy committed, one open.
    with psycopg.connect(private, autocommit=True) as conn:
        models = after["models"]
        conn.execute("SELECT ambient.deploy('crash', %s, reason => 'committed')", [models[1]])
        committed = state(private)
        open_deploy = psycopg.connect(private)
        open_deploy.execute("SELECT ambient.deploy('crash', %s, reason => 'never committed')", [models[0]])
    pg_ctl("-m", "immediate", "stop")
    open_deploy.close()
    pg_ctl("-l", str(PRIVATE_DIR / "server.log"), "-w", "start")
    wait_until_up(private)
    assert state(private) == committed
    with psycopg.connect(private, autocommit=True) as conn:
        assert conn.execute("SELECT live_model_id FROM ambient.overview WHERE project = 'crash'").fetchone()[0] == models[1]
        assert conn.execute("SELECT count(*) FROM ambient.deployments WHERE reason = 'never committed'").fetchone()[0] == 0
