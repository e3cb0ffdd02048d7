"""Models are rows, so they travel in the WAL: train and deploy on the
primary, predict on a real streaming hot standby made with pg_basebackup."""

import os
import shutil
import subprocess
import time

import psycopg
import pytest

from conftest import PGBIN, ROOT, as_postgres, connect, train_tree_and_stump

STANDBY_PORT = int(os.environ["PGPORT"]) + 1
STANDBY_DIR = ROOT / "target" / "ambient-standby"
POINT = [7.7, 3.0, 6.1, 2.3]


def stop_standby():
    if (STANDBY_DIR / "PG_VERSION").exists():
        subprocess.run(["runuser", "-u", "postgres", "--", str(PGBIN / "pg_ctl"), "-D", str(STANDBY_DIR),
                        "-m", "immediate", "stop"], capture_output=True, check=False)
    shutil.rmtree(STANDBY_DIR, ignore_errors=True)


@pytest.fixture
def standby():
    stop_standby()
    # The data dir belongs to postgres, which runs the standby.
    STANDBY_DIR.mkdir(mode=0o700, parents=True)
    shutil.chown(STANDBY_DIR, "postgres", "postgres")
    as_postgres(str(PGBIN / "pg_basebackup"), "-h", os.environ.get("PGHOST", "/tmp"), "-p", os.environ["PGPORT"],
                "-U", "postgres", "-D", str(STANDBY_DIR), "-R", "-X", "stream", "-c", "fast")
    with open(STANDBY_DIR / "postgresql.conf", "a") as conf:
        conf.write(f"\nport = {STANDBY_PORT}\nhot_standby = on\n")
    as_postgres(str(PGBIN / "pg_ctl"), "-D", str(STANDBY_DIR), "-l", str(STANDBY_DIR / "server.log"), "-w", "start")
    yield
    stop_standby()


def standby_dsn(dbname):
    return f"host={os.environ.get('PGHOST', '/tmp')} port={STANDBY_PORT} user=postgres dbname={dbname}"


def wait_for_replay(database):
    with connect(database, autocommit=True) as primary:
        target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(standby_dsn("postgres"), autocommit=True) as replica:
                if replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]).fetchone()[0]:
                    return
        except psycopg.OperationalError:
            pass
        time.sleep(0.1)
    raise AssertionError("the standby did not catch up within 60 s")


def label(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT ambient.predict_label('iris', %s::float8[])", [POINT]).fetchone()[0]


def test_predict_on_a_hot_standby(database, standby):
    stump = train_tree_and_stump(database)
    wait_for_replay(database)
    replica = standby_dsn(database)
    with psycopg.connect(replica, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        on_standby = conn.execute(
            "SELECT array_agg(ambient.predict_label('iris', i.*) ORDER BY id) FROM iris i").fetchone()[0]
        # Nothing that writes works there.
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("SELECT ambient.deploy('iris', %s)", [stump])
    with connect(database, autocommit=True) as conn:
        on_primary = conn.execute(
            "SELECT array_agg(ambient.predict_label('iris', i.*) ORDER BY id) FROM iris i").fetchone()[0]
    assert on_standby == on_primary
    assert label(replica) == "virginica"

    # A deploy on the primary reaches the standby's next statement once replayed.
    with connect(database, autocommit=True) as conn:
        conn.execute("SELECT ambient.deploy('iris', %s)", [stump])
    wait_for_replay(database)
    assert label(replica) == "versicolor"
    with connect(database, autocommit=True) as conn:
        conn.execute("SELECT ambient.rollback('iris')")
    wait_for_replay(database)
    assert label(replica) == "virginica"
