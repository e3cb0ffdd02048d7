"""Upgrades keep data: each released version is built from its commit and
installed, trained on and deployed with, then the current version is
installed and `ALTER EXTENSION pg_ambient UPDATE` must keep every model
predicting as before and leave exactly the catalog a fresh install makes.

Run by `make upgrade` (after the other suites: it swaps the installed
library, then puts the current one back)."""

import os
import pathlib
import re
import subprocess
import sys

import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from conftest import connect, dsn, psql  # noqa: E402

RELEASES = re.findall(r'^"([0-9.]+)" = "[0-9a-f]{40}"', (ROOT / "sql" / "releases.toml").read_text(), re.M)
CURRENT = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)

# Everything the extension owns, one line per fact, so two databases can be
# compared line by line.
CATALOG = r"""
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'pg_ambient'),
members AS (
  SELECT classid, objid FROM pg_depend, ext
   WHERE refclassid = 'pg_extension'::regclass AND refobjid = ext.oid AND deptype = 'e')
SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM members
UNION ALL
SELECT format('comment on %s: %s', pg_describe_object(classid, objid, 0), obj_description(objid, classid::regclass::text))
  FROM members WHERE obj_description(objid, classid::regclass::text) IS NOT NULL
UNION ALL
SELECT 'function ' || pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl::text, '-')
       || ' cost=' || p.procost
  FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
UNION ALL
SELECT format('relation %s kind=%s acl=%s options=%s', c.oid::regclass, c.relkind,
              coalesce(c.relacl::text, '-'), coalesce(c.reloptions::text, '-'))
  FROM pg_class c WHERE c.relnamespace = 'ambient'::regnamespace
UNION ALL
SELECT format('column %s.%s #%s %s notnull=%s default=%s', c.oid::regclass, a.attname, a.attnum,
              format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'ambient'::regnamespace
UNION ALL
SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
  FROM pg_constraint WHERE connamespace = 'ambient'::regnamespace
UNION ALL
SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index
 WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'ambient'::regnamespace)
UNION ALL
SELECT format('view %s %s', c.oid::regclass, pg_get_viewdef(c.oid))
  FROM pg_class c WHERE c.relnamespace = 'ambient'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT format('dumped %s where %s', cfg::regclass, cond)
  FROM pg_extension, unnest(extconfig, extcondition) AS u(cfg, cond) WHERE extname = 'pg_ambient'
ORDER BY 1
"""


def catalog(dbname):
    with connect(dbname) as conn:
        return [row[0] for row in conn.execute(CATALOG)]


def fresh(dbname):
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')


def predictions(dbname):
    """Every form of predict over every Iris row, as one list."""
    with connect(dbname) as conn:
        return conn.execute("""
            SELECT i.id, ambient.predict_label('iris', i.*),
                   ambient.predict('iris', ARRAY[sepal_length, sepal_width, petal_length, petal_width]),
                   ambient.predict_proba('iris', i.*),
                   ambient.predict_label(m.model_id, ARRAY[sepal_length, sepal_width, petal_length, petal_width]),
                   ambient.predict('lines', l.*)
              FROM iris i
              JOIN (SELECT g AS id, g::float8 AS a, (g % 7)::float8 AS b FROM generate_series(1, 150) g) l USING (id),
                   (SELECT min(model_id) AS model_id FROM ambient.models WHERE project = 'iris') m
             ORDER BY i.id""").fetchall()


def test_every_release_has_an_upgrade_path_to_the_current_version():
    """Fails when the control file's version cannot be reached from a release."""
    scripts = {p.name for p in (ROOT / "sql").glob("pg_ambient--*--*.sql")}
    assert RELEASES, "sql/releases.toml lists no release"
    for release in RELEASES:
        assert (ROOT / "sql" / f"pg_ambient--{release}.sql").exists(), f"{release}'s install script is not kept"
        version, steps = release, 0
        while version != CURRENT:
            nexts = [s.split("--")[2][:-4] for s in scripts if s.startswith(f"pg_ambient--{version}--")]
            assert len(nexts) == 1, f"no single upgrade script from {version} (towards {CURRENT})"
            version, steps = nexts[0], steps + 1
            assert steps < 50


@pytest.mark.parametrize("release", [r for r in RELEASES if r != CURRENT])
def test_upgrade_keeps_models_and_matches_a_fresh_install(release):
    db = "upgrade_from_" + release.replace(".", "_")
    subprocess.run([str(ROOT / "scripts" / "install-release.sh"), release], check=True)
    try:
        # The role below is cluster-wide: the other releases' databases,
        # which grant it, go first.
        with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
            for (other,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'upgrade\\_%'").fetchall():
                conn.execute(f'DROP DATABASE "{other}" WITH (FORCE)')
        fresh(db)
        psql(db, f"CREATE EXTENSION pg_ambient VERSION '{release}';", "-q")
        psql(db, (ROOT / "examples" / "iris.sql").read_text(), "-q")
        psql(db, """
            DROP ROLE IF EXISTS upgrade_owner;
            CREATE ROLE upgrade_owner;
            GRANT SELECT ON iris TO upgrade_owner;
            CREATE TABLE lines AS SELECT g AS id, g::float8 AS a, (g % 7)::float8 AS b,
                   3 + 2 * g - (g % 7) + (g % 3) * 0.1 AS y FROM generate_series(1, 150) g;
            GRANT SELECT ON lines TO upgrade_owner;
            SET ROLE upgrade_owner;
            SELECT * FROM ambient.train('iris', relation => 'iris', target => 'species', algorithm => 'decision_tree');
            SELECT * FROM ambient.train('iris', relation => 'iris', hyperparams => '{"max_depth": 1}', deploy => 'never', algorithm => 'decision_tree');
            SELECT ambient.deploy('iris', 'most_recent');
            SELECT ambient.rollback('iris');
            SELECT * FROM ambient.train('lines', relation => 'lines', target => 'y', algorithm => 'linear_regression');
            """, "-q")
        if release != "0.1.0":
            # 0.2.0's ambient operations, with data: an attached table with
            # labelled rows (and 0.2.0's label triggers and outcome log),
            # a policy that ran, a monitor run.
            psql(db, """
                SET ROLE upgrade_owner;
                SET ambient.progress = off;
                SELECT * FROM ambient.train('lines_default', relation => 'lines', target => 'y');
                SELECT ambient.set_policy('iris', '{"action": "retrain", "retrain_after_changed_rows": 1}');
                RESET ROLE;
                CREATE TABLE arrivals (id int PRIMARY KEY, sepal_length float8, sepal_width float8,
                                       petal_length float8, petal_width float8, species text);
                SELECT * FROM ambient.attach('iris', 'arrivals');
                INSERT INTO arrivals SELECT id, sepal_length, sepal_width, petal_length, petal_width, species
                  FROM iris WHERE id <= 100;
                SELECT * FROM ambient.monitor('iris');
                SELECT * FROM ambient.run_policy('iris');
                """, "-q")
        before = predictions(db)
        before_history = psql(db, "SELECT deployment_id, model_id, strategy FROM ambient.deployments ORDER BY 1;")
    finally:
        # Put the current version back whatever happened.
        subprocess.run(["make", "-s", "install"], cwd=ROOT, check=True)

    psql(db, "ALTER EXTENSION pg_ambient UPDATE;", "-q")
    with connect(db) as conn:
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_ambient'").fetchone()[0] == CURRENT
    assert predictions(db) == before
    assert psql(db, "SELECT deployment_id, model_id, strategy FROM ambient.deployments ORDER BY 1;") == before_history

    # The owner was a name and is now a role, with its rights intact.
    with connect(db) as conn:
        assert conn.execute("SELECT owner::text FROM ambient.overview WHERE project = 'iris'").fetchone()[0] == "upgrade_owner"
    if release != "0.1.0":
        # The attached table takes writes through the upgrade, its label
        # triggers are gone, and monitor counts every labelled row from
        # the table, old and new.
        psql(db, "INSERT INTO arrivals SELECT id, sepal_length, sepal_width, petal_length, petal_width, species"
                 " FROM iris WHERE id > 100;", "-q")
        with connect(db) as conn:
            assert conn.execute("SELECT count(*), count(prediction) FROM arrivals").fetchone() == (150, 150)
            assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'arrivals'::regclass"
                                " AND NOT tgisinternal").fetchone()[0] == 1
            assert conn.execute("SELECT sum(labelled_rows) FROM ambient.monitor('iris')").fetchone()[0] == 150
            # A definition that left the algorithm to 0.2.0's default names
            # gbm, which fitted it, not 0.3.0's default.
            assert conn.execute("SELECT m.request->>'algorithm' FROM ambient.model_store m"
                                " JOIN ambient.models v ON v.model_id = m.id"
                                " WHERE v.project = 'lines_default'").fetchone()[0] == "gbm"
            # Existing definitions run as the project's owner from now on.
            assert {r[0] for r in conn.execute("SELECT DISTINCT definition_role::text FROM ambient.model_store"
                                               " WHERE request IS NOT NULL")} == {"upgrade_owner"}
        psql(db, "INSERT INTO iris (sepal_length, sepal_width, petal_length, petal_width, species)"
                 " VALUES (5.0, 3.4, 1.5, 0.2, 'setosa');"
                 " SELECT status FROM ambient.run_policy('iris');", "-q")
        with connect(db) as conn:
            assert conn.execute("SELECT status FROM ambient.policy_runs WHERE project = 'iris'"
                                " ORDER BY run_id DESC LIMIT 1").fetchone()[0] == "acted"
    psql(db, "SET ROLE upgrade_owner; SELECT ambient.deploy('iris', 'most_recent');", "-q")
    with pytest.raises(AssertionError, match="project \"iris\" does not exist"):
        psql(db, "DROP ROLE IF EXISTS upgrade_stranger; CREATE ROLE upgrade_stranger;"
                 " SET ROLE upgrade_stranger; SELECT ambient.rollback('iris');", "-q")

    fresh_db = "upgrade_fresh_" + CURRENT.replace(".", "_")
    fresh(fresh_db)
    psql(fresh_db, "CREATE EXTENSION pg_ambient;", "-q")
    upgraded, installed = catalog(db), catalog(fresh_db)
    missing = sorted(set(installed) - set(upgraded))
    extra = sorted(set(upgraded) - set(installed))
    assert not missing and not extra, "upgraded catalog differs from a fresh install:\n" + "\n".join(
        ["only in fresh: " + m for m in missing] + ["only in upgraded: " + e for e in extra])
    assert len(upgraded) == len(installed)
