"""SQL in README.md and docs/*.md is executed, so it cannot drift: each ```sql
block runs through psql in a fresh database with the Iris table, in order,
and where a plain ``` block follows it, psql's output must match that block.
AMBIENT_DOCS_UPDATE=1 rewrites the output blocks from a run (review the diff)."""

import os
import re

import pytest

from conftest import ROOT, fresh_database, psql

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```sql\n(?P<sql>.*?)```\n(?:\n?```\n(?P<out>.*?)```\n)?", re.S)


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
        actual = psql(database, block["sql"], "--pset=footer=on")
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
