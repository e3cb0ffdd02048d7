"""SQL in README.md and docs/*.md is executed, so it cannot drift: each ```sql
block runs through psql in a fresh database with the Iris table, in order,
and where a plain ``` block follows it, psql's output must match that block.
AMBIENT_DOCS_UPDATE=1 rewrites the output blocks from a run (review the diff)."""

import os
import re
import subprocess

import pytest

from conftest import PGBIN, ROOT, dsn, fresh_database

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
