"""SQL in README.md and docs/*.md is executed, so it cannot drift: each ```sql
block runs through psql in a fresh database with the Iris table, in order,
and where a plain ``` block follows it, psql's output must match that block.
AMBIENT_DOCS_UPDATE=1 rewrites the output blocks from a run (review the diff)."""

import os
import re
import subprocess

import pytest

from conftest import PGBIN, ROOT, connect, dsn, fresh_database

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


EXAMPLE = ROOT / "examples" / "ambient.sql"
TRANSCRIPT = re.compile(r"(<!-- examples/ambient\.sql: begin -->\n```text\n)(?P<out>.*?)(```\n<!-- examples/ambient\.sql: end -->)", re.S)


def test_the_ambient_example_runs_the_whole_lifecycle_as_the_readme_shows():
    """examples/ambient.sql runs end to end through psql (as `make demo` runs
    it), does what it says at each step, and prints what README.md shows."""
    database = fresh_database("docs_ambient_example")
    result = subprocess.run(
        [str(PGBIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-f", str(EXAMPLE), dsn(database)],
        capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = re.sub(r"server process with PID \d+", "server process with PID <pid>", result.stdout)
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
    readme = (ROOT / "README.md").read_text()
    shown = TRANSCRIPT.search(readme)
    assert shown, "README.md does not show examples/ambient.sql's transcript"
    if os.environ.get("AMBIENT_DOCS_UPDATE"):
        (ROOT / "README.md").write_text(readme[:shown.start("out")] + normalise(out) + "\n" + readme[shown.end("out"):])
    else:
        assert normalise(shown["out"]) == normalise(out), "README.md's transcript of examples/ambient.sql is out of date"
