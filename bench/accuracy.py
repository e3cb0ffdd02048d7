"""pg_ambient accuracy against scikit-learn, on the same train/test rows.

Datasets: the ones scikit-learn ships offline (iris, wine, breast_cancer:
classification, macro F1; diabetes: regression, R²) and a mixed-type
customer table generated here (text, boolean, date and numeric columns with
NULLs), once with a classification target (churn) and once with a regression
target (lifetime value). One split for everything: train_test_split
(test_size=0.25, random_state=42, stratified for classification). The train
rows go to <name>_train and the test rows to <name>_test in a fresh database.

pg_ambient: ambient.train(relation => '<name>_train', algorithm => ...) for
each algorithm in --algorithms, then every test row predicted with the row
form (ambient.predict_label / ambient.predict on t.*). scikit-learn:
RandomForest* and HistGradientBoosting* with default parameters
(random_state=0), fitted on the same train rows and scored on the same test
rows. The bar is scikit-learn's random forest minus 0.02 (F1) or 0.03 (R²).

Prints the tables and rewrites the section of docs/accuracy.md between
<!-- accuracy:begin --> and <!-- accuracy:end --> (unless --no-write, or a
train call failed: then it exits 1 and leaves the file alone).
"""

import argparse
import datetime
import os
import pathlib
import platform
import re
import sys
import time

import numpy as np
import psycopg
from psycopg import sql
from sklearn import datasets
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.impute import SimpleImputer
from sklearn.metrics import f1_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "accuracy.md"
BEGIN, END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"
DB = "ambient_accuracy"
TEST_SIZE = 0.25
SPLIT_SEED = 42
# train always holds back a test split of its own; the smallest keeps
# pg_ambient learning from the rows scikit-learn learns from (a few fewer).
AMBIENT_TEST_SIZE = 0.01
MIXED_ROWS = 5000
BARS = {"classification": 0.02, "regression": 0.03}
METRIC = {"classification": "macro F1", "regression": "R²"}


def dsn(dbname):
    return (f"host={os.environ.get('PGHOST', '/tmp')} port={os.environ['PGPORT']} "
            f"user={os.environ.get('PGUSER', 'postgres')} dbname={dbname}")


def log(message):
    print(message, file=sys.stderr, flush=True)


def ident(name):
    """A valid, lower-case SQL identifier from a scikit-learn feature name."""
    out = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")
    if not out or not (out[0].isalpha() or out[0] == "_"):
        out = "c_" + out
    return out[:63]


class Dataset:
    """Columns as (name, kind) with kind in float, int, text, bool, date;
    rows as a list of tuples (None for NULL); the target is the last column."""

    def __init__(self, name, task, columns, rows, note=""):
        self.name, self.task, self.columns, self.rows, self.note = name, task, columns, rows, note
        names = [c for c, _ in columns]
        assert len(set(names)) == len(names), f"{name}: duplicate column names {names}"
        assert "id" not in names
        self.target = names[-1]
        labels = [r[-1] for r in rows]
        index = np.arange(len(rows))
        self.train_idx, self.test_idx = train_test_split(
            index, test_size=TEST_SIZE, random_state=SPLIT_SEED,
            stratify=labels if task == "classification" else None)
        # Row ids are 1-based positions in the generated data; sorted so the
        # tables and the arrays below line up.
        self.train_idx, self.test_idx = np.sort(self.train_idx), np.sort(self.test_idx)

    @property
    def features(self):
        return self.columns[:-1]

    def labels(self, idx):
        values = [self.rows[i][-1] for i in idx]
        return np.array(values, dtype=object if self.task == "classification" else np.float64)


def sklearn_dataset(name, loader, task, target, label_names=None):
    bunch = loader()
    names, seen = [], set()
    for feature in bunch.feature_names:
        column = ident(feature)
        while column in seen or column in (target, "id"):
            column += "_"
        seen.add(column)
        names.append(column)
    columns = [(c, "float") for c in names] + [(target, "text" if task == "classification" else "float")]
    rows = []
    for x, y in zip(bunch.data, bunch.target):
        label = str(label_names[int(y)]) if task == "classification" else float(y)
        rows.append(tuple(float(v) for v in x) + (label,))
    return Dataset(name, task, columns, rows)


def mixed_datasets():
    """A customer table: who churns, and what they are worth. Deterministic
    (RandomState(0)); the NULLs are missing at random, the targets depend on
    the true values."""
    rs = np.random.RandomState(0)
    n = MIXED_ROWS
    regions = np.array(["north", "south", "east", "west", "central", "coastal"])
    region = regions[rs.choice(6, n, p=[0.25, 0.2, 0.18, 0.15, 0.12, 0.10])]
    plans = np.array(["basic", "standard", "premium"])
    plan = plans[rs.choice(3, n, p=[0.5, 0.35, 0.15])]
    cities = np.array([f"city_{i:02d}" for i in range(40)])
    city_weights = 1.0 / np.arange(1, 41) ** 0.8
    city_idx = rs.choice(40, n, p=city_weights / city_weights.sum())
    city = cities[city_idx]
    # A few cities (a competitor's footprint) churn more.
    city_effect = np.zeros(40)
    city_effect[[3, 7, 12, 25]] = [0.9, 0.7, 0.8, 1.0]
    age = np.clip(rs.normal(42, 13, n), 18, 90).round()
    tenure = rs.exponential(24, n).round()  # months
    base_spend = {"basic": 25.0, "standard": 55.0, "premium": 110.0}
    monthly_spend = np.array([base_spend[p] for p in plan]) * rs.lognormal(0, 0.25, n)
    support_calls = rs.poisson(1.2 + 1.5 * (plan == "basic"), n).astype(float)
    autopay = rs.rand(n) < 0.55 + 0.15 * (plan == "premium")
    start = datetime.date(2018, 1, 1)
    signup = [start + datetime.timedelta(days=int(d)) for d in rs.randint(0, 7 * 365, n)]
    signup_month = np.array([d.month for d in signup])
    signup_year = np.array([d.year for d in signup])

    region_effect = {"north": 0.0, "south": 0.3, "east": -0.2, "west": 0.1, "central": 0.0, "coastal": 0.5}
    plan_effect = {"basic": 0.8, "standard": 0.0, "premium": -0.6}
    logit = (-0.6
             + np.array([plan_effect[p] for p in plan])
             + np.array([region_effect[r] for r in region])
             + city_effect[city_idx]
             - 0.045 * tenure
             + 0.55 * support_calls
             - 1.0 * autopay
             + 0.012 * (monthly_spend - 50)
             - 0.02 * (age - 42)
             + 0.25 * (signup_year - 2021)
             + 0.5 * np.isin(signup_month, [11, 12]))  # holiday-promo sign-ups leave
    churn = np.where(rs.rand(n) < 1 / (1 + np.exp(-logit)), "churned", "stayed")
    ltv = (monthly_spend * np.minimum(tenure + 12, 72) * (1.15 - 0.3 * (churn == "churned"))
           * (1 + 0.1 * (region == "coastal") - 0.08 * (region == "south"))
           + 400 * autopay + 8 * (age - 42) + rs.normal(0, 250, n))

    def with_nulls(values, fraction):
        values = values.astype(object)
        values[rs.rand(n) < fraction] = None
        return values

    age_n = with_nulls(age, 0.10)
    tenure_n = with_nulls(tenure, 0.10)
    spend_n = with_nulls(monthly_spend.round(2), 0.10)
    calls_n = with_nulls(support_calls, 0.10)
    autopay_n = with_nulls(autopay, 0.05)
    city_n = with_nulls(city, 0.05)
    features = [("region", "text"), ("plan", "text"), ("city", "text"), ("age", "int"),
                ("tenure_months", "int"), ("monthly_spend", "float"), ("support_calls", "int"),
                ("autopay", "bool"), ("signup_date", "date")]

    def row(i, target):
        cast = lambda v, f: None if v is None else f(v)  # noqa: E731
        return (str(region[i]), str(plan[i]), cast(city_n[i], str), cast(age_n[i], int),
                cast(tenure_n[i], int), cast(spend_n[i], float), cast(calls_n[i], int),
                cast(autopay_n[i], bool), signup[i], target)

    note = (f"{n} generated rows: region (6 values), plan (3), city (40, 5 % NULL), age, tenure_months, "
            "monthly_spend, support_calls (10 % NULL each), autopay (boolean, 5 % NULL), signup_date (date)")
    churn_ds = Dataset("mixed_churn", "classification", features + [("churn", "text")],
                       [row(i, str(churn[i])) for i in range(n)], note)
    ltv_ds = Dataset("mixed_ltv", "regression", features + [("lifetime_value", "float")],
                     [row(i, float(round(ltv[i], 2))) for i in range(n)], note)
    return churn_ds, ltv_ds


def load_datasets():
    iris = sklearn_dataset("iris", datasets.load_iris, "classification", "species",
                           datasets.load_iris().target_names)
    wine = sklearn_dataset("wine", datasets.load_wine, "classification", "cultivar",
                           datasets.load_wine().target_names)
    cancer = sklearn_dataset("breast_cancer", datasets.load_breast_cancer, "classification", "diagnosis",
                             datasets.load_breast_cancer().target_names)
    diabetes = sklearn_dataset("diabetes", datasets.load_diabetes, "regression", "progression")
    churn, ltv = mixed_datasets()
    return [iris, wine, cancer, churn, diabetes, ltv]


SQL_TYPES = {"float": "float8", "int": "int4", "text": "text", "bool": "boolean", "date": "date"}


def create_tables(conn, ds):
    for part, idx in (("train", ds.train_idx), ("test", ds.test_idx)):
        table = sql.Identifier(f"{ds.name}_{part}")
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(SQL_TYPES[k])) for c, k in ds.columns)
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {})").format(table, columns))
        names = sql.SQL(", ").join(sql.Identifier(c) for c in ["id"] + [c for c, _ in ds.columns])
        with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, names)) as copy:
            for i in idx:
                copy.write_row((int(i) + 1,) + tuple(ds.rows[i]))
        conn.execute(sql.SQL("ANALYZE {}").format(table))


def ambient_side(conn, ds, algorithm):
    """Trains one project on <name>_train and predicts <name>_test with the row
    form. Returns (score, seconds, internal metrics) or raises."""
    project = f"acc_{ds.name}_{algorithm}"
    started = time.perf_counter()
    model_id, metrics = conn.execute(
        "SELECT model_id, metrics FROM ambient.train(%s, relation => %s::regclass, target => %s,"
        " algorithm => %s, test_size => %s)",
        [project, f"{ds.name}_train", ds.target, algorithm, AMBIENT_TEST_SIZE]).fetchone()
    seconds = time.perf_counter() - started
    function = "ambient.predict_label" if ds.task == "classification" else "ambient.predict"
    rows = conn.execute(sql.SQL("SELECT id, {}(%s, t.*) FROM {} t ORDER BY id").format(
        sql.SQL(function), sql.Identifier(f"{ds.name}_test")), [project]).fetchall()
    ids = [r[0] for r in rows]
    assert ids == [int(i) + 1 for i in ds.test_idx], f"{project}: test ids do not line up"
    predicted = [r[1] for r in rows]
    nulls = sum(p is None for p in predicted)
    if nulls:
        log(f"accuracy: WARNING {project}: {nulls} NULL predictions (counted as wrong)")
    truth = ds.labels(ds.test_idx)
    if ds.task == "classification":
        score = f1_score(truth, np.array(["<NULL>" if p is None else p for p in predicted], dtype=object),
                         average="macro")
    else:
        score = r2_score(truth, np.array([np.nan if p is None else float(p) for p in predicted]))
    return score, seconds, model_id, metrics


def date_parts(epoch_seconds):
    """year, month, day, day of week (0 is Sunday) and hour, as the extension
    derives them from a date or timestamp."""
    secs = np.asarray(epoch_seconds, dtype=np.float64).reshape(-1)
    moment = secs.astype("int64").astype("datetime64[s]")
    year = moment.astype("datetime64[Y]").astype(int) + 1970
    month = moment.astype("datetime64[M]").astype(int) % 12 + 1
    day = (moment.astype("datetime64[D]") - moment.astype("datetime64[M]")).astype(int) + 1
    days = np.floor(secs / 86400)
    dow = (days + 4) % 7  # 1970-01-01 was a Thursday
    hour = np.floor((secs % 86400) / 3600)
    return np.column_stack([year, month, day, dow, hour]).astype(np.float64)


def sklearn_matrix(ds, idx):
    """X for scikit-learn: floats with NaN for NULL; text as object with NaN;
    booleans as 0/1; dates as epoch seconds."""
    X = np.empty((len(idx), len(ds.features)), dtype=object)
    for j, (_, kind) in enumerate(ds.features):
        for r, i in enumerate(idx):
            v = ds.rows[i][j]
            if v is None:
                X[r, j] = np.nan
            elif kind == "date":
                X[r, j] = float((v - datetime.date(1970, 1, 1)).days * 86400)
            elif kind == "text":
                X[r, j] = v
            else:
                X[r, j] = float(v)
    if all(kind != "text" for _, kind in ds.features):
        X = X.astype(np.float64)
    return X


def sklearn_preprocessor(ds):
    kinds = [k for _, k in ds.features]
    if all(k == "float" for k in kinds):
        return None
    by_kind = lambda *ks: [j for j, k in enumerate(kinds) if k in ks]  # noqa: E731
    to_float = FunctionTransformer(lambda X: np.asarray(X, dtype=np.float64))
    parts = []
    if by_kind("float", "int"):
        parts.append(("num", make_pipeline(to_float, SimpleImputer(strategy="median")), by_kind("float", "int")))
    if by_kind("bool"):
        parts.append(("bool", make_pipeline(to_float, SimpleImputer(strategy="most_frequent")), by_kind("bool")))
    if by_kind("text"):
        parts.append(("text", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                            OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                      by_kind("text")))
    for j in by_kind("date"):
        parts.append((f"date{j}", make_pipeline(to_float, SimpleImputer(strategy="median"),
                                                FunctionTransformer(date_parts)), [j]))
    return ColumnTransformer(parts)


def sklearn_side(ds):
    """Returns {"rf": (score, seconds), "hgb": (score, seconds)}."""
    X_train, X_test = sklearn_matrix(ds, ds.train_idx), sklearn_matrix(ds, ds.test_idx)
    y_train, y_test = ds.labels(ds.train_idx), ds.labels(ds.test_idx)
    if ds.task == "classification":
        models = {"rf": RandomForestClassifier(random_state=0), "hgb": HistGradientBoostingClassifier(random_state=0)}
    else:
        models = {"rf": RandomForestRegressor(random_state=0), "hgb": HistGradientBoostingRegressor(random_state=0)}
    results = {}
    for key, model in models.items():
        pre = sklearn_preprocessor(ds)
        estimator = model if pre is None else make_pipeline(pre, model)
        started = time.perf_counter()
        estimator.fit(X_train, y_train)
        seconds = time.perf_counter() - started
        predicted = estimator.predict(X_test)
        score = f1_score(y_test, predicted, average="macro") if ds.task == "classification" \
            else r2_score(y_test, predicted)
        results[key] = (score, seconds)
    return results


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return f"{os.cpu_count()} cores ({cpu})"


def report(all_datasets, algorithms, ours, theirs, versions):
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {machine()}: pg_ambient {versions['ambient']}, "
             f"PostgreSQL {versions['postgres']}, scikit-learn {versions['sklearn']}. "
             f"Algorithms: {', '.join(algorithms)}.", ""]
    for task in ("classification", "regression"):
        group = [ds for ds in all_datasets if ds.task == task]
        bar = BARS[task]
        lines += [f"**{task.capitalize()}, {METRIC[task]} on the test rows**", ""]
        header = ["dataset", "train / test rows"] + [f"pg_ambient {a}" for a in algorithms] + \
                 ["sklearn RF", "sklearn HGB", f"bar (RF − {bar:.2f})",
                  "auto meets bar" if "auto" in algorithms else "best pg_ambient meets bar"] + \
                 (["default (hist_gbm) meets bar", "default − sklearn HGB"] if "hist_gbm" in algorithms else [])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for ds in group:
            cells = [ds.name, f"{len(ds.train_idx)} / {len(ds.test_idx)}"]
            scores = []
            for a in algorithms:
                result = ours[(ds.name, a)]
                if result is None:
                    cells.append("n/a")
                elif isinstance(result, str):
                    cells.append("failed")
                else:
                    cells.append(f"{result[0]:.3f}")
                    scores.append((result[0], a))
            rf, hgb = theirs[ds.name]["rf"][0], theirs[ds.name]["hgb"][0]
            cells += [f"{rf:.3f}", f"{hgb:.3f}", f"{rf - bar:.3f}"]
            # The bar is for `auto`, when it ran; else the best one.
            judged = [sc for sc in scores if sc[1] == "auto"] if "auto" in algorithms else scores
            if judged:
                best, best_algorithm = max(judged)
                cells.append(f"{'yes' if best >= rf - bar else 'NO'} ({best_algorithm} {best:.3f})")
            else:
                cells.append("NO (no model)" if any(isinstance(ours[(ds.name, a)], str) for a in algorithms)
                             else "n/a")
            if "hist_gbm" in algorithms:
                default = ours[(ds.name, "hist_gbm")]
                if isinstance(default, tuple):
                    cells += [f"{'yes' if default[0] >= rf - bar else 'NO'}", f"{default[0] - hgb:+.3f}"]
                else:
                    cells += ["NO (no model)", "n/a"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["**Fit time, seconds** (pg_ambient: the whole `ambient.train` call, wall clock, which also reads "
              "the table and scores its internal test split; scikit-learn: `fit` on arrays already in memory)", ""]
    header = ["dataset"] + [f"pg_ambient {a}" for a in algorithms] + ["sklearn RF", "sklearn HGB"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ds in all_datasets:
        cells = [ds.name]
        for a in algorithms:
            result = ours[(ds.name, a)]
            cells.append("n/a" if result is None else "failed" if isinstance(result, str) else f"{result[1]:.2f}")
        cells += [f"{theirs[ds.name]['rf'][1]:.2f}", f"{theirs[ds.name]['hgb'][1]:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", default="auto,hist_gbm,gbm,random_forest",
                        help="comma-separated pg_ambient algorithms (default: gbm,random_forest)")
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not rewrite {DOC.relative_to(ROOT)}")
    args = parser.parse_args()
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    for a in algorithms:
        if not re.fullmatch(r"[a-z0-9_]+", a):
            parser.error(f"algorithm names are lower-case letters, digits and _: {a!r}")
    if not algorithms:
        parser.error("--algorithms is empty")
    run_started = time.perf_counter()

    all_datasets = load_datasets()
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    ours, theirs, failures = {}, {}, []
    with psycopg.connect(dsn(DB), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_ambient")
        versions = {
            "ambient": conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_ambient'").fetchone()[0],
            "postgres": conn.execute("SHOW server_version").fetchone()[0],
            "sklearn": __import__("sklearn").__version__,
        }
        for ds in all_datasets:
            log(f"accuracy: {ds.name}: loading {len(ds.train_idx)} train / {len(ds.test_idx)} test rows")
            create_tables(conn, ds)
        # An algorithm ambient.algorithms() lists for the other task only is
        # skipped (n/a); one it does not list at all is tried, and fails.
        listed = {}
        try:
            for algorithm, task in conn.execute("SELECT DISTINCT algorithm, task FROM ambient.algorithms()"):
                listed.setdefault(algorithm, set()).add(task)
        except psycopg.errors.UndefinedFunction:  # before 0.2.0: try every algorithm on every dataset
            pass
        for ds in all_datasets:
            for a in algorithms:
                if a in listed and ds.task not in listed[a]:
                    ours[(ds.name, a)] = None
                    continue
                try:
                    score, seconds, model_id, metrics = ambient_side(conn, ds, a)
                except psycopg.Error as e:
                    diag = e.diag
                    message = f"{ds.name} / {a}: ERROR {diag.sqlstate}: {diag.message_primary or str(e).strip()}"
                    message += "".join(f" ({label}: {text})" for label, text in
                                       (("DETAIL", diag.message_detail), ("HINT", diag.message_hint)) if text)
                    log(f"accuracy: FAILED {message}")
                    failures.append(message)
                    ours[(ds.name, a)] = message
                    continue
                internal = (metrics or {}).get("f1" if ds.task == "classification" else "r2")
                log(f"accuracy: {ds.name} / pg_ambient {a}: {score:.4f} on the test rows "
                    f"(model {model_id}, {internal} on its internal split), train {seconds:.2f} s")
                ours[(ds.name, a)] = (score, seconds)
            theirs[ds.name] = sklearn_side(ds)
            log(f"accuracy: {ds.name} / sklearn: RF {theirs[ds.name]['rf'][0]:.4f}, "
                f"HGB {theirs[ds.name]['hgb'][0]:.4f}")

    table = report(all_datasets, algorithms, ours, theirs, versions)
    print(table)
    log(f"accuracy: run took {time.perf_counter() - run_started:.1f} s")
    if failures:
        log("accuracy: train calls failed; docs/accuracy.md left as it was:\n  " + "\n  ".join(failures))
        sys.exit(1)
    if not args.no_write:
        text = DOC.read_text()
        DOC.write_text(text[:text.index(BEGIN) + len(BEGIN)] + "\n" + table + "\n" + text[text.index(END):])
        log(f"accuracy: wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
