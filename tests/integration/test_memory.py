"""The model cache keeps within its byte bound: one backend predicts with
the forests of 200 projects, twice over, and its anonymous resident memory
(the heap, where decoded models live) grows by at most the bound, not by
every model it decoded; Postgres's own memory contexts do not grow.
Measured with /proc/<pid>/status and pg_backend_memory_contexts. (VmRSS
also counts the shared buffers the backend touched reading the artifacts,
about their size, whatever the cache holds: RssAnon is the heap alone.)"""

import pathlib

from conftest import connect, psql

PROJECTS = 200


def rss_kb(pid):
    """The backend's anonymous resident memory: its heap."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon")


def contexts_kb(conn):
    return conn.execute("SELECT sum(total_bytes) / 1024 FROM pg_backend_memory_contexts").fetchone()[0]


def predict_everywhere(database, cache_memory):
    """Predicts with every project twice in one backend whose cache may hold
    `cache_memory`; returns how much its RSS and its memory contexts grew
    (kB)."""
    with connect(database, autocommit=True) as conn:
        conn.execute(f"SET ambient.model_cache_memory = '{cache_memory}'")
        conn.execute("SET ambient.model_cache_size = 10000")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        # Warm what every backend loads once (the library, catalog caches).
        conn.execute("SELECT ambient.predict('forest_0', ARRAY[1.0, 2.0, 3.0, 4.0])")
        rss, contexts = rss_kb(pid), contexts_kb(conn)
        for _ in range(2):
            for k in range(PROJECTS):
                conn.execute(f"SELECT ambient.predict('forest_{k}', ARRAY[1.0, 2.0, 3.0, 4.0])")
        return rss_kb(pid) - rss, contexts_kb(conn) - contexts


def test_the_model_cache_stays_within_its_byte_bound(database):
    psql(database, f"""
        SET ambient.progress = off;
        CREATE TABLE noisy AS
        SELECT g AS id, random() AS a, random() AS b, random() AS c, random() AS d,
               (random() < 0.5) AS y
          FROM generate_series(1, 1500) g;
        ALTER TABLE noisy ADD PRIMARY KEY (id);
        SELECT count(*) FROM generate_series(0, {PROJECTS - 1}) k,
               LATERAL ambient.train('forest_' || k, relation => 'noisy', target => 'y',
                                     algorithm => 'random_forest', seed => k,
                                     hyperparams => '{{"n_estimators": 20}}');
    """, "-q")
    with connect(database) as conn:
        total_kb = conn.execute("SELECT sum(artifact_bytes) / 1024 FROM ambient.models").fetchone()[0]
    # Each cached model counts as twice its artifact.
    assert total_kb * 2 > 64 * 1024, f"the forests are too small to tell ({total_kb} kB)"
    bounded_rss, bounded_contexts = predict_everywhere(database, "16MB")
    unbounded_rss, _ = predict_everywhere(database, "1GB")
    print(f"artifacts {total_kb} kB; RSS growth: bounded {bounded_rss} kB, unbounded {unbounded_rss} kB; "
          f"contexts growth {bounded_contexts} kB")
    # Within the bound, with room for the allocator's slack and one model
    # being decoded; far below what keeping every model takes.
    assert bounded_rss < 16 * 1024 + 4 * 1024, bounded_rss
    assert unbounded_rss > bounded_rss + 32 * 1024, (bounded_rss, unbounded_rss)
    # Decoded models live outside Postgres's contexts, which do not grow.
    assert bounded_contexts < 4 * 1024, bounded_contexts
