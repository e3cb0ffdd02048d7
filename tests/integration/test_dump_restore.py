"""pg_dump keeps models, snapshots and deployment history: a restored database
predicts the same and carries on where the original left off."""

import subprocess

from conftest import PGBIN, connect, dsn, psql
import psycopg


def catalog_state(dbname):
    with connect(dbname) as conn:
        return {
            "overview": conn.execute(
                "SELECT project, task, live_model_id, live_version, algorithm, score FROM ambient.overview ORDER BY 1"
            ).fetchall(),
            "models": conn.execute(
                "SELECT model_id, project, version, artifact_bytes FROM ambient.models ORDER BY 1").fetchall(),
            "deployments": conn.execute(
                "SELECT deployment_id, project, model_id, previous_model_id, strategy, reason "
                "FROM ambient.deployments ORDER BY 1").fetchall(),
            "snapshots": conn.execute(
                "SELECT id, source, row_count, data_sha256 FROM ambient.snapshots ORDER BY 1").fetchall(),
            "predictions": conn.execute(
                "SELECT array_agg(ambient.predict('iris', i.*) ORDER BY id),"
                "       array_agg(ambient.predict('width', i.*) ORDER BY id) FROM iris i").fetchone(),
        }


def test_dump_and_restore_keep_models_and_history(database, tmp_path):
    psql(database, """
        SELECT * FROM ambient.train('iris', relation => 'iris', target => 'species', algorithm => 'decision_tree');
        SELECT * FROM ambient.train('iris', relation => 'iris', hyperparams => '{"max_depth": 1}', deploy => 'always', algorithm => 'decision_tree');
        SELECT ambient.rollback('iris', reason => 'before dump');
        SELECT * FROM ambient.train('width', relation => 'iris', target => 'petal_width',
                                    algorithm => 'linear_regression',
                                    features => ARRAY['sepal_length', 'sepal_width', 'petal_length']);
    """)
    original = catalog_state(database)

    dump = tmp_path / "ambient.dump"
    subprocess.run([str(PGBIN / "pg_dump"), "-Fc", "-f", str(dump), dsn(database)], check=True)
    restored = database + "_restored"
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{restored}"')
    subprocess.run([str(PGBIN / "pg_restore"), "--exit-on-error", "-d", dsn(restored), str(dump)], check=True)

    assert catalog_state(restored) == original

    # History survived: rollback walks on from where it was, and new rows take new ids.
    with connect(restored, autocommit=True) as conn:
        new_id = conn.execute(
            "SELECT model_id FROM ambient.train('iris', relation => 'iris', deploy => 'never', algorithm => 'decision_tree')").fetchone()[0]
        assert new_id > max(m[0] for m in original["models"])
        conn.execute("SELECT ambient.deploy('iris', %s)", [new_id])
        back_to = conn.execute("SELECT ambient.rollback('iris')").fetchone()[0]
        assert back_to == original["overview"][0][2]
