"""SQL in README.md and docs/*.md is executed, so it cannot drift: each ```sql
block runs through psql in a fresh database with the Iris table, in order,
and where a plain ``` block follows it, psql's output must match that block.
AMBIENT_DOCS_UPDATE=1 rewrites the output blocks from a run (review the diff)."""

import os
import re
import subprocess

import pytest

from conftest import PGBIN, ROOT, connect, dsn, fresh_database, run_example

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```sql\n(?P<sql>.*?)```\n(?:\n?```\n(?P<out>.*?)```\n)?", re.S)


def run_block(database, sql):
    """psql's output for one block; if the block fails, its error follows,
    and the expected output must show that error too."""
    result = subprocess.run(
        [str(PGBIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "--pset=footer=on", dsn(database)],
        input=sql, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return result.stdout, False
    return result.stdout + result.stderr.replace("psql:<stdin>", "psql"), True


def normalise(text):
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_sql_examples_run_and_match(doc):
    database = fresh_database("docs_" + doc.stem.lower().replace("-", "_"))
    text = doc.read_text()
    blocks = list(BLOCK.finditer(text))
    assert blocks, f"{doc.name} has no SQL examples"
    rewritten, last = [], 0
    for block in blocks:
        actual, failed = run_block(database, block["sql"])
        if failed and (block["out"] is None or "ERROR:" not in block["out"]) and not os.environ.get("AMBIENT_DOCS_UPDATE"):
            raise AssertionError(f"{doc.name}: this example fails:\n{block['sql']}\n{actual}")
        if block["out"] is not None:
            if os.environ.get("AMBIENT_DOCS_UPDATE"):
                start, end = block.span("out")
                rewritten += [text[last:start], normalise(actual) + "\n"]
                last = end
            else:
                assert normalise(actual) == normalise(block["out"]), (
                    f"{doc.name}: output of\n{block['sql']}\nchanged:\n{actual}")
    if os.environ.get("AMBIENT_DOCS_UPDATE"):
        doc.write_text("".join(rewritten) + text[last:])


TRANSCRIPT = r"(<!-- examples/{name}: begin -->\n```text\n)(?P<out>.*?)(```\n<!-- examples/{name}: end -->)"


def check_transcript(name, out):
    """README.md shows examples/<name>'s output as it is."""
    readme = (ROOT / "README.md").read_text()
    shown = re.compile(TRANSCRIPT.format(name=re.escape(name)), re.S).search(readme)
    assert shown, f"README.md does not show examples/{name}'s transcript"
    if os.environ.get("AMBIENT_DOCS_UPDATE"):
        (ROOT / "README.md").write_text(readme[:shown.start("out")] + normalise(out) + "\n" + readme[shown.end("out"):])
    else:
        assert normalise(shown["out"]) == normalise(out), f"README.md's transcript of examples/{name} is out of date"


def test_the_ambient_example_runs_the_whole_lifecycle_as_the_readme_shows():
    """examples/ambient.sql runs end to end through psql (as `make demo` runs
    it), does what it says at each step, and prints what README.md shows."""
    database = fresh_database("docs_ambient_example")
    out = run_example("ambient.sql", database)
    # Each step did what it announces.
    assert " prediction        | prediction_model_id | defaulted" in out
    assert "nothing to do" in out
    assert 'Asynchronous notification "ambient_alerts"' in out
    assert " acted  | retrain_and_await_approval | " in out
    assert "approved by postgres" in out
    assert " acted  | rollback_if_worse | " in out
    with connect(database) as conn:
        assert conn.execute("SELECT live_version FROM ambient.overview WHERE project = 'loans'").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM ambient.alerts WHERE project = 'loans'").fetchone()[0] == 2
    check_transcript("ambient.sql", out)


def test_the_features_example_runs_the_feature_store_lifecycle_as_the_readme_shows():
    """examples/features.sql: feature sets, a training set, train, attach
    by customer id, a late backfill and an exact rebuild."""
    database = fresh_database("docs_features_example")
    out = run_example("features.sql", database)
    with connect(database) as conn:
        # The attached rows were predicted, as predicting by entity does.
        assert conn.execute("SELECT count(*) FROM visits WHERE prediction::text "
                            "= ambient.predict_label('churn', entity => customer_id)").fetchone()[0] == 4
        # The backfill changed the current training set; the rebuild did not.
        assert conn.execute("SELECT count(*) FROM (SELECT * FROM ambient_training.churn_train "
                            "EXCEPT SELECT * FROM churn_seen) d").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM (SELECT * FROM ambient_training.churn_as_trained "
                            "EXCEPT SELECT * FROM churn_seen) d").fetchone()[0] == 0
        assert conn.execute("SELECT count(DISTINCT artifact_sha256) FROM ambient.models "
                            "WHERE project IN ('churn', 'churn_rebuilt')").fetchone()[0] == 1
    check_transcript("features.sql", out)


def test_the_history_example_walks_a_project_through_its_history_as_the_readme_shows():
    """examples/history.sql: a retrain by policy, the log, a diff, tags, a
    reproduction from a copy and one that finds the data changed, the
    lineage of a stored prediction, the source guard and the audit trail."""
    database = fresh_database("docs_history_example")
    out = run_example("history.sql", database)
    assert " acted  | retrain_and_deploy_if_better | " in out
    assert "cannot drop public.pump_readings" in out
    with connect(database) as conn:
        assert conn.execute("SELECT valid FROM ambient.verify_audit()").fetchone()[0]
        assert conn.execute("SELECT live_version FROM ambient.overview WHERE project = 'pumps'").fetchone()[0] == 3
        assert conn.execute("SELECT array_agg(identical ORDER BY position) FROM ambient.audit a, "
                            "LATERAL (SELECT (a.details ->> 'identical')::boolean) d(identical) "
                            "WHERE action = 'reproduce'").fetchone()[0] == [True, False]
        # The reproductions left no model behind.
        assert conn.execute("SELECT count(*) FROM ambient.models WHERE project = 'pumps'").fetchone()[0] == 3
    check_transcript("history.sql", out)
