"""Deploys and rollbacks under load. pgbench clients predict with a project
(or insert into a table attached to it) while one more session deploys a
model and rolls it back, each once a second, and also deploys a third
model in transactions it rolls back. Every answer must come from a
committed model: a predict whose value is not the answer of model A or
model B divides by zero, which pgbench counts as a failure, and every row
inserted must carry A's or B's id and answer, never C's. Used by `make
bench` (60 s) and by tests/integration/test_load.py (10 s)."""

import re
import subprocess
import threading
import time

import psycopg

POINT = "ARRAY[0.25, 0.75]::float8[]"


def setup(dsn):
    """Project 'churn' with three regression models that answer POINT
    differently: A (live), B and C. Returns their ids and answers."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The attached table first, then the project, then its source
        # (which the source guard keeps while a live model reads it).
        conn.execute("DROP TABLE IF EXISTS churn_in")
        conn.execute("SELECT ambient.drop_project('churn', force => true) "
                     "FROM ambient.overview WHERE project = 'churn'")
        conn.execute("DROP TABLE IF EXISTS churn_rows")
        conn.execute("""CREATE TABLE churn_rows AS
                        SELECT g AS id, (g % 97) / 97.0 AS x1, (g % 89) / 89.0 AS x2,
                               (g % 97) / 97.0 * 3 + (g % 89) / 89.0 AS y
                          FROM generate_series(1, 2000) g""")
        conn.execute("ALTER TABLE churn_rows ADD PRIMARY KEY (id)")
        models = {}
        for name, algorithm, params in (("A", "linear_regression", "{}"),
                                        ("B", "decision_tree", '{"max_depth": 1}'),
                                        ("C", "decision_tree", '{"max_depth": 3}')):
            models[name] = conn.execute(
                "SELECT model_id FROM ambient.train('churn', relation => 'churn_rows', target => 'y', "
                "algorithm => %s, hyperparams => %s, deploy => %s)",
                [algorithm, params, "always" if name == "A" else "never"]).fetchone()[0]
        answers = {name: conn.execute(f"SELECT ambient.predict(%s, {POINT})", [model]).fetchone()[0]
                   for name, model in models.items()}
        assert len(set(answers.values())) == 3, answers
        conn.execute("CREATE TABLE churn_in (id bigserial PRIMARY KEY, x1 float8, x2 float8)")
        conn.execute("SELECT ambient.attach('churn', 'churn_in')")
        return models, answers


def pgbench(pgbin, dsn, script, seconds, clients):
    """pgbench's TPS and failed transactions, and whether every client ran
    to the end."""
    result = subprocess.run(
        [str(pgbin / "pgbench"), "-n", "-M", "prepared", "-c", str(clients), "-j", "2", "-T", str(seconds),
         "-f", str(script), dsn], capture_output=True, text=True, check=False)
    out = result.stdout + result.stderr
    tps = re.search(r"tps = ([0-9.]+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return {
        "tps": float(tps.group(1)) if tps else 0.0,
        "failed": int(failed.group(1)) if failed else None,
        "aborted": result.returncode != 0 or "aborted" in out,
        "output": out,
    }


def churn(dsn, models, stop, counts):
    """Once a second: deploy B (or roll back to A), and deploy C in a
    transaction that rolls back."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deployed = False
        while not stop.is_set():
            if deployed:
                conn.execute("SELECT ambient.rollback('churn', reason => 'churn')")
                counts["rollbacks"] += 1
            else:
                conn.execute("SELECT ambient.deploy('churn', %s, reason => 'churn')", [models["B"]])
                counts["deploys"] += 1
            deployed = not deployed
            with conn.transaction():
                conn.execute("SELECT ambient.deploy('churn', %s, reason => 'never committed')", [models["C"]])
                conn.execute("SELECT pg_sleep(0.05)")
                raise psycopg.Rollback()
            counts["rolled_back"] += 1
            stop.wait(1.0)


def run(dsn, pgbin, workdir, seconds, mode, clients=8):
    """One run: `mode` 'predict' or 'insert', with or without (`seconds`
    quiet first) the deploying session. Returns figures and checks."""
    models, answers = setup(dsn)
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / f"churn_{mode}.sql"
    allowed = f"{answers['A']!r}::float8, {answers['B']!r}::float8"
    if mode == "predict":
        # (A constant 1 / 0 would be folded, and raised, at planning.)
        script.write_text(f"SELECT CASE WHEN ambient.predict('churn', {POINT}) IN ({allowed}) "
                          f"THEN 1 ELSE 1 / (random() * 0)::int END;\n")
    else:
        script.write_text("INSERT INTO churn_in (x1, x2) VALUES (0.25, 0.75);\n")
    quiet = pgbench(pgbin, dsn, script, seconds, clients)
    stop = threading.Event()
    counts = {"deploys": 0, "rollbacks": 0, "rolled_back": 0}
    deployer = threading.Thread(target=churn, args=(dsn, models, stop, counts))
    deployer.start()
    try:
        busy = pgbench(pgbin, dsn, script, seconds, clients)
    finally:
        stop.set()
        deployer.join()
    figures = {"mode": mode, "seconds": seconds, "clients": clients, "quiet_tps": quiet["tps"],
               "tps": busy["tps"], "failed": busy["failed"], "aborted": busy["aborted"] or quiet["aborted"],
               "quiet_failed": quiet["failed"], **counts, "output": busy["output"]}
    if mode == "insert":
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute("SELECT prediction_model_id, prediction::float8, count(*) FROM churn_in "
                                "GROUP BY 1, 2 ORDER BY 1").fetchall()
        by_id = {models["A"]: answers["A"], models["B"]: answers["B"]}
        figures["rows"] = sum(r[2] for r in rows)
        figures["rows_by_model"] = {r[0]: r[2] for r in rows}
        figures["wrong_rows"] = sum(r[2] for r in rows if by_id.get(r[0]) != r[1])
    return figures
