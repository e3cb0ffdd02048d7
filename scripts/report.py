#!/usr/bin/env python3
"""`make report`: writes ambient.report_pages() of a database into a folder:
index.html (the overview of every project the role may read) and one page
per project, under the names the overview links to. The pages a previous
run wrote there (listed in the folder's .ambient-report file) and no longer
exist are removed, so a dropped project's page goes; nothing else is.

    scripts/report.py DATABASE FOLDER [SINCE]

Connects as postgres over PGHOST and PGPORT (scripts/config.sh sets them).
"""

import os
import pathlib
import sys

import psycopg


def write_pages(dbname, folder, since="30 days", user="postgres"):
    """Writes every page; returns the paths written, the overview first."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    conninfo = f"host={os.environ.get('PGHOST', '/tmp')} port={os.environ.get('PGPORT', '5432')} dbname={dbname} user={user}"
    written = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        pages = conn.execute("SELECT path, project, html FROM ambient.report_pages(%s::interval)",
                             (since,)).fetchall()
    manifest = folder / ".ambient-report"
    before = set(manifest.read_text().split("\n")) if manifest.exists() else set()
    for path, _project, html in pages:
        target = folder / path
        target.write_text(html, encoding="utf-8")
        written.append(target)
    for stale in before - {p.name for p in written}:
        # Only page names of ours: never a path out of the folder.
        if stale.endswith(".html") and "/" not in stale and not stale.startswith("."):
            (folder / stale).unlink(missing_ok=True)
    manifest.write_text("\n".join(p.name for p in written) + "\n")
    return written


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    dbname, folder = sys.argv[1], sys.argv[2]
    try:
        pages = write_pages(dbname, folder, *sys.argv[3:])
    except psycopg.OperationalError as e:
        sys.exit(f"report: cannot read database {dbname} ({e}); `make demo` makes ambient_demo")
    print(f"report: wrote {len(pages)} pages to {folder}: open {pages[0]}")


if __name__ == "__main__":
    main()
