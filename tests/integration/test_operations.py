"""Ambient operations from real clients: inserts racing deploys, labels
arriving late, drift that must (and must not) alert a listening connection,
a pg_cron job that retrains and deploys on its own, rollback_if_worse after
a bad deploy, and canary routing fractions."""

import math
import threading
import time

import psycopg
import pytest

from conftest import connect, dsn, psql

FEATURES = "sepal_length, sepal_width, petal_length, petal_width"


def attached_iris(conn, project="ops", depth=1):
    """Trains `project` on Iris and attaches it to a new table `flowers`."""
    conn.execute("SET ambient.progress = off")
    conn.execute(
        f"SELECT * FROM ambient.train('{project}', relation => 'iris', target => 'species', "
        f"algorithm => 'decision_tree', hyperparams => '{{\"max_depth\": {depth}}}')")
    conn.execute(f"""CREATE TABLE flowers (id bigint PRIMARY KEY, {FEATURES.replace(',', ' float8,')} float8,
                     species text, arrived_at timestamptz NOT NULL DEFAULT now())""")
    conn.execute(f"SELECT * FROM ambient.attach('{project}', 'flowers')")


def insert_iris(conn, first_id, copies=1, shift=0.0, labelled=False):
    label = ", species" if labelled else ""
    conn.execute(f"""
        INSERT INTO flowers (id, {FEATURES}{label})
        SELECT {first_id} + (c - 1) * 150 + i.id, sepal_length + {shift}, sepal_width,
               petal_length * (1 + {shift} / 2), petal_width{label}
          FROM iris i, generate_series(1, {copies}) c""")


def test_inserts_racing_deploys_carry_the_model_that_predicted_them(database):
    with connect(database, autocommit=True) as admin:
        attached_iris(admin, depth=1)
        deep = admin.execute(
            "SELECT model_id FROM ambient.train('ops', relation => 'iris', algorithm => 'decision_tree', "
            "hyperparams => '{\"max_depth\": 3}', deploy => 'never')").fetchone()[0]
        shallow = admin.execute("SELECT live_model_id FROM ambient.overview WHERE project = 'ops'").fetchone()[0]
    stop = threading.Event()
    errors = []

    def writer(offset):
        try:
            with connect(database, autocommit=True) as conn:
                n = 0
                while not stop.is_set():
                    # Multi-row inserts, each its own transaction.
                    insert_iris(conn, offset + n * 150)
                    n += 1
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    writers = [threading.Thread(target=writer, args=(k * 10_000_000,)) for k in range(2)]
    for w in writers:
        w.start()
    with connect(database, autocommit=True) as deployer:
        for _ in range(6):
            time.sleep(0.15)
            deployer.execute("SELECT ambient.deploy('ops', %s)", [deep])
            time.sleep(0.15)
            deployer.execute("SELECT ambient.rollback('ops')")
    stop.set()
    for w in writers:
        w.join()
    assert not errors, errors
    with connect(database) as conn:
        rows, by_model = conn.execute(
            "SELECT count(*), count(DISTINCT prediction_model_id) FROM flowers").fetchone()
        assert rows > 300 and by_model == 2, (rows, by_model)
        # Each row's prediction is what its recorded model says for it.
        wrong = conn.execute(f"""
            SELECT count(*) FROM flowers
             WHERE prediction_model_id IS NULL
                OR prediction IS DISTINCT FROM
                   ambient.predict_label(prediction_model_id, ARRAY[{FEATURES}])""").fetchone()[0]
        assert wrong == 0
        assert {m for (m,) in conn.execute("SELECT DISTINCT prediction_model_id FROM flowers")} == {deep, shallow}


def test_labels_arriving_late_are_counted_once_with_their_latest_value(database):
    with connect(database, autocommit=True) as conn:
        attached_iris(conn, depth=3)
        insert_iris(conn, 0)
        assert conn.execute("SELECT count(*) FROM ambient.monitor('ops')").fetchone()[0] == 0
    # Another session labels half the rows, later, in two transactions.
    with connect(database) as labeller:
        labeller.execute("UPDATE flowers f SET species = i.species FROM iris i WHERE i.id = f.id AND f.id <= 40")
        labeller.commit()
        labeller.execute("UPDATE flowers f SET species = i.species FROM iris i WHERE i.id = f.id AND f.id BETWEEN 41 AND 75")
        # Not committed yet: the run does not see it.
        with connect(database, autocommit=True) as watcher:
            assert watcher.execute("SELECT labelled_rows FROM ambient.monitor('ops')").fetchone()[0] == 40
        labeller.commit()
    with connect(database, autocommit=True) as conn:
        rows, accuracy = conn.execute(
            "SELECT labelled_rows, (metrics->>'accuracy')::float8 FROM ambient.monitor('ops')").fetchone()
        assert rows == 75
        truth = conn.execute(
            "SELECT avg((prediction = species)::int)::float8 FROM flowers WHERE species IS NOT NULL").fetchone()[0]
        assert accuracy == pytest.approx(truth)
        # A label corrected twice still counts once, with its last value.
        conn.execute("UPDATE flowers SET species = 'virginica' WHERE id = 1")
        conn.execute("UPDATE flowers SET species = 'versicolor' WHERE id = 1")
        rows, accuracy = conn.execute(
            "SELECT labelled_rows, (metrics->>'accuracy')::float8 FROM ambient.monitor('ops')").fetchone()
        truth = conn.execute(
            "SELECT avg((prediction = species)::int)::float8 FROM flowers WHERE species IS NOT NULL").fetchone()[0]
        assert rows == 75 and accuracy == pytest.approx(truth)


def notifications(listener, seconds):
    """The ambient_alerts payloads `listener` receives within `seconds`."""
    got = []
    for note in listener.notifies(timeout=seconds, stop_after=1):
        got.append(note.payload)
    return got


@pytest.mark.parametrize("drifts", [False, True])
def test_drift_alerts_a_listening_connection_only_when_it_drifts(database, drifts):
    with connect(database, autocommit=True) as conn:
        attached_iris(conn, depth=3)
        conn.execute("SELECT ambient.set_policy('ops', '{\"action\": \"alert\"}')")
        insert_iris(conn, 0, copies=3, shift=2.0 if drifts else 0.0)
    with connect(database, autocommit=True) as listener, connect(database, autocommit=True) as runner:
        listener.execute("LISTEN ambient_alerts")
        status = runner.execute("SELECT status FROM ambient.run_policy('ops')").fetchone()[0]
        received = notifications(listener, 2)
    if drifts:
        assert status == "acted"
        assert len(received) == 1 and '"kind":"policy"' in received[0] and "drifted" in received[0], received
    else:
        assert status == "nothing to do"
        assert received == []


def test_rollback_if_worse_after_a_bad_deploy(database):
    with connect(database, autocommit=True) as conn:
        attached_iris(conn, depth=3)
        good = conn.execute("SELECT live_model_id FROM ambient.overview WHERE project = 'ops'").fetchone()[0]
        conn.execute("SELECT ambient.set_policy('ops', '{\"action\": \"rollback_if_worse\", \"max_drift\": 1}')")
        conn.execute("SELECT * FROM ambient.train('ops', relation => 'iris', algorithm => 'decision_tree', "
                     "hyperparams => '{\"max_depth\": 1}', deploy => 'always')")
        insert_iris(conn, 0, copies=2, labelled=True)
        status, action = conn.execute("SELECT status, action FROM ambient.run_policy('ops')").fetchone()
        assert (status, action) == ("acted", "rollback_if_worse")
        assert conn.execute("SELECT live_model_id FROM ambient.overview WHERE project = 'ops'").fetchone()[0] == good


def test_canary_serves_its_share_of_keys(database):
    share = 0.3
    with connect(database, autocommit=True) as conn:
        attached_iris(conn, depth=1)
        challenger = conn.execute(
            "SELECT model_id FROM ambient.train('ops', relation => 'iris', algorithm => 'decision_tree', "
            "hyperparams => '{\"max_depth\": 3}', deploy => 'never')").fetchone()[0]
        conn.execute("SELECT ambient.deploy('ops', %s, traffic => %s)", [challenger, share])
        insert_iris(conn, 0, copies=100)
        n, served = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE prediction_model_id = %s) FROM flowers", [challenger]).fetchone()
    # Within four binomial standard deviations.
    assert abs(served / n - share) < 4 * math.sqrt(share * (1 - share) / n), (served, n)


def test_a_pg_cron_job_retrains_and_deploys_as_the_role_that_scheduled_it():
    """pg_cron runs in cron.database_name ('postgres' in the private
    cluster); a job scheduled by a non-superuser runs as that role."""
    role = "ambient_cron_owner"
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        admin.execute("DROP EXTENSION IF EXISTS pg_ambient CASCADE")
        admin.execute("CREATE EXTENSION pg_ambient")
        admin.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'ambient policy %'")
        admin.execute("DROP TABLE IF EXISTS cron_history")
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT USAGE ON SCHEMA cron TO {role}")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    try:
        with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"SET ROLE {role}")
            conn.execute("SET ambient.progress = off")
            # At first the label has nothing to do with x ...
            conn.execute("""CREATE TABLE cron_history AS
                            SELECT g AS id, (g % 10)::float8 AS x, (g % 3 = 0) AS big
                              FROM generate_series(1, 200) g""")
            conn.execute("ALTER TABLE cron_history ADD PRIMARY KEY (id)")
            conn.execute("SELECT * FROM ambient.train('cron', relation => 'cron_history', target => 'big', "
                         "algorithm => 'decision_tree', hyperparams => '{\"max_depth\": 1}')")
            # ... then 400 labelled rows arrive where it does; the policy
            # retrains once 20 have, and the new model wins on its test rows.
            conn.execute("INSERT INTO cron_history SELECT g, (g % 10)::float8, (g % 10 >= 5) FROM generate_series(201, 600) g")
            conn.execute("SELECT ambient.set_policy('cron', '{\"action\": \"retrain_and_deploy_if_better\", "
                         "\"retrain_after_changed_rows\": 20}')")
            job = conn.execute("SELECT ambient.schedule('cron', '* * * * *')").fetchone()[0]
            assert job > 0
            deadline = time.monotonic() + 130
            run = None
            while time.monotonic() < deadline and run is None:
                time.sleep(2)
                run = conn.execute(
                    "SELECT status, action, run_by FROM ambient.policy_runs WHERE project = 'cron'").fetchone()
            assert run is not None, "the pg_cron job did not run within two minutes"
            assert run == ("acted", "retrain_and_deploy_if_better", role), run
            live = conn.execute("SELECT live_version FROM ambient.overview WHERE project = 'cron'").fetchone()[0]
            assert live == 2, live
            conn.execute("SELECT ambient.unschedule('cron')")
            with pytest.raises(psycopg.errors.UndefinedObject):
                conn.execute("SELECT ambient.unschedule('cron')")
    finally:
        with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
            admin.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'ambient policy %'")
            admin.execute("DROP EXTENSION IF EXISTS pg_ambient CASCADE")
            admin.execute("DROP TABLE IF EXISTS cron_history")
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def test_schedule_refuses_what_pg_cron_refuses():
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        conn.execute("DROP EXTENSION IF EXISTS pg_ambient CASCADE")
        conn.execute("CREATE EXTENSION pg_ambient")
        try:
            psql("postgres", "SET ambient.progress = off; SELECT * FROM ambient.train('cronbad', query => "
                 "'SELECT g::float8 AS x, g % 2 = 0 AS even FROM generate_series(1, 50) g', target => 'even', "
                 "algorithm => 'decision_tree')", "-q")
            conn.execute("SELECT ambient.set_policy('cronbad', '{}')")
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("SELECT ambient.schedule('cronbad', 'every tuesday')")
            assert "invalid schedule" in str(refused.value)
        finally:
            conn.execute("DROP EXTENSION IF EXISTS pg_ambient CASCADE")
