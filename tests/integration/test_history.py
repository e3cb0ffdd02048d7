"""History you can audit, from real clients: the audit trail survives
pg_dump and restore and chains on; a data file edited below Postgres shows
up in verify_audit(); concurrent commits chain in commit order, under READ
COMMITTED and REPEATABLE READ; readers see only what they may read; the
source guard holds for roles and feature sets."""

import threading

import psycopg
import pytest

from conftest import (PGBIN, PRIVATE_DIR, as_postgres, connect, dsn, dump_and_restore, pg_ctl, psql,
                      train_tree_and_stump)

def verify(conninfo):
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute("SELECT entries, valid, first_bad_position, problem, head_sha256 "
                            "FROM ambient.verify_audit()").fetchone()


def history(database):
    psql(database, """
        SELECT * FROM ambient.train('iris', relation => 'iris', target => 'species', algorithm => 'decision_tree');
        SELECT * FROM ambient.train('iris', relation => 'iris', hyperparams => '{"max_depth": 1}',
                                    algorithm => 'decision_tree', deploy => 'never');
        SELECT ambient.tag(m.model_id, 'stump') FROM ambient.models m WHERE m.project = 'iris' AND m.version = 2;
        SELECT ambient.deploy('iris', 'iris@stump', reason => 'try the stump');
        SELECT ambient.rollback('iris', reason => 'the stump was worse');
    """, "-q")


def test_audit_survives_dump_and_restore_and_chains_on(database, tmp_path):
    history(database)
    before = verify(dsn(database))
    assert before[1] and before[0] == 7, before
    with connect(database) as conn:
        entries = conn.execute("SELECT position, action, reason, details, entry_sha256 "
                               "FROM ambient.audit ORDER BY position").fetchall()
    restored = dump_and_restore(database, tmp_path)
    assert verify(dsn(restored)) == before
    with connect(restored, autocommit=True) as conn:
        assert conn.execute("SELECT position, action, reason, details, entry_sha256 "
                            "FROM ambient.audit ORDER BY position").fetchall() == entries
        # The chain goes on from the restored head.
        conn.execute("SELECT ambient.deploy('iris', 'iris@stump', reason => 'after the restore')")
        after = conn.execute("SELECT entries, valid, head_sha256 FROM ambient.verify_audit()").fetchone()
        assert after[0] == 8 and after[1] and after[2] != before[4]
        prev = conn.execute("SELECT prev_sha256 FROM ambient.audit_log WHERE position = 8").fetchone()[0]
        assert prev == before[4]


def test_a_data_file_edited_below_postgres_shows_in_verify_audit(database, private_cluster):
    history(database)
    private = private_cluster()
    with psycopg.connect(private, autocommit=True) as conn:
        assert conn.execute("SELECT valid FROM ambient.verify_audit()").fetchone()[0]
        path = conn.execute("SELECT pg_relation_filepath('ambient.audit_log')").fetchone()[0]
        position = conn.execute("SELECT position FROM ambient.audit_log "
                                "WHERE reason = 'the stump was worse'").fetchone()[0]
        checksums = conn.execute("SHOW data_checksums").fetchone()[0] == "on"
        conn.execute("CHECKPOINT")
    pg_ctl("-m", "fast", "-w", "stop")
    if checksums:
        as_postgres(str(PGBIN / "pg_checksums"), "--disable", "-D", str(PRIVATE_DIR))
    heap = PRIVATE_DIR / path
    data = heap.read_bytes()
    # The entry as inserted and as chained (an update leaves the old
    # version until vacuum): both are edited. Same length, so the tuples
    # stay well formed: only their content lies.
    assert data.count(b"the stump was worse") >= 1
    heap.write_bytes(data.replace(b"the stump was worse", b"the stump was great"))
    pg_ctl("-l", str(PRIVATE_DIR / "server.log"), "-w", "start")
    entries, valid, first_bad, problem, head = verify(private)
    assert not valid and first_bad == position and head is None
    assert problem == f"entry {position} was changed after it was written"
    with psycopg.connect(private, autocommit=True) as conn:
        assert conn.execute("SELECT reason FROM ambient.audit WHERE position = %s",
                            [position]).fetchone()[0] == "the stump was great"


def test_no_role_changes_the_trail_even_with_triggers_replica_mode(database):
    history(database)
    with connect(database, autocommit=True) as conn:
        for statement in ["UPDATE ambient.audit_log SET reason = 'x'",
                          "DELETE FROM ambient.audit_log",
                          "TRUNCATE ambient.audit_log"]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
            # session_replication_role = replica skips ordinary triggers, not these.
            conn.execute("SET session_replication_role = replica")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
            conn.execute("RESET session_replication_role")
        # A superuser who turns the triggers off can change it: verify shows it.
        with conn.transaction():
            conn.execute("ALTER TABLE ambient.audit_log DISABLE TRIGGER USER")
            conn.execute("DELETE FROM ambient.audit_log WHERE position = 3")
            assert conn.execute("SELECT valid, problem FROM ambient.verify_audit()").fetchone() == \
                (False, "entry 3 is missing")
            raise psycopg.Rollback()
        assert conn.execute("SELECT valid FROM ambient.verify_audit()").fetchone()[0]


def test_concurrent_changes_chain_in_commit_order(database):
    """Eight sessions tag models at once, each in a project of its own (a
    REPEATABLE READ change of a project another session changed fails with
    40001 by design), half of them under REPEATABLE READ begun before the
    others commit: every entry is chained, once, with no gap and no fork."""
    models = {}
    with connect(database, autocommit=True) as conn:
        for k in range(8):
            models[k] = [conn.execute(
                "SELECT model_id FROM ambient.train(%s, relation => 'iris', target => 'species', "
                "algorithm => 'decision_tree', hyperparams => %s, deploy => 'never')",
                [f"p{k}", f'{{"max_depth": {depth}}}']).fetchone()[0] for depth in (1, 2)]
        before = conn.execute("SELECT count(*) FROM ambient.audit_log").fetchone()[0]
    errors = []
    start = threading.Barrier(8)

    def work(k):
        try:
            with connect(database) as conn:
                if k % 2:
                    # psycopg opens the transaction: at this level, with
                    # its snapshot taken before the others commit.
                    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                    conn.execute("SELECT count(*) FROM ambient.audit").fetchone()
                    assert conn.execute("SHOW transaction_isolation").fetchone()[0] == "repeatable read"
                start.wait()
                for i in range(10):
                    conn.execute("SELECT ambient.tag(%s, 'moving')", [models[k][i % 2]])
                    if k % 2 == 0:
                        conn.commit()
                conn.commit()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    entries, valid, _, problem, _ = verify(dsn(database))
    assert valid, problem
    with connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM ambient.audit_log").fetchone()[0] == entries == before + 80
        # Each REPEATABLE READ session's ten entries chained after entries
        # committed since its snapshot was taken.
        assert conn.execute("SELECT count(*) FROM ambient.audit_log WHERE position IS NULL").fetchone()[0] == 0


def test_readers_see_only_what_they_may_read(database):
    history(database)
    psql(database, """
        DROP ROLE IF EXISTS hist_reader; DROP ROLE IF EXISTS hist_stranger;
        CREATE ROLE hist_reader; CREATE ROLE hist_stranger;
        GRANT SELECT ON iris TO hist_stranger;
        SET ROLE hist_stranger;
        SELECT * FROM ambient.train('own', relation => 'iris', target => 'species', algorithm => 'decision_tree');
        RESET ROLE;
        SELECT ambient.grant('iris', 'hist_reader', 'read');
    """, "-q")
    try:
        with connect(database, autocommit=True) as conn:
            conn.execute("SET ROLE hist_reader")
            assert {r[0] for r in conn.execute("SELECT DISTINCT project FROM ambient.audit")} == {"iris"}
            conn.execute("RESET ROLE")
            conn.execute("SET ROLE hist_stranger")
            assert {r[0] for r in conn.execute("SELECT DISTINCT project FROM ambient.audit")} == {"own"}
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM ambient.audit_log")
            # A project a role may not see answers as one that does not exist.
            with pytest.raises(psycopg.errors.UndefinedObject):
                conn.execute("SELECT ambient.release('iris')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM ambient.diff(1, 2)")
            # Nor can it take the audit chain's lock through a trigger of its own.
            conn.execute("CREATE TEMP TABLE t (id bigint, position bigint)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TRIGGER x AFTER INSERT ON t FOR EACH ROW "
                             "EXECUTE FUNCTION ambient.chain_audit_entry()")
            # Nor make a project whose name would stand in for a tag.
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="cannot contain '@'"):
                conn.execute("SELECT * FROM ambient.train('iris@stump', relation => 'iris', target => 'species')")
            conn.execute("RESET ROLE")
            # Its model on the iris table (which postgres owns, and whose
            # owner has its privileges) is guarded; a model of a role on a
            # table someone else owns does not pin that table.
            conn.execute("CREATE TABLE stranger_copy AS SELECT * FROM iris")
            conn.execute("ALTER TABLE stranger_copy OWNER TO hist_stranger")
            conn.execute("GRANT SELECT ON stranger_copy TO hist_reader")
            conn.execute("SET ROLE hist_reader")
            conn.execute("SELECT * FROM ambient.train('readers', relation => 'stranger_copy', "
                         "target => 'species', algorithm => 'decision_tree')")
            conn.execute("RESET ROLE")
            conn.execute("SET ROLE hist_stranger")
            conn.execute("ALTER TABLE stranger_copy RENAME COLUMN petal_width TO width")
            conn.execute("DROP TABLE stranger_copy")
            conn.execute("RESET ROLE")
            # A dropped project's entries stay with its owner.
            conn.execute("SET ROLE hist_stranger")
            conn.execute("SELECT ambient.drop_project('own', force => true)")
            actions = [r[0] for r in conn.execute(
                "SELECT action FROM ambient.audit WHERE project = 'own' ORDER BY position")]
            assert actions == ["create project", "train", "deploy", "drop project"]
            conn.execute("RESET ROLE")
    finally:
        psql(database, "DROP OWNED BY hist_reader, hist_stranger; DROP ROLE hist_reader, hist_stranger;", "-q")


def test_the_guard_keeps_a_feature_sets_view_source(database):
    psql(database, """
        CREATE TABLE petals AS SELECT id, now() - id * interval '1 hour' AS seen_at, petal_length FROM iris;
        CREATE VIEW petal_view AS SELECT id, seen_at, petal_length FROM petals;
        SELECT feature_set FROM ambient.create_feature_set('petal_set', 'petal_view', '{id}', 'seen_at');
        CREATE TABLE petal_query_src AS SELECT *, 'long'::text AS kind FROM petals;
        SELECT feature_set FROM ambient.create_feature_set(
            'petal_q', 'SELECT id, seen_at, petal_length, kind FROM petal_query_src', '{id}', 'seen_at');
    """, "-q")
    with connect(database, autocommit=True) as conn:
        for statement in ["DROP VIEW petal_view",
                          "DROP TABLE petals CASCADE",
                          "DROP TABLE petal_query_src",
                          "ALTER TABLE petal_query_src ALTER COLUMN petal_length TYPE text",
                          "ALTER TABLE petal_query_src RENAME COLUMN petal_length TO length"]:
            with pytest.raises(psycopg.errors.DependentObjectsStillExist, match="feature set"):
                conn.execute(statement)
        # A change that keeps what the sets read (a text column among them,
        # which sets record schema-qualified) is fine.
        conn.execute("ALTER TABLE petal_query_src ADD COLUMN note text")
        conn.execute("ALTER TABLE petals ADD PRIMARY KEY (id)")
        conn.execute("SELECT ambient.drop_feature_set('petal_q')")
        conn.execute("DROP TABLE petal_query_src")


def test_a_tag_moves_atomically_under_predicting_sessions(database):
    """Four sessions predict by tag while a fifth moves the tag back and
    forth: every answer is one of the two tagged models', never an error."""
    stump = train_tree_and_stump(database)
    point = [6.3, 2.5, 5.0, 1.9]
    with connect(database, autocommit=True) as conn:
        tree = conn.execute("SELECT model_id FROM ambient.models WHERE project = 'iris' AND live").fetchone()[0]
        answers = {m: conn.execute("SELECT ambient.predict_proba(%s, %s::float8[])", [m, point]).fetchone()[0]
                   for m in (tree, stump)}
        assert answers[tree] != answers[stump]
        conn.execute("SELECT ambient.tag(%s, 'champion')", [tree])
    seen, errors, stop = [], [], threading.Event()

    def predict():
        try:
            with connect(database, autocommit=True) as conn:
                while not stop.is_set():
                    seen.append(conn.execute("SELECT ambient.predict_proba('iris@champion', %s::float8[])",
                                             [point]).fetchone()[0])
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    readers = [threading.Thread(target=predict) for _ in range(4)]
    for r in readers:
        r.start()
    with connect(database, autocommit=True) as conn:
        for i in range(40):
            conn.execute("SELECT ambient.tag(%s, 'champion')", [stump if i % 2 == 0 else tree])
    stop.set()
    for r in readers:
        r.join()
    assert not errors, errors
    assert seen and all(answer in answers.values() for answer in seen)
    # Both were served while the tag moved, and all 41 moves are audited.
    assert {tuple(a) for a in seen} == {tuple(a) for a in answers.values()}
    with connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM ambient.audit WHERE action = 'tag'").fetchone()[0] == 41


def test_a_copy_of_rows_is_read_under_the_projects_rules_survives_dump_and_reproduces(database, tmp_path):
    psql(database, """
        SET ambient.progress = off;
        CREATE TABLE blooms AS SELECT * FROM iris;
        SELECT * FROM ambient.train('kept', relation => 'blooms', target => 'species',
                                    algorithm => 'random_forest', snapshot => 'copy');
        DROP ROLE IF EXISTS copy_reader; DROP ROLE IF EXISTS copy_stranger;
        CREATE ROLE copy_reader; CREATE ROLE copy_stranger;
        SELECT ambient.grant('kept', 'copy_reader', 'read');
        -- The source goes: the copy is what is left of the rows.
        SELECT ambient.release('kept');
        DROP TABLE blooms;
    """, "-q")
    try:
        with connect(database, autocommit=True) as conn:
            copy, model = conn.execute("SELECT copy::text, model_id FROM ambient.model_snapshots "
                                       "WHERE project = 'kept'").fetchone()
            conn.execute("SET ROLE copy_reader")
            assert conn.execute(f"SELECT count(*) FROM {copy}").fetchone()[0] == 150
            conn.execute("RESET ROLE")
            conn.execute("SET ROLE copy_stranger")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT count(*) FROM {copy}")
            conn.execute("RESET ROLE")
            # Revoking 'read' takes the copy back too.
            conn.execute("SELECT ambient.revoke('kept', 'copy_reader', 'read')")
            conn.execute("SET ROLE copy_reader")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT count(*) FROM {copy}")
            conn.execute("RESET ROLE")
            conn.execute("SELECT ambient.grant('kept', 'copy_reader', 'read')")
            assert conn.execute("SELECT identical, read_from FROM ambient.reproduce(%s)",
                                [model]).fetchone() == (True, "copy")
        restored = dump_and_restore(database, tmp_path)
        with connect(restored, autocommit=True) as conn:
            assert conn.execute(f"SELECT count(*) FROM {copy}").fetchone()[0] == 150
            conn.execute("SET ROLE copy_stranger")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT count(*) FROM {copy}")
            conn.execute("RESET ROLE")
            conn.execute("SET ROLE copy_reader")
            assert conn.execute(f"SELECT count(*) FROM {copy}").fetchone()[0] == 150
            conn.execute("RESET ROLE")
            assert conn.execute("SELECT identical, read_from FROM ambient.reproduce(%s)",
                                [model]).fetchone() == (True, "copy")
            # Dropping the model drops its copy.
            conn.execute("SELECT ambient.drop_project('kept', force => true)")
            assert conn.execute("SELECT to_regclass(%s)", [copy]).fetchone()[0] is None
        # A copy past the quota is refused, and leaves nothing behind.
        with connect(database, autocommit=True) as conn:
            conn.execute("SET ambient.snapshot_copy_quota = '8kB'")
            with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="snapshot_copy_quota"):
                conn.execute("SELECT * FROM ambient.train('kept', relation => 'iris', snapshot => 'copy')")
            assert conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = "
                                "'ambient_snapshots'::regnamespace AND relkind = 'r'").fetchone()[0] == 1
    finally:
        psql(database, "DROP OWNED BY copy_reader, copy_stranger; DROP ROLE copy_reader, copy_stranger;", "-q")
