"""pg_ambient benchmark: everything measured side by side in one run on one
machine, printed as figures and ratios, then written into bench/README.md.

(a) SELECT sum(f1+...+f10)                        the scan baseline
(b) SELECT sum(ambient.predict('p', ARRAY[...]))   array form
(c) SELECT sum(ambient.predict('p', b.*))          row form
(d) psycopg fetch + scikit-learn DecisionTreeClassifier.predict, same depth
(e) the stored tree predicting in plain Rust, no Postgres (the floor); the
    same for the default learner, the forest and hist_gbm below
training at 100k, 400k and 1M rows, default (unbounded) tree, noisy labels:
    in-database against psycopg fetch + scikit-learn fit
ensembles at 100k and 1M rows x 10 features, default parameters: random_forest
    (100 trees), hist_gbm (the default) and, at 100k, exact gbm trained in the
    database, against psycopg fetch + scikit-learn's RandomForestClassifier
    (n_jobs=-1, every core, as ours), HistGradientBoostingClassifier and, at
    100k, GradientBoostingClassifier (the same models); then the 100k forest
    and hist_gbm predicting every row in a query, against psycopg fetch +
    scikit-learn predict (its predict also alone), and their plain-Rust
    floors on one thread
single-row: pgbench -M prepared -c 8 -j 2, a bare constant SELECT against
    the same through predict by model id and by project name.
writes: INSERT ... SELECT and COPY of 10k and 100k new rows (no label yet,
    as rows arrive) into a table the project is attached to (each row
    predicted by the depth-10 tree, with the model id recorded), against the
    same into an identical table without; and an INSERT of rows that carry
    their label already, which the trigger also logs for live metrics.

scale: a table of 10 numeric (one with 5 % NULLs) and 2 text columns (5
    and 50 categories) at 100k, 1M and 5M rows, both tasks: our default
    (hist_gbm) trained in the database against psycopg fetch + encoding the
    text + scikit-learn's HistGradientBoosting* (categorical_features), with
    held-out accuracy or R² on the same rows, the backend's peak memory, and
    at 1M rows `auto` and predicting every row in a query.

per-row against the last release: (a)-(c) and the single-row figures again
    on the last release in sql/releases.toml, built from its commit in
    release mode, in a database of its own, so a regression shows as a
    ratio in the same run.

features: 3 feature sets with 10M history rows in all (200k customers)
    and a spine of 1M rows: the point-in-time training set materialized in
    the database against psycopg fetch of the spine and the histories +
    pandas.merge_asof (by entity, backward, tolerance = TTL), with the two
    results compared value by value; predict by entity (pgbench, prepared,
    8 clients, random customers) against a bare primary-key SELECT of the
    latest row on a feature table; and INSERT of 100k rows into a table
    attached to a project whose model looks its features up, against the
    same into a plain table.

churn (bench/churn.py): pgbench, 8 clients, predicting (then inserting one
row into an attached table) for 60 s quiet, then 60 s while a ninth session
deploys and rolls back every second and deploys a third model in
transactions it rolls back; failed transactions and answers from a model
that was never committed must be 0.

report: ambient.report of a project with 10, 50 and 200 versions, 90, 365
and 1460 daily monitor and drift runs, and 20 features: built (median of 5),
its size, and its data read alone (ambient.report_data).

`--only writes`, `--only scale`, `--only per-row`, `--only features`,
`--only churn` and `--only report` run one comparison alone and print it, without touching
bench/README.md.
"""

import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import psycopg
from sklearn.ensemble import (GradientBoostingClassifier, HistGradientBoostingClassifier,
                              RandomForestClassifier)
from sklearn.tree import DecisionTreeClassifier

ROOT = pathlib.Path(__file__).resolve().parents[1]
PGBIN = pathlib.Path(os.environ["PGBIN"])
DB = "ambient_bench"
ROWS = int(os.environ.get("AMBIENT_BENCH_ROWS", 1_000_000))
TRAIN_ROWS = 100_000
DEPTH = 10
REPEATS = 5
PGBENCH_ROUNDS = 3
PGBENCH_SECONDS = int(os.environ.get("AMBIENT_BENCH_PGBENCH_SECONDS", 8))
TRAINING_SIZES = [n for n in (100_000, 400_000, 1_000_000) if n <= ROWS]
ENSEMBLE_SIZES = [n for n in (100_000, 1_000_000) if n <= ROWS]
WRITE_SIZES = [n for n in (10_000, 100_000) if n <= ROWS]
FEATURES = ", ".join(f"f{i}" for i in range(1, 11))
DSN = f"host={os.environ.get('PGHOST', '/tmp')} port={os.environ['PGPORT']} user=postgres dbname={DB}"


def log(message):
    print(message, file=sys.stderr, flush=True)


def setup(database=DB, version=None):
    """A fresh `database` with pg_ambient (at `version`, or the default),
    the bench table and the depth-10 tree 'p'; returns its training time."""
    admin = DSN.replace(f"dbname={DB}", "dbname=postgres")
    dsn = DSN.replace(f"dbname={DB}", f"dbname={database}")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {database}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        log(f"bench: generating {ROWS} rows x 10 features in {database}")
        conn.execute("CREATE EXTENSION pg_ambient" + (f" VERSION '{version}'" if version else ""))
        conn.execute("SELECT setseed(0.42)")
        randoms = ", ".join(f"random() AS f{i}" for i in range(1, 11))
        conn.execute(f"""
            CREATE TABLE bench_rows AS
            SELECT g AS id, {FEATURES},
                   CASE WHEN f1 + f2 * f3 > 0.9 THEN 2 WHEN f4 > 0.3 + 0.4 * f5 THEN 1 ELSE 0 END AS label
              FROM (SELECT g, {randoms} FROM generate_series(1, {ROWS}) AS g) s""")
        conn.execute("ALTER TABLE bench_rows ADD PRIMARY KEY (id)")
        # The training comparison's label: 15 % flipped, so unbounded trees
        # grow deep, as on real data.
        conn.execute("ALTER TABLE bench_rows ADD COLUMN noisy int")
        conn.execute("UPDATE bench_rows SET noisy = (label > 0)::int # (random() < 0.15)::int")
        conn.execute("VACUUM ANALYZE bench_rows")
        log(f"bench: training a depth-{DEPTH} tree on the first {TRAIN_ROWS} rows")
        started = time.perf_counter()
        conn.execute(f"""SELECT * FROM ambient.train('p',
            query => 'SELECT {FEATURES}, label FROM bench_rows WHERE id <= {TRAIN_ROWS}',
            target => 'label', algorithm => 'decision_tree', hyperparams => '{{"max_depth": {DEPTH}}}')""")
        seconds = time.perf_counter() - started
        # The version's default learner, for the single-row figures.
        conn.execute(f"""SELECT * FROM ambient.train('default_learner',
            query => 'SELECT {FEATURES}, label FROM bench_rows WHERE id <= {TRAIN_ROWS}', target => 'label')""")
        return seconds


LAST_RELEASE = re.findall(r'^"([0-9.]+)" *=', (ROOT / "sql" / "releases.toml").read_text(), re.M)[-1]
PER_ROW_QUERIES = {
    "a": "SELECT sum(f1+f2+f3+f4+f5+f6+f7+f8+f9+f10) FROM bench_rows",
    "b": f"SELECT sum(ambient.predict('p', ARRAY[{FEATURES}])) FROM bench_rows",
    "c": "SELECT sum(ambient.predict('p', b.*)) FROM bench_rows b",
}


def last_release_per_row():
    """(a)-(c) and the single-row figures on the last release, built from
    its commit in release mode (scripts/install-release.sh), in a database
    of its own; the current version is installed again afterwards. Returns
    ({name: seconds}, {name: tps})."""
    log(f"bench: building and installing {LAST_RELEASE} from its commit, in release mode")
    subprocess.run([str(ROOT / "scripts" / "install-release.sh"), LAST_RELEASE], check=True,
                   env={**os.environ, "AMBIENT_RELEASE_PROFILE": "release"})
    database = DB + "_release"
    try:
        setup(database, LAST_RELEASE)
        dsn = DSN.replace(f"dbname={DB}", f"dbname={database}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT sum(f1) FROM bench_rows")
            measured = timed_side_by_side(conn, PER_ROW_QUERIES)
            live_id = conn.execute("SELECT model_id FROM ambient.models WHERE project = 'p' AND live").fetchone()[0]
        tps = single_row_tps(live_id, dsn)
        return {name: seconds for name, (seconds, _) in measured.items()}, tps
    finally:
        subprocess.run(["make", "-s", "install"], cwd=ROOT, check=True)


def single_row_tps(live_id, dsn=DSN):
    """pgbench medians: a bare constant SELECT, and the same through
    predict by model id and by project name (the depth-10 tree), and by
    project name with the version's default learner."""
    point = ", ".join(["0.5"] * 10)
    statements = {
        "bare": f"SELECT ARRAY[{point}]::float8[];",
        "pinned": f"SELECT ambient.predict({live_id}, ARRAY[{point}]::float8[]);",
        "project": f"SELECT ambient.predict('p', ARRAY[{point}]::float8[]);",
        "default": f"SELECT ambient.predict('default_learner', ARRAY[{point}]::float8[]);",
    }
    tps = {name: [] for name in statements}
    for _ in range(PGBENCH_ROUNDS):
        for name, statement in statements.items():
            tps[name].append(pgbench(statement, dsn))
    return {name: statistics.median(values) for name, values in tps.items()}


def timed_side_by_side(conn, queries):
    """Runs the queries in turn, REPEATS rounds, so machine noise hits them
    alike; returns each one's median time and its result."""
    times = {name: [] for name in queries}
    results = {}
    for _ in range(REPEATS):
        for name, sql in queries.items():
            started = time.perf_counter()
            results[name] = conn.execute(sql).fetchone()[0]
            times[name].append(time.perf_counter() - started)
    return {name: (statistics.median(times[name]), results[name]) for name in queries}


def sklearn_path():
    """What users do without us: fetch the rows, predict in Python."""
    with psycopg.connect(DSN) as conn:
        train = np.array(conn.execute(
            f"SELECT {FEATURES}, label FROM bench_rows WHERE id <= {TRAIN_ROWS} ORDER BY id").fetchall())
        model = DecisionTreeClassifier(max_depth=DEPTH, random_state=42).fit(train[:, :10], train[:, 10])
        times = []
        total = None
        for _ in range(REPEATS):
            started = time.perf_counter()
            rows = conn.execute(f"SELECT {FEATURES} FROM bench_rows").fetchall()
            total = float(model.predict(np.array(rows, dtype=np.float64)).sum())
            times.append(time.perf_counter() - started)
    return statistics.median(times), total


def training_side_by_side():
    """For each size: the default tree trained in the database, against
    fetching the same rows through psycopg and fitting scikit-learn's
    default DecisionTreeClassifier. Returns {rows: (ours, theirs)}."""
    results = {}
    with psycopg.connect(DSN, autocommit=True) as conn:
        for rows in TRAINING_SIZES:
            query = f"SELECT f1, f2, f3, f4, f5, noisy FROM bench_rows WHERE id <= {rows}"
            started = time.perf_counter()
            conn.execute(f"SELECT * FROM ambient.train('t{rows}', query => '{query}', target => 'noisy', "
                         "algorithm => 'decision_tree', deploy => 'never')")
            ours = time.perf_counter() - started
            started = time.perf_counter()
            data = np.array(conn.execute(query).fetchall())
            DecisionTreeClassifier(random_state=42).fit(data[:, :5], data[:, 5])
            theirs = time.perf_counter() - started
            log(f"bench: training {rows} rows: ours {ours:.2f} s, psycopg + scikit-learn {theirs:.2f} s")
            results[rows] = (ours, theirs)
    return results


def ensembles_side_by_side():
    """For each size: random_forest, hist_gbm and (at 100k) gbm with default parameters trained
    in the database (test_size 0.01, so they fit 99 % of the rows scikit-learn
    fits on), against psycopg fetch + scikit-learn's fit. Then the 100k
    models predicting every row: in a query, against fetch + predict.
    Returns ({rows: {name: seconds}}, {name: (ours, theirs)})."""
    training = {}
    sklearn_models = {}
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("SET ambient.max_training_memory = '16GB'")
        conn.execute("SET ambient.progress = off")
        for rows in ENSEMBLE_SIZES:
            query = f"SELECT {FEATURES}, label FROM bench_rows WHERE id <= {rows}"
            times = {}
            # Exact gradient boosting (no longer the default) only where
            # scikit-learn's runs too: it grows faster than the rows.
            for algorithm in ("random_forest", "hist_gbm") + (("gbm",) if rows <= 100_000 else ()):
                started = time.perf_counter()
                conn.execute(f"SELECT * FROM ambient.train('{algorithm}{rows}', query => '{query}', target => 'label', "
                             f"algorithm => '{algorithm}', test_size => 0.01, deploy => 'always')")
                times[algorithm] = time.perf_counter() - started
                log(f"bench: {algorithm} on {rows} rows in the database: {times[algorithm]:.2f} s")
            baselines = [("sklearn RandomForest", lambda: RandomForestClassifier(n_jobs=-1, random_state=0)),
                         ("sklearn GradientBoosting", lambda: GradientBoostingClassifier(random_state=0)),
                         ("sklearn HistGradientBoosting", lambda: HistGradientBoostingClassifier(random_state=0))]
            if rows > 100_000 and not os.environ.get("AMBIENT_BENCH_SLOW"):
                # Exact gradient boosting takes about 125 s at 100k rows and
                # grows faster than the rows: minutes on end at 1M.
                baselines = [b for b in baselines if b[0] != "sklearn GradientBoosting"]
            for name, make in baselines:
                started = time.perf_counter()
                data = np.array(conn.execute(query).fetchall())
                model = make().fit(data[:, :10], data[:, 10])
                times[name] = time.perf_counter() - started
                log(f"bench: {name} on {rows} rows, fetch included: {times[name]:.2f} s")
                if rows == ENSEMBLE_SIZES[0]:
                    sklearn_models[name] = model
            training[rows] = times
        smallest = ENSEMBLE_SIZES[0]
        predicting = {}
        pairs = (("random_forest", "sklearn RandomForest"), ("hist_gbm", "sklearn HistGradientBoosting"))
        floors = floor([f"{ours}{smallest}" for ours, _ in pairs])
        for ours, theirs in pairs:
            started = time.perf_counter()
            total = conn.execute(f"SELECT sum(ambient.predict('{ours}{smallest}', ARRAY[{FEATURES}])) "
                                 "FROM bench_rows").fetchone()[0]
            in_query = time.perf_counter() - started
            model_floor = floors[f"{ours}{smallest}"]
            assert total == model_floor["checksum"], (ours, total, model_floor)
            started = time.perf_counter()
            rows = np.array(conn.execute(f"SELECT {FEATURES} FROM bench_rows").fetchall(), dtype=np.float64)
            fetched = time.perf_counter()
            sklearn_models[theirs].predict(rows)
            exported = time.perf_counter() - started
            their_predict = time.perf_counter() - fetched
            log(f"bench: predicting {ROWS} rows with {ours}: in a query {in_query:.2f} s, exported {exported:.2f} s "
                f"(scikit-learn's predict {their_predict:.2f} s), plain Rust on one thread {model_floor['seconds']:.2f} s")
            predicting[ours] = (in_query, exported, their_predict, model_floor["seconds"])
    return training, predicting


SCALE_SIZES = [n for n in (100_000, 1_000_000, 5_000_000)
               if n <= int(os.environ.get("AMBIENT_BENCH_SCALE_ROWS", 5_000_000))]
NUMERIC = ", ".join(f"x{i}" for i in range(1, 11))
SCALE_INPUTS = f"{NUMERIC}, c5, c50"
# The fits above this many rows need more than the default
# ambient.max_training_memory (1 GB); the figure says so.
DEFAULT_MEMORY_ROWS = 1_000_000


def scale_setup(rows):
    """A table of `rows` rows: 10 numbers (x5 NULL in 5 % of rows), two
    text columns of 5 and 50 categories, a boolean label and a numeric
    target, both nonlinear in the numbers and depending on category sets.
    Every fifth row (id % 5 = 0) is held out for both sides' accuracy."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        log(f"bench: generating the {rows}-row scale table (10 numeric, 2 text columns)")
        conn.execute("DROP TABLE IF EXISTS scale_rows")
        conn.execute("SELECT setseed(0.17)")
        numbers = ", ".join("CASE WHEN random() < 0.05 THEN NULL ELSE random() END AS x5" if i == 5
                            else f"random() AS x{i}" for i in range(1, 11))
        conn.execute(f"""
            CREATE TABLE scale_rows AS
            SELECT id, {SCALE_INPUTS}, score > 0.75 AS label, score AS target
              FROM (SELECT *, x1 + 2 * x2 * x3 - 2 * abs(x4 - 0.5) + 0.6 * coalesce(x5, 0.9)
                              + CASE WHEN c5 IN ('alpha', 'gamma', 'epsilon') THEN 0.3 ELSE -0.3 END
                              + CASE WHEN right(c50, 2)::int % 5 < 2 THEN 0.5 ELSE 0 END
                              + 0.4 * (random() - 0.5) AS score
                      FROM (SELECT g AS id, {numbers},
                                   (ARRAY['alpha', 'beta', 'gamma', 'delta', 'epsilon'])[1 + floor(random() * 5)::int] AS c5,
                                   'v' || lpad(floor(random() * 50)::text, 2, '0') AS c50
                              FROM generate_series(1, {rows}) AS g) raw) scored""")
        conn.execute("ALTER TABLE scale_rows ADD PRIMARY KEY (id)")
        conn.execute("VACUUM ANALYZE scale_rows")


def peak_rss_mb(conn):
    """The backend's peak resident memory so far (VmHWM), in MB."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def categories(column, known=None):
    """Text to category codes, as a user prepares them for scikit-learn's
    `categorical_features`: codes from the training rows; an unseen text is
    missing (NaN)."""
    if known is None:
        known = {text: code for code, text in enumerate(sorted(set(column)))}
    return np.array([known.get(text, np.nan) for text in column], dtype=np.float64), known


def sklearn_scale(conn, rows, task):
    """Fetch, encode and fit scikit-learn's HistGradientBoosting with its
    defaults; then its held-out score. Returns (seconds, score, model,
    encodings)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    target = "label" if task == "classification" else "target"
    started = time.perf_counter()
    data = conn.execute(f"SELECT {SCALE_INPUTS}, {target} FROM scale_rows "
                        f"WHERE id <= {rows} AND id % 5 <> 0").fetchall()
    x = np.array([r[:10] for r in data], dtype=np.float64)
    c5, known5 = categories([r[10] for r in data])
    c50, known50 = categories([r[11] for r in data])
    y = np.array([r[12] for r in data], dtype=np.float64)
    x = np.column_stack([x, c5, c50])
    make = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    model = make(categorical_features=[10, 11], random_state=0).fit(x, y)
    seconds = time.perf_counter() - started
    held = conn.execute(f"SELECT {SCALE_INPUTS}, {target} FROM scale_rows WHERE id <= {rows} AND id % 5 = 0").fetchall()
    hx = np.column_stack([np.array([r[:10] for r in held], dtype=np.float64),
                          categories([r[10] for r in held], known5)[0], categories([r[11] for r in held], known50)[0]])
    hy = np.array([r[12] for r in held], dtype=np.float64)
    return seconds, model.score(hx, hy), model, (known5, known50)


def ours_scale(rows, task, algorithm=None):
    """Our default training on the same rows, in a fresh backend: seconds,
    held-out score (accuracy or R², computed in SQL), the backend's peak
    memory growth in MB, and the project name."""
    target = "label" if task == "classification" else "target"
    project = f"scale_{task[0]}{rows}" + (f"_{algorithm}" if algorithm else "")
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("SET ambient.progress = off")
        if rows > DEFAULT_MEMORY_ROWS:
            conn.execute("SET ambient.max_training_memory = '16GB'")
        before = peak_rss_mb(conn)
        query = f"SELECT {SCALE_INPUTS}, {target} FROM scale_rows WHERE id <= {rows} AND id % 5 <> 0"
        chosen = f", algorithm => '{algorithm}'" if algorithm else ""
        started = time.perf_counter()
        conn.execute(f"SELECT * FROM ambient.train('{project}', query => '{query}', target => '{target}', "
                     f"test_size => 0.01{chosen})")
        seconds = time.perf_counter() - started
        grown = peak_rss_mb(conn) - before
        # The row form matches columns by name and leaves the others out.
        held = f"(SELECT * FROM scale_rows WHERE id <= {rows} AND id % 5 = 0) h"
        if task == "classification":
            score = conn.execute(f"SELECT avg((ambient.predict('{project}', h) = h.label::int)::int) "
                                 f"FROM {held}").fetchone()[0]
        else:
            score = conn.execute(f"""SELECT 1 - sum((target - p) ^ 2) / sum((target - mean) ^ 2)
                  FROM (SELECT target, ambient.predict('{project}', h) AS p, avg(target) OVER () AS mean
                          FROM {held}) s""").fetchone()[0]
    return seconds, float(score), grown, project


def scale_side_by_side():
    """For each size and task: our default against scikit-learn's
    HistGradientBoosting, fetch included, with held-out scores on the same
    rows and the fit's memory; at 1M rows also `auto`, and predicting every
    row in a query against fetch + scikit-learn predict. Returns a list of
    result dicts."""
    results = []
    for rows in SCALE_SIZES:
        scale_setup(rows)
        for task in ("classification", "regression"):
            ours, our_score, grown, project = ours_scale(rows, task)
            with psycopg.connect(DSN, autocommit=True) as conn:
                theirs, their_score, model, known = sklearn_scale(conn, rows, task)
            log(f"bench: scale {task} {rows} rows: ours {ours:.2f} s ({our_score:.4f}, {grown:.0f} MB), "
                f"scikit-learn HGB {theirs:.2f} s ({their_score:.4f})")
            result = {"rows": rows, "task": task, "ours": ours, "theirs": theirs, "our_score": our_score,
                      "their_score": their_score, "memory_mb": grown}
            if rows == 1_000_000 and task == "classification":
                auto, auto_score, auto_grown, _ = ours_scale(rows, task, "auto")
                log(f"bench: scale auto {rows} rows: {auto:.2f} s ({auto_score:.4f}, {auto_grown:.0f} MB)")
                result.update(auto=auto, auto_score=auto_score, auto_memory_mb=auto_grown)
                with psycopg.connect(DSN, autocommit=True) as conn:
                    started = time.perf_counter()
                    conn.execute(f"SELECT sum(ambient.predict('{project}', s)) "
                                 f"FROM (SELECT {SCALE_INPUTS} FROM scale_rows) s").fetchone()
                    in_query = time.perf_counter() - started
                    started = time.perf_counter()
                    data = conn.execute(f"SELECT {SCALE_INPUTS} FROM scale_rows").fetchall()
                    x = np.column_stack([np.array([r[:10] for r in data], dtype=np.float64),
                                         categories([r[10] for r in data], known[0])[0],
                                         categories([r[11] for r in data], known[1])[0]])
                    model.predict(x)
                    exported = time.perf_counter() - started
                log(f"bench: predicting {rows} rows with the default: in a query {in_query:.2f} s, "
                    f"exported {exported:.2f} s")
                result.update(in_query=in_query, exported=exported)
            results.append(result)
    return results


def scale_lines(results):
    """Figures and ratios (with their targets) of `scale_side_by_side`."""
    figures, ratios = [], []
    for r in results:
        size = f"{r['rows'] // 1000}k" if r["rows"] < 1_000_000 else f"{r['rows'] // 1_000_000}M"
        memory_note = "" if r["rows"] <= DEFAULT_MEMORY_ROWS else " (ambient.max_training_memory raised)"
        figures.append((f"scale {size} x (10 numeric + 2 text), {r['task']}: our default / psycopg + "
                        f"scikit-learn HistGradientBoosting{memory_note}",
                        f"{r['ours']:.2f} s / {r['theirs']:.2f} s"))
        metric = "accuracy" if r["task"] == "classification" else "R²"
        figures.append((f"scale {size} {r['task']}: held-out {metric}, ours / scikit-learn's",
                        f"{r['our_score']:.4f} / {r['their_score']:.4f}"))
        binned_plus_raw = r["rows"] * 0.8 * 12 * (1 + 8) / 2 ** 20
        figures.append((f"scale {size} {r['task']}: backend peak memory growth while training "
                        f"(binned + raw f64 rows: {binned_plus_raw:.0f} MB)", f"{r['memory_mb']:.0f} MB"))
        ratios.append((f"scale {size} {r['task']}: scikit-learn HGB time / ours, target >= 1",
                       r["theirs"] / r["ours"], r["theirs"] >= r["ours"]))
        ratios.append((f"scale {size} {r['task']}: our {metric} − scikit-learn's, target >= −0.005",
                       r["our_score"] - r["their_score"], r["our_score"] >= r["their_score"] - 0.005))
        if r["rows"] == 5_000_000:
            ratios.append((f"scale {size} {r['task']}: memory growth / (binned + raw), target <= 2",
                           r["memory_mb"] / binned_plus_raw, r["memory_mb"] <= 2 * binned_plus_raw))
        if "auto" in r:
            figures.append((f"scale {size} classification: algorithm => 'auto' (default memory)",
                            f"{r['auto']:.2f} s, accuracy {r['auto_score']:.4f}, {r['auto_memory_mb']:.0f} MB"))
            ratios.append((f"scale {size}: auto / (fetch + one scikit-learn HGB fit), target <= 3",
                           r["auto"] / r["theirs"], r["auto"] <= 3 * r["theirs"]))
            ratios.append((f"scale {size}: auto accuracy − scikit-learn HGB's, target >= −0.005",
                           r["auto_score"] - r["their_score"], r["auto_score"] >= r["their_score"] - 0.005))
            figures.append((f"predicting {size} rows with the default (row form, text columns): in a query / "
                            "exported to scikit-learn", f"{r['in_query']:.2f} s / {r['exported']:.2f} s"))
            ratios.append((f"predicting {size} with the default: exported / in a query, target >= 10",
                           r["exported"] / r["in_query"], r["exported"] >= 10 * r["in_query"]))
    return figures, ratios


def floor(projects):
    """The live models of `projects` predicting every bench row in plain
    Rust, one thread (bench/floor.rs): {project: {"seconds", "checksum"}}."""
    csv_path = ROOT / "target" / "bench" / "rows.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w") as out:
        subprocess.run([str(PGBIN / "psql"), "-X", "-q", DSN, "-c",
                        f"COPY (SELECT {FEATURES}, label FROM bench_rows ORDER BY id) TO STDOUT WITH CSV"],
                       stdout=out, check=True)
    arguments = []
    with psycopg.connect(DSN) as conn:
        for project in projects:
            artifact, sha = conn.execute(
                "SELECT m.artifact, m.artifact_sha256 FROM ambient.model_store m"
                " JOIN ambient.models v ON v.model_id = m.id WHERE v.project = %s AND v.live", (project,)).fetchone()
            artifact_path = csv_path.parent / f"{project}.bin"
            artifact_path.write_bytes(artifact)
            arguments += [str(artifact_path), sha]
    binary = ROOT / "target" / "release" / "ambient_bench_floor"
    output = subprocess.run([str(binary), str(csv_path)] + arguments,
                            capture_output=True, text=True, check=True).stdout
    return dict(zip(projects, json.loads(output)["floors"]))


def pgbench(statement, dsn=DSN):
    script = ROOT / "target" / "bench" / "pgbench.sql"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(statement + "\n")
    output = subprocess.run(
        [str(PGBIN / "pgbench"), "-n", "-M", "prepared", "-c", "8", "-j", "2", "-T", str(PGBENCH_SECONDS),
         "-f", str(script), dsn], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"tps = ([0-9.]+)", output).group(1))


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB RAM, PostgreSQL 15, {platform.system()}"


def writes_side_by_side():
    """For each size: INSERT ... SELECT and COPY into a table attached to
    project 'p' against the same into an identical plain table, interleaved
    REPEATS rounds (each on emptied tables). Returns {(how, rows): (attached,
    plain)} median seconds."""
    columns = f"id bigint PRIMARY KEY, {FEATURES.replace(',', ' float8,')} float8, label int"
    results = {}
    with psycopg.connect(DSN, autocommit=True) as conn:
        for table in ("plain_in", "attached_in"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"CREATE TABLE {table} ({columns})")
        conn.execute("SELECT * FROM ambient.attach('p', 'attached_in')")
        for rows in WRITE_SIZES:
            arriving = f"SELECT id, {FEATURES} FROM bench_rows WHERE id <= {rows}"
            labelled = f"SELECT id, {FEATURES}, label FROM bench_rows WHERE id <= {rows}"
            copy_text = bytearray()
            with conn.cursor().copy(f"COPY ({arriving}) TO STDOUT") as out:
                for chunk in out:
                    copy_text += chunk
            hows = ("insert", "copy", "insert labelled")
            times = {(how, table): [] for how in hows for table in ("attached_in", "plain_in")}
            for _ in range(REPEATS):
                for how, table in times:
                    conn.execute(f"TRUNCATE {table}")
                    started = time.perf_counter()
                    if how == "insert":
                        conn.execute(f"INSERT INTO {table} (id, {FEATURES}) {arriving}")
                    elif how == "insert labelled":
                        conn.execute(f"INSERT INTO {table} (id, {FEATURES}, label) {labelled}")
                    else:
                        with conn.cursor().copy(f"COPY {table} (id, {FEATURES}) FROM STDIN") as into:
                            into.write(bytes(copy_text))
                    times[(how, table)].append(time.perf_counter() - started)
                    if table == "attached_in":
                        predicted = conn.execute("SELECT count(prediction_model_id) FROM attached_in").fetchone()[0]
                        assert predicted == rows, (how, predicted, rows)
            for how in hows:
                attached = statistics.median(times[(how, "attached_in")])
                plain = statistics.median(times[(how, "plain_in")])
                log(f"bench: {how} {rows} rows: attached {attached:.3f} s, plain {plain:.3f} s")
                results[(how, rows)] = (attached, plain)
    return results


FEATURE_SCALE = float(os.environ.get("AMBIENT_BENCH_FEATURE_SCALE", 1))
FS_CUSTOMERS = int(200_000 * FEATURE_SCALE)
FS_SPINE = int(1_000_000 * FEATURE_SCALE)
# Events per customer in each set (25 + 15 + 10 = 50 a customer: 10M rows)
# and its TTL.
FS_SETS = {"fs_spend": (25, "30 days"), "fs_visits": (15, "90 days"), "fs_support": (10, None)}


def features_setup(conn):
    """Three source tables and their feature sets, the spine, a training
    set over them, and a model trained from it ('fs')."""
    conn.execute("SELECT setseed(0.7)")
    for name, (per_customer, ttl) in FS_SETS.items():
        conn.execute(f"DROP TABLE IF EXISTS {name}_src")
        # Events spread over a year, each customer at its own instants.
        conn.execute(f"""
            CREATE TABLE {name}_src AS
            SELECT c AS customer_id,
                   timestamptz '2025-01-01' + (k * 365.0 / {per_customer}) * interval '1 day'
                     + (random() * 300000)::int * interval '1 minute' / 10 AS at,
                   round((random() * 100)::numeric, 2)::float8 AS {name[3:]}_amount,
                   (random() * 10)::int AS {name[3:]}_count
              FROM generate_series(1, {FS_CUSTOMERS}) c, generate_series(0, {per_customer} - 1) k""")
        conn.execute(f"DELETE FROM {name}_src a USING {name}_src b "
                     f"WHERE a.ctid < b.ctid AND a.customer_id = b.customer_id AND a.at = b.at")
        conn.execute(f"ALTER TABLE {name}_src ADD PRIMARY KEY (customer_id, at)")
        log(f"bench: feature set {name}")
        conn.execute(f"SELECT * FROM ambient.create_feature_set('{name}', '{name}_src', '{{customer_id}}', 'at'"
                     + (f", ttl => '{ttl}'" if ttl else "") + ")")
    conn.execute("DROP TABLE IF EXISTS fs_spine")
    conn.execute(f"""
        CREATE TABLE fs_spine AS
        SELECT (random() * ({FS_CUSTOMERS} - 1))::int + 1 AS customer_id,
               timestamptz '2025-02-01' + random() * interval '330 days' AS at,
               (random() < 0.3) AS churned
          FROM generate_series(1, {FS_SPINE})""")
    conn.execute("VACUUM ANALYZE")
    conn.execute("SELECT * FROM ambient.create_training_set('fs_train', 'fs_spine', "
                 "'{fs_spend.*,fs_visits.*,fs_support.*}', label => 'churned')")


def features_side_by_side():
    """The feature store's three comparisons (see the module's note).
    Returns (figures, ratios)."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        log(f"bench: feature store, {FS_SPINE} spine rows, {FS_CUSTOMERS} customers")
        features_setup(conn)
        history_rows = sum(conn.execute(f"SELECT count(*) FROM ambient_features.{name}").fetchone()[0]
                           for name in FS_SETS)
        columns = [c for name in FS_SETS for c in (f"{name[3:]}_amount", f"{name[3:]}_count")]
        ours_times, theirs_times = [], []
        for _ in range(3):
            started = time.perf_counter()
            conn.execute("DROP TABLE IF EXISTS fs_built")
            conn.execute("CREATE UNLOGGED TABLE fs_built AS SELECT * FROM ambient_training.fs_train")
            ours_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            theirs = merge_asof_training_set(conn)
            theirs_times.append(time.perf_counter() - started)
        ours = conn.execute(f"SELECT customer_id, at, churned, {', '.join(columns)} FROM fs_built "
                            "ORDER BY customer_id, at, churned").fetchall()
        ours = pd.DataFrame(ours, columns=["customer_id", "at", "churned"] + columns)
        theirs = theirs.sort_values(["customer_id", "at", "churned"]).reset_index(drop=True)
        for column in columns:
            a = ours[column].to_numpy(dtype=float, na_value=np.nan)
            b = theirs[column].to_numpy(dtype=float, na_value=np.nan)
            assert np.array_equal(a, b, equal_nan=True), column
        equal_rows = len(ours) == len(theirs) == FS_SPINE
        assert equal_rows
        log("bench: training from the training set")
        conn.execute("SELECT * FROM ambient.train('fs', training_set => 'fs_train')")
        # Predict by entity against the bare lookup it is built from.
        entity = f"\\set c random(1, {FS_CUSTOMERS})\n"
        tps = {"bare": [], "entity": []}
        for _ in range(PGBENCH_ROUNDS):
            tps["bare"].append(pgbench(entity + "SELECT * FROM fs_spend_src WHERE customer_id = :c "
                                       "ORDER BY at DESC LIMIT 1;"))
            tps["entity"].append(pgbench(entity + "SELECT ambient.predict('fs', entity => :c::int);"))
        tps = {k: statistics.median(v) for k, v in tps.items()}
        # Attached INSERT with lookup against a plain INSERT.
        for table in ("fs_plain_in", "fs_attached_in"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, customer_id int)")
        conn.execute("SELECT * FROM ambient.attach('fs', 'fs_attached_in')")
        rows = min(100_000, FS_SPINE)
        arriving = f"SELECT g, (g * 7919) % {FS_CUSTOMERS} + 1 FROM generate_series(1, {rows}) g"
        times = {t: [] for t in ("fs_attached_in", "fs_plain_in")}
        for _ in range(REPEATS):
            for table in times:
                conn.execute(f"TRUNCATE {table}")
                started = time.perf_counter()
                conn.execute(f"INSERT INTO {table} (id, customer_id) {arriving}")
                times[table].append(time.perf_counter() - started)
        predicted = conn.execute("SELECT count(prediction_model_id) FROM fs_attached_in").fetchone()[0]
        assert predicted == rows, predicted
        attached, plain = (statistics.median(times[t]) for t in ("fs_attached_in", "fs_plain_in"))
    ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs_times)
    figures = [
        (f"training set, {FS_SPINE // 1000}k spine rows x 3 feature sets ({history_rows / 1e6:.1f}M history rows): "
         "built in the database / psycopg fetch + pandas.merge_asof", f"{ours_s:.2f} s / {theirs_s:.2f} s"),
        ("pgbench TPS: bare PK SELECT of a customer's latest row / predict by entity (3 feature sets)",
         f"{tps['bare']:.0f} / {tps['entity']:.0f}"),
        (f"INSERT {rows // 1000}k rows of customer ids: attached (features looked up, predicted) / plain table",
         f"{attached:.3f} s / {plain:.3f} s"),
    ]
    ratios = [
        ("training set: in the database / psycopg + merge_asof, target <= 0.5", ours_s / theirs_s,
         ours_s / theirs_s <= 0.5),
        ("predict by entity / bare PK SELECT, TPS, target >= 0.5", tps["entity"] / tps["bare"],
         tps["entity"] / tps["bare"] >= 0.5),
        (f"INSERT {rows // 1000}k with lookup: attached / plain, target <= 3", attached / plain, attached / plain <= 3),
    ]
    return figures, ratios


def merge_asof_training_set(conn):
    """The training set as a pandas user builds it: the spine and each
    set's current history fetched through psycopg, then merge_asof by
    customer, backward, with the set's TTL as tolerance."""
    spine = pd.DataFrame(conn.execute("SELECT customer_id, at, churned FROM fs_spine").fetchall(),
                         columns=["customer_id", "at", "churned"]).sort_values("at")
    for name, (_, ttl) in FS_SETS.items():
        columns = [f"{name[3:]}_amount", f"{name[3:]}_count"]
        history = pd.DataFrame(
            conn.execute(f"SELECT customer_id, at, {', '.join(columns)} FROM ambient_features.{name} "
                         "WHERE superseded_at IS NULL").fetchall(),
            columns=["customer_id", "at"] + columns).sort_values("at")
        spine = pd.merge_asof(spine, history, on="at", by="customer_id", direction="backward",
                              tolerance=pd.Timedelta(ttl) if ttl else None)
    return spine


def write_lines(writes):
    figures = [(f"{how.upper()} {rows // 1000}k rows: attached (predicted) / plain table", f"{a:.3f} s / {p:.3f} s")
               for (how, rows), (a, p) in writes.items()]
    ratios = [(f"{how.upper()} {rows // 1000}k rows: attached / plain"
               + (", target <= 2" if (how, rows) == ("insert", 100_000) else ""),
               a / p, (a / p <= 2) if (how, rows) == ("insert", 100_000) else None)
              for (how, rows), (a, p) in writes.items()]
    return figures, ratios


def release_lines(current, current_tps, release, release_tps):
    """Figures and ratios of the per-row and single-row measures on this
    version and on the last release, in the same run."""
    figures = [(f"({name}) on {LAST_RELEASE} (release build of its commit)", f"{release[name]:.3f} s")
               for name in ("a", "b", "c")]
    figures += [(f"pgbench TPS on {LAST_RELEASE}: bare / by model id / by project / its default learner",
                 f"{release_tps['bare']:.0f} / {release_tps['pinned']:.0f} / {release_tps['project']:.0f}"
                 f" / {release_tps['default']:.0f}")]
    ratios = []
    for name, form in (("b", "array"), ("c", "row")):
        now, then = current[name] / current["a"], release[name] / release["a"]
        ratios.append((f"{form} form / bare scan: this version", now, None))
        ratios.append((f"{form} form / bare scan: {LAST_RELEASE}", then, None))
        ratios.append((f"{form} form / bare scan: this version / {LAST_RELEASE}, target <= 1", now / then,
                       now <= then))
    for name in ("pinned", "project", "default"):
        now, then = current_tps[name] / current_tps["bare"], release_tps[name] / release_tps["bare"]
        ratios.append((f"single-row {name} / bare: this version / {LAST_RELEASE}", now / then, None))
    return figures, ratios


CHURN_SECONDS = int(os.environ.get("AMBIENT_BENCH_CHURN_SECONDS", 60))


def churn_lines():
    """bench/churn.py for CHURN_SECONDS, predicting then inserting: 8
    pgbench clients quiet, then with a ninth session deploying and rolling
    back every second."""
    sys.path.insert(0, str(ROOT / "bench"))
    import churn
    figures, ratios = [], []
    for mode in ("predict", "insert"):
        log(f"bench: {mode} under deploys and rollbacks, {CHURN_SECONDS}s quiet then {CHURN_SECONDS}s churning")
        got = churn.run(DSN, PGBIN, ROOT / "target" / "bench", CHURN_SECONDS, mode)
        what = "predict('churn', ARRAY[2 constants])" if mode == "predict" else "INSERT of one row into an attached table"
        figures.append((f"pgbench TPS, {what}: quiet / a ninth session deploying and rolling back every second",
                        f"{got['quiet_tps']:.0f} / {got['tps']:.0f} ({got['deploys']} deploys, {got['rollbacks']} "
                        f"rollbacks, {got['rolled_back']} deploys rolled back)"))
        wrong = got.get("wrong_rows", 0)
        errors = (got["failed"] or 0) + (1 if got["aborted"] else 0) + wrong
        figures.append((f"{what} under deploys: failed transactions, aborted clients, answers from an "
                        f"uncommitted model", f"{got['failed']}, {int(got['aborted'])}, {wrong}"))
        ratios.append((f"{what}: TPS while deploying / quiet", got["tps"] / got["quiet_tps"], None))
        ratios.append((f"{what} under deploys: errors and wrong answers, target 0", errors, errors == 0))
    return figures, ratios


# The report: (versions, daily monitor and drift runs) per size; 20 features.
REPORT_SIZES = [(10, 90), (50, 365), (200, 1460)]
REPORT_FEATURES = 20


def report_setup(conn, project, versions, days):
    """A project with `versions` models (every fifth deployed) on 20
    features, and `days` daily monitor and drift runs (each drift run with
    every feature's ten-bin distribution), written into the logs directly,
    as a year of pg_cron runs would have, and a policy with a threshold."""
    features = ", ".join(f"f{i}" for i in range(1, REPORT_FEATURES + 1))
    randoms = ", ".join(f"random() AS f{i}" for i in range(1, REPORT_FEATURES + 1))
    # A table per project: the source guard keeps a live model's table.
    table = f"{project}_rows"
    conn.execute(f"""CREATE TABLE {table} AS
        SELECT {features}, (f1 + f2 * f3 + random() * 0.3 > 0.8) AS label
          FROM (SELECT {randoms} FROM generate_series(1, 2000)) s""")
    for v in range(versions):
        conn.execute(f"""SELECT * FROM ambient.train(%s, relation => '{table}', target => 'label',
            algorithm => 'decision_tree', hyperparams => %s, deploy => %s)""",
            (project, json.dumps({"max_depth": 2 + v % 6}), "always" if v % 5 == 0 else "never"))
    conn.execute("SELECT ambient.set_policy(%s, '{\"min_live_metric\": 0.8}')", (project,))
    project_id, live = conn.execute(
        "SELECT p.id, o.live_model_id FROM ambient.projects p JOIN ambient.overview o ON o.project = p.name "
        "WHERE p.name = %s", (project,)).fetchone()
    bins = [{"bin": f"bin {k}", "training": 0.1, "recent": 0.1} for k in range(10)]
    conn.execute("""INSERT INTO ambient.monitor_log (project_id, model_id, run_at, run_by, scope, labelled_rows, metrics)
        SELECT %s, %s, now() - d * interval '1 day', 'bench', 'all labelled rows', 500,
               jsonb_build_object('f1', 0.85 + 0.05 * sin(d / 20.0), 'accuracy', 0.9)
          FROM generate_series(1, %s) d""", (project_id, live, days))
    conn.execute("""INSERT INTO ambient.drift_log (project_id, model_id, run_at, run_by, source, rows,
                                                   drifted_share, dataset_drifted, columns)
        SELECT %s, %s, now() - d * interval '1 day', 'bench', %s, 500, 0.05, false,
               (SELECT jsonb_agg(jsonb_build_object('feature', 'f' || f, 'kind', 'numeric', 'rows', 500,
                        'psi', 0.02 * f * (1 + sin(d / 30.0)), 'ks', 0.05, 'ks_p_value', 0.5 / f,
                        'js', NULL, 'status', 'stable', 'distribution', %s::jsonb))
                  FROM generate_series(1, %s) f)
          FROM generate_series(1, %s) d""", (project_id, live, table, json.dumps(bins), REPORT_FEATURES, days))


def report_side_by_side():
    """The report of each size: built (median of REPEATS), its bytes, and
    reading its data alone (ambient.report_data), the floor under it."""
    results = {}
    with psycopg.connect(DSN, autocommit=True) as conn:
        for versions, days in REPORT_SIZES:
            project = f"report_{versions}"
            log(f"bench: report of {versions} versions, {days} daily runs, {REPORT_FEATURES} features")
            report_setup(conn, project, versions, days)
            since = f"{days + 1} days"
            built, fetched = [], []
            for _ in range(REPEATS):
                started = time.perf_counter()
                html = conn.execute("SELECT ambient.report(%s, %s::interval)", (project, since)).fetchone()[0]
                built.append(time.perf_counter() - started)
                started = time.perf_counter()
                conn.execute("SELECT ambient.report_data(%s, %s::interval)", (project, since)).fetchone()
                fetched.append(time.perf_counter() - started)
            results[(versions, days)] = (statistics.median(built), statistics.median(fetched),
                                         len(html.encode()))
    return results


def report_lines(results):
    figures, ratios = [], []
    for (versions, days), (built, fetched, size) in results.items():
        figures.append((f"report of {versions} versions, {days} daily monitor and drift runs, {REPORT_FEATURES} "
                        "features: built / its data read alone / bytes",
                        f"{built:.3f} s / {fetched:.3f} s / {size:,}"))
    built, _, size = results[(50, 365)]
    ratios.append(("report of 50 versions, 365 runs, 20 features: seconds / 1 s, target <= 1", built, built <= 1))
    ratios.append(("the same: bytes / 1 MB, target <= 1", size / 1e6, size <= 1e6))
    (small_v, small_d), (large_v, large_d) = REPORT_SIZES[0], REPORT_SIZES[-1]
    ratios.append((f"report growth {large_v // small_v}x versions, {large_d // small_d}x runs: time ratio",
                   results[REPORT_SIZES[-1]][0] / results[REPORT_SIZES[0]][0], None))
    return figures, ratios


def empty_database():
    """A fresh bench database with only pg_ambient, for the comparisons that
    make their own tables."""
    with psycopg.connect(DSN.replace(f"dbname={DB}", "dbname=postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_ambient")


def print_lines(figures, ratios):
    """One section's figures and ratios, for the `--only` runs."""
    for name, value in figures:
        print(f"{name}: {value}")
    for name, value, met in ratios:
        print(f"{name}: {value:.2f}{'' if met is None else (' (met)' if met else ' (NOT met)')}")


def main():
    if sys.argv[1:] == ["--only", "per-row"]:
        setup()
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute("SELECT sum(f1) FROM bench_rows")
            measured = timed_side_by_side(conn, PER_ROW_QUERIES)
            live_id = conn.execute("SELECT model_id FROM ambient.models WHERE project = 'p' AND live").fetchone()[0]
        current = {name: seconds for name, (seconds, _) in measured.items()}
        current_tps = single_row_tps(live_id)
        figures, ratios = release_lines(current, current_tps, *last_release_per_row())
        figures = [(f"({name}) on this version", f"{current[name]:.3f} s") for name in ("a", "b", "c")] + [
            ("pgbench TPS on this version: bare / by model id / by project / its default learner",
             " / ".join(f"{current_tps[k]:.0f}" for k in ("bare", "pinned", "project", "default")))] + figures
        ratios.append(("single-row, the default learner by project / bare, target >= 0.8",
                       current_tps["default"] / current_tps["bare"],
                       current_tps["default"] / current_tps["bare"] >= 0.8))
        print_lines(figures, ratios)
        return
    if sys.argv[1:] == ["--only", "scale"]:
        empty_database()
        figures, ratios = scale_lines(scale_side_by_side())
        print_lines(figures, ratios)
        return
    if sys.argv[1:] == ["--only", "features"]:
        empty_database()
        print_lines(*features_side_by_side())
        return
    if sys.argv[1:] == ["--only", "churn"]:
        setup()
        print_lines(*churn_lines())
        return
    if sys.argv[1:] == ["--only", "report"]:
        empty_database()
        print_lines(*report_lines(report_side_by_side()))
        return
    if sys.argv[1:] == ["--only", "writes"]:
        setup()
        figures, ratios = write_lines(writes_side_by_side())
        print_lines(figures, ratios)
        return
    train_seconds = setup()
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"SELECT sum(f1) FROM bench_rows")  # warm the cache
        log("bench: (a) scan, (b) array predict, (c) row predict")
        measured = timed_side_by_side(conn, PER_ROW_QUERIES)
        (a, _), (b, b_sum), (c, c_sum) = measured["a"], measured["b"], measured["c"]
    log("bench: (d) psycopg + scikit-learn")
    d, d_sum = sklearn_path()
    log("bench: (e) plain Rust floor")
    floors = floor(["p", "default_learner"])
    e = floors["p"]
    log(f"bench: pgbench single-row, {PGBENCH_ROUNDS} rounds of {PGBENCH_SECONDS}s each")
    with psycopg.connect(DSN) as conn:
        live_id = conn.execute("SELECT model_id FROM ambient.models WHERE project = 'p' AND live").fetchone()[0]
    tps = single_row_tps(live_id)
    release_figures, release_ratios = release_lines({"a": a, "b": b, "c": c}, tps, *last_release_per_row())
    log("bench: training side by side")
    training = training_side_by_side()
    log("bench: ensembles side by side")
    ensembles, predicting = ensembles_side_by_side()
    log("bench: writes into an attached table, side by side")
    write_figures, write_ratios = write_lines(writes_side_by_side())
    log("bench: the feature store, side by side")
    feature_figures, feature_ratios = features_side_by_side()
    log("bench: the default learner at scale, side by side")
    scale_figures, scale_ratios = scale_lines(scale_side_by_side())
    churn_figures, churn_ratios = churn_lines()
    log("bench: the report")
    report_figures, report_ratios = report_lines(report_side_by_side())

    assert b_sum == c_sum == e["checksum"], (b_sum, c_sum, e)
    figures = [
        ("training (depth-10 tree, 100k rows, in-database)", f"{train_seconds:.2f} s"),
        ("(a) scan: sum(f1+...+f10)", f"{a:.3f} s"),
        ("(b) sum(ambient.predict('p', ARRAY[...]))", f"{b:.3f} s"),
        ("(c) sum(ambient.predict('p', b.*))", f"{c:.3f} s"),
        ("(d) psycopg fetch + scikit-learn predict", f"{d:.3f} s"),
        ("(e) our stored tree, plain Rust (floor)", f"{e['seconds']:.3f} s"),
        ("the default learner (single-row figures) predicting the same rows in plain Rust, one thread",
         f"{floors['default_learner']['seconds']:.3f} s ({floors['default_learner']['seconds'] / ROWS * 1e6:.2f} µs a row)"),
        ("pgbench TPS, SELECT ARRAY[10 constants] (bare)", f"{tps['bare']:.0f}"),
        ("pgbench TPS, the same through ambient.predict(model_id, ...)", f"{tps['pinned']:.0f}"),
        ("pgbench TPS, the same through ambient.predict('p', ...)", f"{tps['project']:.0f}"),
        ("pgbench TPS, the same through the default learner's ambient.predict('default_learner', ...)",
         f"{tps['default']:.0f}"),
    ]
    figures += [(f"training {rows // 1000}k rows x 5, default tree: in-database / psycopg + scikit-learn",
                 f"{ours:.2f} s / {theirs:.2f} s") for rows, (ours, theirs) in training.items()]
    for rows, times in ensembles.items():
        figures += [(f"training {rows // 1000}k rows x 10, {name}", f"{seconds:.2f} s") for name, seconds in times.items()]
    for name, (ours, theirs, their_predict, rust) in predicting.items():
        figures.append((f"predicting {ROWS // 1000}k rows with the 100k {name}: in a query / exported to scikit-learn "
                        "(of which scikit-learn's predict) / the stored model in plain Rust, one thread (floor)",
                        f"{ours:.2f} s ({ours / ROWS * 1e6:.2f} µs a row) / {theirs:.2f} s ({their_predict:.2f} s) "
                        f"/ {rust:.2f} s"))
    figures += release_figures + write_figures + feature_figures + scale_figures + churn_figures + report_figures
    ratios = [
        ("(b)/(e) (cost of being in Postgres)", b / e["seconds"], None),
        ("single-row TPS, pinned / bare, target >= 0.8", tps["pinned"] / tps["bare"], tps["pinned"] / tps["bare"] >= 0.8),
        ("single-row TPS, project / bare, target >= 0.7", tps["project"] / tps["bare"], tps["project"] / tps["bare"] >= 0.7),
        ("single-row TPS, the default learner by project / bare, target >= 0.8", tps["default"] / tps["bare"],
         tps["default"] / tps["bare"] >= 0.8),
        # The bare SELECT's CPU a transaction is (cores / its TPS); the
        # default learner's walk adds at least its plain-Rust cost a row.
        ("single-row, the default learner: the highest TPS / bare its plain-Rust cost a row allows",
         1 / (1 + floors["default_learner"]["seconds"] / ROWS * tps["bare"] / os.cpu_count()), None),
    ]
    ratios += [(f"training {rows // 1000}k: scikit-learn / ours, target >= 1", theirs / ours, theirs / ours >= 1)
               for rows, (ours, theirs) in training.items()]
    for rows, times in ensembles.items():
        for ours, theirs in (("random_forest", "sklearn RandomForest"), ("gbm", "sklearn GradientBoosting"),
                             ("hist_gbm", "sklearn HistGradientBoosting")):
            if theirs not in times or ours not in times:
                continue
            ratio = times[theirs] / times[ours]
            ratios.append((f"training {rows // 1000}k x 10: {theirs} / our {ours}, target >= 1", ratio, ratio >= 1))
    if len(ensembles) == 2:
        small, large = ENSEMBLE_SIZES
        for ours, theirs in (("random_forest", "sklearn RandomForest"), ("hist_gbm", "sklearn HistGradientBoosting")):
            ratios.append((f"growth {large // small}x rows: our {ours} time / {theirs}'s",
                           (ensembles[large][ours] / ensembles[small][ours])
                           / (ensembles[large][theirs] / ensembles[small][theirs]), None))
    for name, (ours, theirs, their_predict, rust) in predicting.items():
        bar = 2 if name == "random_forest" else 10
        ratios.append((f"predicting with {name}: exported / in a query, target >= {bar}", theirs / ours,
                       theirs / ours >= bar))
        ratios.append((f"predicting with {name}: scikit-learn's predict alone / in a query", their_predict / ours, None))
        ratios.append((f"predicting with {name}: exported / the plain-Rust floor on one thread", theirs / rust, None))
        ratios.append((f"predicting with {name}: in a query / the plain-Rust floor on one thread", ours / rust, None))
    ratios += [("(b)/(a), array form, target <= 1.3", b / a, b / a <= 1.3),
               ("(c)/(a), row form, target <= 1.5", c / a, c / a <= 1.5),
               ("(d)/(b), export / array form, target >= 15", d / b, d / b >= 15)]
    ratios += release_ratios + write_ratios + feature_ratios + scale_ratios + churn_ratios + report_ratios
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, {ROWS} rows; (a)-(c) median of {REPEATS} "
             f"interleaved rounds, pgbench (-M prepared -c 8 -j 2) median of {PGBENCH_ROUNDS} alternating "
             f"{PGBENCH_SECONDS}s rounds, training once per size.", "",
             "| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in figures]
    lines += ["", "| ratio | value | target met |", "|---|---|---|"]
    lines += [f"| {name} | {value:.2f} | {'' if met is None else ('yes' if met else 'NO')} |"
              for name, value, met in ratios]
    report = "\n".join(lines)
    print(report)
    if ROWS == 1_000_000:
        readme = ROOT / "bench" / "README.md"
        text = readme.read_text()
        start, end = "<!-- figures -->", "<!-- /figures -->"
        readme.write_text(text[:text.index(start) + len(start)] + "\n" + report + "\n" + text[text.index(end):])


if __name__ == "__main__":
    main()
