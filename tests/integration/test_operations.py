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


def test_a_pg_cron_job_retrains_and_deploys_as_the_project_owner_whoever_schedules_it():
    """pg_cron runs in cron.database_name ('postgres' in the private
    cluster) and runs a job as the role that scheduled it. A superuser
    schedules a role's policy: the job still runs as the project's owner,
    and the owner's stored query, whose function tries to make its owner a
    superuser with the rights it runs with, gets none of the superuser's."""
    role = "ambient_cron_owner"
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        admin.execute("DROP EXTENSION IF EXISTS pg_ambient CASCADE")
        admin.execute("CREATE EXTENSION pg_ambient")
        admin.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'ambient policy %'")
        admin.execute("DROP TABLE IF EXISTS cron_history, cron_ran_as")
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT USAGE ON SCHEMA cron TO {role}")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
        admin.execute("CREATE TABLE cron_ran_as (who name)")
        admin.execute(f"GRANT INSERT ON cron_ran_as TO {role}")
    try:
        with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"SET ROLE {role}")
            conn.execute("SET ambient.progress = off")
            conn.execute(f"""CREATE FUNCTION public.cron_pwn() RETURNS boolean LANGUAGE plpgsql AS $$
                             BEGIN
                                 INSERT INTO public.cron_ran_as VALUES (current_user);
                                 BEGIN
                                     EXECUTE 'ALTER ROLE {role} SUPERUSER';
                                 EXCEPTION WHEN OTHERS THEN NULL;
                                 END;
                                 RETURN true;
                             END $$""")
            # At first the label has nothing to do with x ...
            conn.execute("""CREATE TABLE cron_history AS
                            SELECT g AS id, (g % 10)::float8 AS x, (g % 3 = 0) AS big
                              FROM generate_series(1, 200) g""")
            conn.execute("ALTER TABLE cron_history ADD PRIMARY KEY (id)")
            conn.execute("SELECT * FROM ambient.train('cron', query => 'SELECT x, big FROM public.cron_history "
                         "WHERE public.cron_pwn()', target => 'big', "
                         "algorithm => 'decision_tree', hyperparams => '{\"max_depth\": 1}')")
            # ... then 400 labelled rows arrive where it does; the policy
            # retrains once 20 have, and the new model wins on its test rows.
            conn.execute("INSERT INTO cron_history SELECT g, (g % 10)::float8, (g % 10 >= 5) FROM generate_series(201, 600) g")
            conn.execute("SELECT ambient.set_policy('cron', '{\"action\": \"retrain_and_deploy_if_better\", "
                         "\"retrain_after_changed_rows\": 20}')")
        with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
            admin.execute("TRUNCATE cron_ran_as")
            job = admin.execute("SELECT ambient.schedule('cron', '* * * * *')").fetchone()[0]
            assert job > 0
            # The job is the owner's, as pg_cron and project_policies show.
            assert admin.execute("SELECT username FROM cron.job WHERE jobid = %s", [job]).fetchone()[0] == role
            assert admin.execute("SELECT job_id, run_as, schedule, active FROM ambient.project_policies "
                                 "WHERE project = 'cron'").fetchone() == (job, role, "* * * * *", True)
            deadline = time.monotonic() + 130
            run = None
            while time.monotonic() < deadline and run is None:
                time.sleep(2)
                run = admin.execute(
                    "SELECT status, action, run_by FROM ambient.policy_runs WHERE project = 'cron'").fetchone()
            assert run is not None, "the pg_cron job did not run within two minutes"
            assert run == ("acted", "retrain_and_deploy_if_better", role), run
            live = admin.execute("SELECT live_version FROM ambient.overview WHERE project = 'cron'").fetchone()[0]
            assert live == 2, live
            assert {r[0] for r in admin.execute("SELECT DISTINCT who FROM cron_ran_as")} == {role}
            assert admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role]).fetchone()[0] is False
        with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"SET ROLE {role}")
            conn.execute("SELECT ambient.unschedule('cron')")
            assert conn.execute("SELECT count(*) FROM cron.job WHERE jobid = %s", [job]).fetchone()[0] == 0
            with pytest.raises(psycopg.errors.UndefinedObject):
                conn.execute("SELECT ambient.unschedule('cron')")
    finally:
        with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
            admin.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'ambient policy %'")
            admin.execute("DROP EXTENSION IF EXISTS pg_ambient CASCADE")
            admin.execute("DROP TABLE IF EXISTS cron_history, cron_ran_as")
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def test_co_owners_share_one_job_and_drop_project_unschedules_it():
    """Whoever of a project's owners schedules it, the project has one job,
    run as the owner; another co-owner may unschedule it; dropping the
    project removes its job."""
    owner, carol, dave = "ambient_cron_team", "ambient_cron_carol", "ambient_cron_dave"
    jobs = "SELECT jobid, username FROM cron.job WHERE jobname = 'ambient policy shared'"
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        admin.execute("DROP EXTENSION IF EXISTS pg_ambient CASCADE")
        admin.execute("CREATE EXTENSION pg_ambient")
        for role in (carol, dave, owner):
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {owner} LOGIN")
        admin.execute(f"CREATE ROLE {carol} LOGIN IN ROLE {owner}")
        admin.execute(f"CREATE ROLE {dave} LOGIN IN ROLE {owner}")
        admin.execute(f"GRANT USAGE ON SCHEMA cron TO {owner}")
    try:
        def as_role(role):
            conn = psycopg.connect(dsn("postgres"), autocommit=True)
            conn.execute(f"SET ROLE {role}")
            conn.execute("SET ambient.progress = off")
            return conn
        with as_role(owner) as conn:
            conn.execute("SELECT * FROM ambient.train('shared', query => 'SELECT g::float8 AS x, g % 2 = 0 AS even "
                         "FROM generate_series(1, 50) g', target => 'even', algorithm => 'decision_tree')")
            conn.execute("SELECT ambient.set_policy('shared', '{}')")
        with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
            with as_role(carol) as conn:
                first = conn.execute("SELECT ambient.schedule('shared', '0 3 * * *')").fetchone()[0]
            assert admin.execute(jobs).fetchall() == [(first, owner)]
            with as_role(dave) as conn:
                second = conn.execute("SELECT ambient.schedule('shared', '0 4 * * *')").fetchone()[0]
                assert conn.execute("SELECT job_id, run_as, schedule FROM ambient.project_policies "
                                    "WHERE project = 'shared'").fetchone() == (second, owner, "0 4 * * *")
            assert admin.execute(jobs).fetchall() == [(second, owner)]
            with as_role(carol) as conn:
                conn.execute("SELECT ambient.unschedule('shared')")
            assert admin.execute(jobs).fetchall() == []
            with as_role(dave) as conn:
                conn.execute("SELECT ambient.schedule('shared', '0 5 * * *')")
            assert len(admin.execute(jobs).fetchall()) == 1
            with as_role(carol) as conn:
                conn.execute("SELECT ambient.drop_project('shared', force => true)")
            assert admin.execute(jobs).fetchall() == []
    finally:
        with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
            admin.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'ambient policy %'")
            admin.execute("DROP EXTENSION IF EXISTS pg_ambient CASCADE")
            for role in (carol, dave, owner):
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
            # A project of a role that cannot log in: pg_cron could never
            # connect as it to run the job.
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'ambient_cron_nologin'").fetchone():
                conn.execute("DROP OWNED BY ambient_cron_nologin")
                conn.execute("DROP ROLE ambient_cron_nologin")
            conn.execute("CREATE ROLE ambient_cron_nologin NOLOGIN")
            conn.execute("GRANT USAGE ON SCHEMA cron TO ambient_cron_nologin")
            conn.execute("SET ROLE ambient_cron_nologin")
            conn.execute("SET ambient.progress = off")
            conn.execute("SELECT * FROM ambient.train('cronghost', query => 'SELECT g::float8 AS x, g % 2 = 0 AS even "
                         "FROM generate_series(1, 50) g', target => 'even', algorithm => 'decision_tree')")
            conn.execute("SELECT ambient.set_policy('cronghost', '{}')")
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as refused:
                conn.execute("SELECT ambient.schedule('cronghost', '0 3 * * *')")
            assert "cannot log in" in str(refused.value)
            conn.execute("RESET ROLE")
        finally:
            conn.execute("RESET ROLE")
            conn.execute("DROP EXTENSION IF EXISTS pg_ambient CASCADE")
            conn.execute("REVOKE USAGE ON SCHEMA cron FROM ambient_cron_nologin")
            conn.execute("DROP ROLE IF EXISTS ambient_cron_nologin")
