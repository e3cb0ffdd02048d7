"""Fixtures for tests driven by real clients (psycopg, psql, pg_dump) against
the private cluster that scripts/cluster.sh started, with the extension
installed. PGHOST and PGPORT come from scripts/config.sh via the Makefile."""

import os
import pathlib
import re
import shutil
import subprocess

import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PGBIN = pathlib.Path("/usr/lib/postgresql/15/bin")


def dsn(dbname: str) -> str:
    return f"host={os.environ.get('PGHOST', '/tmp')} port={os.environ['PGPORT']} user=postgres dbname={dbname}"


def psql(dbname: str, sql: str, *extra: str) -> str:
    """Runs SQL through the real psql client and returns what it prints."""
    result = subprocess.run(
        [str(PGBIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", *extra, dsn(dbname)],
        input=sql, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"psql failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def fresh_database(name: str) -> str:
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    psql(name, "CREATE EXTENSION pg_ambient;", "-q")
    psql(name, (ROOT / "examples" / "iris.sql").read_text(), "-q")
    return name


@pytest.fixture
def database(request) -> str:
    """A new database with pg_ambient and the Iris table, named after the test."""
    return fresh_database("it_" + request.node.name[:50].lower())


def run_example(name, database):
    """psql's output for examples/<name>, run as `make demo` runs it."""
    result = subprocess.run(
        [str(PGBIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-f", str(ROOT / "examples" / name), dsn(database)],
        capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return re.sub(r"server process with PID \d+", "server process with PID <pid>", result.stdout)


def connect(dbname: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(dsn(dbname), **kwargs)


def train_tree_and_stump(dbname: str) -> int:
    """Trains the 'iris' project: a full tree (deployed) and a depth-1 stump
    (not deployed) that answers differently. Returns the stump's model id."""
    with connect(dbname, autocommit=True) as conn:
        conn.execute("SELECT * FROM ambient.train('iris', relation => 'iris', target => 'species', algorithm => 'decision_tree')")
        return conn.execute(
            "SELECT model_id FROM ambient.train('iris', relation => 'iris', "
            "hyperparams => '{\"max_depth\": 1}', deploy => 'never', algorithm => 'decision_tree')").fetchone()[0]


PRIVATE_PORT = int(os.environ["PGPORT"]) + 2
PRIVATE_DIR = ROOT / "target" / "ambient-private"


def as_postgres(*command):
    result = subprocess.run(["runuser", "-u", "postgres", "--", "env", "-u", "RUST_BACKTRACE", *command],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def pg_ctl(*args):
    return as_postgres(str(PGBIN / "pg_ctl"), "-D", str(PRIVATE_DIR), *args)


def stop_private():
    if (PRIVATE_DIR / "PG_VERSION").exists():
        subprocess.run(["runuser", "-u", "postgres", "--", str(PGBIN / "pg_ctl"), "-D", str(PRIVATE_DIR),
                        "-m", "immediate", "stop"], capture_output=True, check=False)
    shutil.rmtree(PRIVATE_DIR, ignore_errors=True)


@pytest.fixture
def private_cluster(database):
    """Makes a copy of the test cluster as it is now (pg_basebackup),
    running on its own port, which a test may stop, crash and edit below
    Postgres; returns its dsn for `database`."""
    def copy():
        stop_private()
        PRIVATE_DIR.mkdir(mode=0o700, parents=True)
        shutil.chown(PRIVATE_DIR, "postgres", "postgres")
        as_postgres(str(PGBIN / "pg_basebackup"), "-h", os.environ.get("PGHOST", "/tmp"),
                    "-p", os.environ["PGPORT"], "-U", "postgres", "-D", str(PRIVATE_DIR), "-X", "stream",
                    "-c", "fast")
        with open(PRIVATE_DIR / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {PRIVATE_PORT}\n")
        pg_ctl("-l", str(PRIVATE_DIR / "server.log"), "-w", "start")
        return f"host={os.environ.get('PGHOST', '/tmp')} port={PRIVATE_PORT} user=postgres dbname={database}"
    yield copy
    stop_private()


def dump_and_restore(database, tmp_path) -> str:
    """pg_dump -Fc of `database`, restored with pg_restore into a new
    database, whose name it returns."""
    dump = tmp_path / f"{database}.dump"
    subprocess.run([str(PGBIN / "pg_dump"), "-Fc", "-f", str(dump), dsn(database)], check=True)
    restored = database + "_restored"
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{restored}"')
    subprocess.run([str(PGBIN / "pg_restore"), "--exit-on-error", "-d", dsn(restored), str(dump)], check=True)
    return restored
