"""The feature store through a real client: point-in-time correctness
against a brute-force reference (no leakage, TTL, corrections, retractions,
composite keys), a bitemporal rebuild that gives the same rows and the same
model, view and query sets with refresh, rights, and online equal to
offline."""

import datetime as dt
import random
import subprocess
import time

import psycopg
import pytest

from conftest import PGBIN, connect, dsn

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
TTL = dt.timedelta(days=20)


def make_sources(conn, seed=7):
    """Customers keyed by (region, customer_id); spend events at random
    days; a label per spine row defined from the spend valid at its time."""
    rng = random.Random(seed)
    conn.execute("CREATE TABLE spend (region text, customer_id int, at timestamptz, "
                 "spend float8, visits int, PRIMARY KEY (region, customer_id, at))")
    rows = set()
    for region in ("eu", "us"):
        for customer in range(1, 31):
            for _ in range(rng.randint(0, 8)):
                rows.add((region, customer, T0 + dt.timedelta(days=rng.randint(0, 90)),
                          round(rng.uniform(0, 100), 2), rng.randint(0, 9)))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO spend VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        sorted(rows))
    conn.execute("CREATE TABLE spine (region text, customer_id int, at timestamptz, note text)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO spine VALUES (%s, %s, %s, %s)", [
            (rng.choice(("eu", "us")), rng.randint(1, 32),
             T0 + dt.timedelta(days=rng.randint(0, 100), hours=rng.randint(0, 23)),
             rng.choice(("a", "b"))) for _ in range(400)])


def train_from_spend(conn, recent_every, recent_age, label="customer_id % 5", features=None):
    """The sources, a recent value for every `recent_every`-th customer
    (`recent_age` old, so that now() finds some), the 'spend_stats' set
    (TTL 20 days), the training set 'spend_train' over the spine with
    `label`, and project 'spend' trained from it (on `features`, or all)."""
    make_sources(conn)
    conn.execute("INSERT INTO spend SELECT region, customer_id, now() - %s::interval, "
                 "customer_id * 3, customer_id %% 4 FROM spend WHERE customer_id %% %s = 0 "
                 "GROUP BY region, customer_id", (recent_age, recent_every))
    conn.execute("SELECT * FROM ambient.create_feature_set('spend_stats', 'spend', "
                 "'{region,customer_id}', 'at', ttl => '20 days')")
    conn.execute("ALTER TABLE spine ADD COLUMN label float8")
    conn.execute(f"UPDATE spine SET label = {label}")
    conn.execute("SELECT * FROM ambient.create_training_set('spend_train', 'spine', "
                 "'{spend_stats.*}', label => 'label')")
    conn.execute("SELECT * FROM ambient.train('spend', training_set => 'spend_train', "
                 "algorithm => 'decision_tree', features => %s)", (features,))


def brute_force(conn, spine_rows):
    """For each spine row: the latest source row of its entity at or before
    its time and no older than the TTL, computed in Python from the source."""
    source = conn.execute("SELECT region, customer_id, at, spend, visits FROM spend").fetchall()
    expected = []
    for region, customer, at, _ in spine_rows:
        best = None
        for r in source:
            if (r[0], r[1]) == (region, customer) and r[2] <= at and r[2] >= at - TTL:
                if best is None or r[2] > best[2]:
                    best = r
        expected.append((best[3], best[4]) if best else (None, None))
    return expected


def view_rows(conn, view="ambient_training.spend_train"):
    return conn.execute(f"SELECT region, customer_id, at, note, spend, visits FROM {view} "
                        "ORDER BY region, customer_id, at, note").fetchall()


def check_against_reference(conn):
    rows = view_rows(conn)
    expected = brute_force(conn, [r[:4] for r in rows])
    assert len(rows) == 400
    assert [r[4:] for r in rows] == expected
    # Not vacuous: some rows find a value, some expire, some have none.
    assert sum(e != (None, None) for e in expected) > 50
    assert sum(e == (None, None) for e in expected) > 20


def test_training_set_is_point_in_time_correct_through_corrections_and_deletes(database):
    with connect(database, autocommit=True) as conn:
        make_sources(conn)
        conn.execute("SELECT * FROM ambient.create_feature_set('spend_stats', 'spend', "
                     "'{region,customer_id}', 'at', ttl => '20 days')")
        conn.execute("SELECT * FROM ambient.create_training_set('spend_train', 'spine', "
                     "'{spend_stats.*}')")
        check_against_reference(conn)
        # Later values, late corrections with old event times, retractions.
        rng = random.Random(11)
        for _ in range(60):
            region, customer = rng.choice(("eu", "us")), rng.randint(1, 30)
            at = T0 + dt.timedelta(days=rng.randint(0, 110))
            conn.execute("INSERT INTO spend VALUES (%s, %s, %s, %s, %s) ON CONFLICT (region, customer_id, at) "
                         "DO UPDATE SET spend = excluded.spend, visits = excluded.visits",
                         (region, customer, at, rng.uniform(0, 100), rng.randint(0, 9)))
        conn.execute("DELETE FROM spend WHERE customer_id %% 7 = 0 AND at < %s", (T0 + dt.timedelta(days=30),))
        conn.execute("UPDATE spend SET spend = spend + 1000 WHERE customer_id % 5 = 0")
        check_against_reference(conn)
        # The history kept what it replaced: superseded versions exist, and
        # at most one current version per entity and event time.
        superseded, duplicates = conn.execute(
            "SELECT count(*) FILTER (WHERE superseded_at IS NOT NULL), "
            "(SELECT count(*) FROM (SELECT 1 FROM ambient_features.spend_stats WHERE superseded_at IS NULL "
            " GROUP BY region, customer_id, at HAVING count(*) > 1) d) "
            "FROM ambient_features.spend_stats").fetchone()
        assert superseded > 50 and duplicates == 0
        # A refresh of a table source finds nothing the trigger missed.
        assert conn.execute("SELECT * FROM ambient.refresh_feature_set('spend_stats')").fetchone() == (0, 0, 0)


def test_rebuild_as_of_ingest_gives_the_same_rows_and_the_same_model(database):
    with connect(database, autocommit=True) as conn:
        make_sources(conn)
        conn.execute("ALTER TABLE spine ADD COLUMN label float8")
        conn.execute("UPDATE spine SET label = (customer_id * 7 + extract(day from at)) % 10")
        conn.execute("SELECT * FROM ambient.create_feature_set('spend_stats', 'spend', "
                     "'{region,customer_id}', 'at', ttl => '20 days')")
        conn.execute("SELECT * FROM ambient.create_training_set('spend_train', 'spine', "
                     "'{spend_stats.*}', label => 'label')")
        # A retraction before training: a rebuild must not bring it back.
        conn.execute("DELETE FROM spend WHERE customer_id %% 4 = 0 AND at > %s", (T0 + dt.timedelta(days=45),))
        before = view_rows(conn)
        model_id = conn.execute("SELECT model_id FROM ambient.train('spend', training_set => 'spend_train', "
                                "algorithm => 'decision_tree')").fetchone()[0]
        high_water, sets = conn.execute(
            "SELECT feature_lineage ->> 'ingest_high_water', feature_lineage -> 'feature_sets' "
            "FROM ambient.model_store WHERE id = %s", (model_id,)).fetchone()
        assert sets == ["spend_stats"] and high_water is not None
        # A backfill: corrected values at old event times, and new rows.
        conn.execute("UPDATE spend SET spend = spend * 3 WHERE at < %s", (T0 + dt.timedelta(days=60),))
        conn.execute("INSERT INTO spend SELECT region, customer_id, at - interval '1 hour', 1, 1 FROM spend "
                     "ON CONFLICT DO NOTHING")
        assert view_rows(conn) != before
        conn.execute("SELECT * FROM ambient.create_training_set('spend_rebuilt', 'spine', "
                     "'{spend_stats.*}', label => 'label', as_of_ingest => %s)", (high_water,))
        assert view_rows(conn, "ambient_training.spend_rebuilt") == before
        rebuilt = conn.execute("SELECT model_id FROM ambient.train('spend_again', training_set => 'spend_rebuilt', "
                               "algorithm => 'decision_tree')").fetchone()[0]
        shas = conn.execute("SELECT m.artifact_sha256, s.data_sha256 FROM ambient.model_store m "
                            "JOIN ambient.snapshots s ON s.id = m.snapshot_id WHERE m.id IN (%s, %s) ORDER BY m.id",
                            (model_id, rebuilt)).fetchall()
        assert shas[0] == shas[1]


def test_view_and_query_sets_record_changes_on_refresh(database):
    with connect(database, autocommit=True) as conn:
        make_sources(conn)
        conn.execute("CREATE VIEW big_spend AS SELECT * FROM spend WHERE spend > 50")
        conn.execute("SELECT * FROM ambient.create_feature_set('big', 'big_spend', '{region,customer_id}', 'at')")
        conn.execute("SELECT * FROM ambient.create_feature_set('doubled', "
                     "'SELECT region, customer_id, at, spend * 2 AS doubled FROM spend', '{region,customer_id}', 'at')")
        total = conn.execute("SELECT count(*) FROM spend").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM ambient_features.doubled").fetchone()[0] == total
        changed = conn.execute("UPDATE spend SET spend = spend + 1 WHERE customer_id = 3").rowcount
        assert changed > 0
        assert conn.execute("SELECT * FROM ambient.refresh_feature_set('doubled')").fetchone() == (changed, changed, 0)
        assert conn.execute("SELECT * FROM ambient.refresh_feature_set('doubled')").fetchone() == (0, 0, 0)
        current = conn.execute("SELECT count(*) FROM ambient_features.big WHERE superseded_at IS NULL").fetchone()[0]
        conn.execute("SELECT * FROM ambient.refresh_feature_set('big')")
        after = conn.execute("SELECT count(*) FROM ambient_features.big WHERE superseded_at IS NULL").fetchone()[0]
        assert after == conn.execute("SELECT count(*) FROM big_spend").fetchone()[0]
        assert current > 0
        # Two rows for one entity and event time are refused, whole.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("SELECT * FROM ambient.create_feature_set('dupes', "
                         "'SELECT region, customer_id, at, 1 AS one FROM spend UNION ALL "
                         "SELECT region, customer_id, at, 2 FROM spend', '{region,customer_id}', 'at')")
        assert conn.execute("SELECT count(*) FROM ambient.feature_sets WHERE feature_set = 'dupes'").fetchone()[0] == 0


def test_rights_follow_the_project_rules(database):
    role = "ambient_it_features_reader"
    with connect(database, autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role}")
        make_sources(admin)
        admin.execute(f"GRANT SELECT ON spine TO {role}")
        admin.execute("SELECT * FROM ambient.create_feature_set('spend_stats', 'spend', "
                      "'{region,customer_id}', 'at')")
        try:
            with connect(database, autocommit=True) as conn:
                conn.execute(f"SET ROLE {role}")
                # No grant at all: as if it did not exist.
                with pytest.raises(psycopg.errors.UndefinedObject):
                    conn.execute("SELECT * FROM ambient.create_training_set('mine', 'spine', '{spend_stats.*}')")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("SELECT count(*) FROM ambient_features.spend_stats")
                assert conn.execute("SELECT count(*) FROM ambient.feature_sets").fetchone()[0] == 0
                admin.execute(f"SELECT ambient.grant('spend_stats', '{role}', 'predict')")
                # 'predict' serves values to a model, and shows none.
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("SELECT * FROM ambient.create_training_set('mine', 'spine', '{spend_stats.*}')")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("SELECT * FROM ambient.features_for('{spend_stats.*}', ROW('eu', 1))")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("SELECT ambient.drop_feature_set('spend_stats')")
                admin.execute(f"SELECT ambient.grant('spend_stats', '{role}', 'read')")
                conn.execute("SELECT * FROM ambient.create_training_set('mine', 'spine', '{spend_stats.*}')")
                assert conn.execute("SELECT count(*) FROM ambient_training.mine").fetchone()[0] == 400
                assert conn.execute("SELECT feature_set, entities FROM ambient.feature_freshness").fetchall() == [
                    ("spend_stats", admin.execute("SELECT count(DISTINCT (region, customer_id)) FROM spend").fetchone()[0])]
                # Its spine is its owner's SQL, read as the owner whoever
                # trains: a superuser's train fails where the owner may
                # not read the spine.
                admin.execute(f"REVOKE SELECT ON spine FROM {role}")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    admin.execute("SELECT * FROM ambient.train('theirs', training_set => 'mine', "
                                  "target => 'note', features => '{spend}')")
                admin.execute(f"GRANT SELECT ON spine TO {role}")
                admin.execute(f"SELECT ambient.revoke('spend_stats', '{role}', 'read')")
                # The view reads with the reader's rights: revoked, it fails.
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("SELECT count(*) FROM ambient_training.mine")
            # Drop refuses while a training set or a live model reads the set.
            with pytest.raises(psycopg.errors.DependentObjectsStillExist):
                admin.execute("SELECT ambient.drop_feature_set('spend_stats')")
        finally:
            admin.execute("SELECT ambient.drop_training_set(training_set) FROM ambient.training_sets")
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_served_values_equal_the_training_set_at_the_same_time(database):
    with connect(database) as conn:
        make_sources(conn)
        conn.execute("UPDATE spend SET at = now() - (random() * interval '30 days') WHERE customer_id % 2 = 0 "
                     "AND NOT EXISTS (SELECT 1 FROM spend s WHERE s.region = spend.region "
                     "AND s.customer_id = spend.customer_id AND s.at > spend.at)")
        conn.execute("SELECT * FROM ambient.create_feature_set('spend_stats', 'spend', "
                     "'{region,customer_id}', 'at', ttl => '20 days')")
        conn.execute("CREATE TABLE now_spine AS SELECT DISTINCT region, customer_id, now() AS at FROM spend")
        conn.execute("SELECT * FROM ambient.create_training_set('now_train', 'now_spine', '{spend_stats.*}')")
        offline = conn.execute("SELECT region, customer_id, spend::text, visits::text FROM ambient_training.now_train "
                               "ORDER BY 1, 2").fetchall()
        online = conn.execute(
            "SELECT s.region, s.customer_id, "
            " (SELECT value FROM ambient.features_for('{spend_stats.*}', ROW(s.region, s.customer_id)) "
            "   WHERE feature = 'spend'), "
            " (SELECT value FROM ambient.features_for('{spend_stats.*}', s) WHERE feature = 'visits') "
            "FROM now_spine s ORDER BY 1, 2").fetchall()
        assert online == offline
        now = conn.execute("SELECT now()").fetchone()[0]
        expected = brute_force(conn, [(r[0], r[1], now, None) for r in online])
        served = [(None if r[2] is None else float(r[2]), None if r[3] is None else int(r[3])) for r in online]
        assert served == expected
        assert sum(r[2] is not None for r in online) > 5 and sum(r[2] is None for r in online) > 5


def test_a_source_table_keeps_accepting_writes(database):
    with connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE loose (id int, at timestamptz, x float8)")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            conn.execute("SELECT * FROM ambient.create_feature_set('loose', 'loose', '{id}', 'at')")
        conn.execute("ALTER TABLE loose ADD PRIMARY KEY (id, at)")
        conn.execute("SELECT * FROM ambient.create_feature_set('loose', 'loose', '{id}', 'at')")
        # DDL that would break the trigger is refused, whole.
        for ddl in ("ALTER TABLE loose ALTER COLUMN x TYPE numeric",
                    "ALTER TABLE loose DROP COLUMN x",
                    "ALTER TABLE loose RENAME COLUMN x TO y"):
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
                conn.execute(ddl)
        conn.execute("ALTER TABLE loose ADD COLUMN note text")
        conn.execute("INSERT INTO loose VALUES (1, now(), 1.5, 'kept')")
        assert conn.execute("SELECT count(*) FROM ambient_features.loose").fetchone()[0] == 1
        # With the guard turned off, a changed column is never read by the
        # trigger (its values could go through a cast the table owner
        # wrote): the write succeeds and the gap is a WARNING.
        conn.execute("ALTER EVENT TRIGGER ambient_guard_attached_tables DISABLE")
        try:
            conn.execute("ALTER TABLE loose ALTER COLUMN x TYPE numeric")
            warnings = []
            conn.add_notice_handler(lambda d: warnings.append(d.message_primary))
            conn.execute("INSERT INTO loose VALUES (2, now(), 2.5)")
            assert conn.execute("SELECT count(*) FROM loose").fetchone()[0] == 2
            assert conn.execute("SELECT count(*) FROM ambient_features.loose").fetchone()[0] == 1
            assert any("did not record" in w for w in warnings)
        finally:
            conn.execute("ALTER EVENT TRIGGER ambient_guard_attached_tables ENABLE")


def test_predict_by_entity_serves_what_training_saw(database):
    role = "ambient_it_features_app"
    with connect(database, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role}")
        train_from_spend(conn, 3, "2 days", features=["spend", "visits"])
        try:
            with conn.transaction():
                # Online: looked up by entity. Offline: the training view
                # at the same time, predicted from its row.
                conn.execute("CREATE TABLE now_spine AS SELECT DISTINCT region, customer_id, now() AS at, "
                             "'x'::text AS note, 0::float8 AS label FROM spend")
                conn.execute("SELECT * FROM ambient.create_training_set('now_train', "
                             "'SELECT * FROM now_spine', '{spend_stats.*}')")
                online = conn.execute(
                    "SELECT region, customer_id, ambient.predict('spend', entity => ROW(region, customer_id)) "
                    "FROM now_spine ORDER BY 1, 2").fetchall()
                offline = conn.execute(
                    "SELECT region, customer_id, ambient.predict('spend', t) FROM ambient_training.now_train t "
                    "ORDER BY 1, 2").fetchall()
                assert online == offline
                # Entities with no valid value follow the model's imputation.
                missing = conn.execute("SELECT ambient.predict('spend', t) "
                                       "FROM (SELECT NULL::float8 AS spend, NULL::int AS visits) t").fetchone()[0]
                stale = [p for (_, c, p) in online if c % 3 != 0]
                assert stale and all(p == missing for p in stale)
                assert len({p for (_, _, p) in online}) > 1
                raise psycopg.Rollback()
            # Rights: 'predict' on the project alone learns nothing of the
            # feature set; with 'predict' on the set it is served.
            conn.execute(f"SELECT ambient.grant('spend', '{role}', 'predict')")
            with connect(database, autocommit=True) as app:
                app.execute(f"SET ROLE {role}")
                with pytest.raises(psycopg.errors.UndefinedObject):
                    app.execute("SELECT ambient.predict('spend', entity => ROW('eu', 3))")
                conn.execute(f"SELECT ambient.grant('spend_stats', '{role}', 'predict')")
                served = app.execute("SELECT ambient.predict('spend', entity => ROW('eu', 3))").fetchone()[0]
                assert served == conn.execute("SELECT ambient.predict('spend', entity => ROW('eu', 3))").fetchone()[0]
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute("SELECT * FROM ambient.features_for('{spend_stats.*}', ROW('eu', 3))")
        finally:
            conn.execute("SELECT ambient.drop_training_set(training_set) FROM ambient.training_sets "
                         "WHERE training_set = 'now_train'")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_attached_insert_looks_features_up_and_never_fails(database):
    role = "ambient_it_features_owner"
    with connect(database, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role}")
        train_from_spend(conn, 2, "1 day", label="customer_id % 5 + (note = 'a')::int")
        try:
            # Keys of another type would be cast at every INSERT: refused.
            conn.execute("CREATE TABLE visits_text (region text, customer_id text, note text)")
            with pytest.raises(psycopg.errors.DatatypeMismatch, match="keys on integer"):
                conn.execute("SELECT * FROM ambient.attach('spend', 'visits_text')")
            # The table has the entity keys and the row feature only.
            conn.execute("CREATE TABLE visits (id serial PRIMARY KEY, region text, customer_id int, note text)")
            conn.execute(f"ALTER TABLE visits OWNER TO {role}")
            conn.execute(f"SELECT ambient.grant('spend', '{role}', 'predict')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not be served"):
                conn.execute("SELECT * FROM ambient.attach('spend', 'visits')")
            conn.execute(f"SELECT ambient.grant('spend_stats', '{role}', 'predict')")
            conn.execute("SELECT * FROM ambient.attach('spend', 'visits')")
            conn.execute("INSERT INTO visits (region, customer_id, note) "
                         "SELECT r, c, CASE WHEN c % 3 = 0 THEN 'a' ELSE 'b' END "
                         "FROM unnest(ARRAY['eu', 'us']) r, generate_series(1, 32) c")
            rows = conn.execute("SELECT prediction, prediction_model_id, "
                                "ambient.predict('spend', entity => ROW(region, customer_id), \"row\" => v) "
                                "FROM visits v ORDER BY id").fetchall()
            assert len(rows) == 64 and all(r[1] is not None for r in rows)
            assert [r[0] for r in rows] == [r[2] for r in rows]
            assert len({r[0] for r in rows}) > 1
            # A NULL key finds nothing: the model's imputation, and the row
            # is written.
            conn.execute("INSERT INTO visits (region, customer_id, note) VALUES (NULL, 1, 'a')")
            # The owner loses the feature set: writes go on, without a
            # prediction.
            conn.execute(f"SELECT ambient.revoke('spend_stats', '{role}', 'predict')")
            with connect(database, autocommit=True) as other:
                other.execute("INSERT INTO visits (region, customer_id, note) VALUES ('eu', 2, 'b')")
            last = conn.execute("SELECT prediction, prediction_model_id FROM visits ORDER BY id DESC LIMIT 2").fetchall()
            assert last[0] == (None, None) and last[1][0] is not None
        finally:
            conn.execute("DROP TABLE IF EXISTS visits, visits_text")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_drift_and_policies_watch_looked_up_features(database):
    with connect(database, autocommit=True) as conn:
        train_from_spend(conn, 1, "3 days", features=["spend", "visits"])
        conn.execute("CREATE TABLE visits (id serial PRIMARY KEY, region text, customer_id int)")
        conn.execute("SELECT * FROM ambient.attach('spend', 'visits')")
        conn.execute("INSERT INTO visits (region, customer_id) "
                     "SELECT r, c FROM unnest(ARRAY['eu', 'us']) r, generate_series(1, 30) c")
        # Drift compares the looked-up features of the attached rows'
        # entities, as served now, with what training saw.
        drift = {r[0]: r[2] for r in conn.execute("SELECT * FROM ambient.drift('spend')").fetchall()}
        served = conn.execute("SELECT count(*) FROM visits v WHERE EXISTS (SELECT 1 FROM spend s "
                              "WHERE (s.region, s.customer_id) = (v.region, v.customer_id))").fetchone()[0]
        assert 0 < served < 60
        assert drift["spend"] == served and drift["visits"] == served and drift["(prediction)"] == 60
        # A policy watches how fresh the sets are.
        conn.execute("""SELECT ambient.set_policy('spend', '{"action": "alert", "max_staleness": "2 days"}')""")
        status, action, reason, _ = conn.execute("SELECT * FROM ambient.run_policy('spend')").fetchone()
        assert status == "acted" and "spend_stats" in reason and "max_staleness" in reason, reason
        conn.execute("""SELECT ambient.set_policy('spend', '{"action": "alert", "max_staleness": "5 days",
                                                           "max_drift": 1}')""")
        status, _, reason, _ = conn.execute("SELECT * FROM ambient.run_policy('spend')").fetchone()
        assert status == "nothing to do", reason


def test_serving_equals_the_training_view_for_other_key_and_time_types(database):
    """varchar and enum keys, and a date event time (served through SQL)
    beside a timestamptz one (served from the index): predicting by entity
    equals predicting the training view's row at the same time."""
    with connect(database) as conn:
        conn.execute("CREATE TYPE tier AS ENUM ('bronze', 'silver', 'gold')")
        conn.execute("CREATE TABLE daily (code varchar(8), tier tier, day date, score float8, "
                     "PRIMARY KEY (code, tier, day))")
        conn.execute("CREATE TABLE recent (code varchar(8), tier tier, at timestamptz, level int, "
                     "PRIMARY KEY (code, tier, at))")
        conn.execute("SELECT setseed(0.3)")
        conn.execute("INSERT INTO daily SELECT 'c' || c, t, current_date - k, round((random() * 50)::numeric, 1) "
                     "FROM generate_series(1, 40) c, unnest(enum_range(NULL::tier)) t, generate_series(0, 30, 3) k "
                     "WHERE random() < 0.5")
        conn.execute("INSERT INTO recent SELECT 'c' || c, t, now() - k * interval '17 hours', (random() * 9)::int "
                     "FROM generate_series(1, 40) c, unnest(enum_range(NULL::tier)) t, generate_series(0, 20) k "
                     "WHERE random() < 0.4")
        conn.execute("SELECT * FROM ambient.create_feature_set('daily', 'daily', '{code,tier}', 'day', ttl => '5 days')")
        conn.execute("SELECT * FROM ambient.create_feature_set('recent', 'recent', '{code,tier}', 'at', ttl => '2 days')")
        conn.execute("CREATE TABLE labels AS SELECT 'c' || c AS code, t AS tier, "
                     "now() - k * interval '1 day' AS at, (c + k) % 3 AS label "
                     "FROM generate_series(1, 40) c, unnest(enum_range(NULL::tier)) t, generate_series(0, 25) k")
        conn.execute("SELECT * FROM ambient.create_training_set('mixed', 'labels', '{daily.*,recent.*}', label => 'label')")
        conn.execute("SELECT * FROM ambient.train('mixed', training_set => 'mixed', algorithm => 'decision_tree')")
        conn.execute("CREATE TABLE now_labels AS SELECT DISTINCT code, tier, now() AS at, 0 AS label FROM labels")
        conn.execute("SELECT * FROM ambient.create_training_set('mixed_now', 'now_labels', '{daily.*,recent.*}', "
                     "label => 'label')")
        offline = conn.execute("SELECT code, tier::text, ambient.predict('mixed', t) FROM ambient_training.mixed_now t "
                               "ORDER BY 1, 2").fetchall()
        online = conn.execute("SELECT code, tier::text, ambient.predict('mixed', entity => ROW(code, tier)) "
                              "FROM now_labels ORDER BY 1, 2").fetchall()
        assert online == offline and len(online) == 120
        assert len({p for (_, _, p) in online}) > 1
        # The timestamptz set alone is read from its index, through the
        # text and enum operator classes.
        conn.execute("SELECT * FROM ambient.create_training_set('recent_only', 'labels', '{recent.*}', "
                     "label => 'label')")
        conn.execute("SELECT * FROM ambient.train('recent_model', training_set => 'recent_only', "
                     "algorithm => 'decision_tree')")
        conn.execute("SELECT * FROM ambient.create_training_set('recent_now', 'now_labels', '{recent.*}', "
                     "label => 'label')")
        offline = conn.execute("SELECT code, tier::text, ambient.predict('recent_model', t) "
                               "FROM ambient_training.recent_now t ORDER BY 1, 2").fetchall()
        online = conn.execute("SELECT code, tier::text, ambient.predict('recent_model', entity => ROW(code, tier)) "
                              "FROM now_labels ORDER BY 1, 2").fetchall()
        assert online == offline and len({p for (_, _, p) in online}) > 1
        # Some entities have values in each set, some have none valid now.
        have = conn.execute("SELECT count(score), count(*) - count(score), count(level), count(*) - count(level) "
                            "FROM ambient_training.mixed_now").fetchone()
        assert all(n > 0 for n in have), have


def test_a_pg_cron_refresh_reads_the_source_as_the_set_owner_whoever_scheduled_it():
    """A superuser schedules a role's feature-set refresh on pg_cron (which
    runs the job as the superuser). The refresh still reads the stored
    query as the set's owner: its function, which tries to make its owner
    a superuser, gets none of the superuser's rights, and the history gets
    what changed."""
    role = "ambient_cron_features"
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        admin.execute("DROP EXTENSION IF EXISTS pg_ambient CASCADE")
        admin.execute("CREATE EXTENSION pg_ambient")
        admin.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'ambient refresh test'")
        admin.execute("DROP TABLE IF EXISTS cron_events, cron_features_ran_as")
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
        admin.execute("CREATE TABLE cron_features_ran_as (who name)")
        admin.execute(f"GRANT INSERT ON cron_features_ran_as TO {role}")
    try:
        with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"SET ROLE {role}")
            conn.execute(f"""CREATE FUNCTION public.cron_features_pwn() RETURNS boolean LANGUAGE plpgsql AS $$
                             BEGIN
                                 INSERT INTO public.cron_features_ran_as VALUES (current_user);
                                 BEGIN
                                     EXECUTE 'ALTER ROLE {role} SUPERUSER';
                                 EXCEPTION WHEN OTHERS THEN NULL;
                                 END;
                                 RETURN true;
                             END $$""")
            conn.execute("CREATE TABLE cron_events (id int, at timestamptz, x float8)")
            conn.execute("INSERT INTO cron_events SELECT g, now() - g * interval '1 hour', g FROM generate_series(1, 10) g")
            conn.execute("SELECT * FROM ambient.create_feature_set('cron_x', "
                         "'SELECT id, at, x FROM public.cron_events WHERE public.cron_features_pwn()', '{id}', 'at')")
            conn.execute("UPDATE cron_events SET x = x + 100 WHERE id <= 3")
        with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
            admin.execute("TRUNCATE cron_features_ran_as")
            admin.execute("SELECT cron.schedule('ambient refresh test', '* * * * *', "
                          "$$SELECT ambient.refresh_feature_set('cron_x')$$)")
            deadline = time.monotonic() + 130
            refreshed = 0
            while time.monotonic() < deadline and refreshed < 3:
                time.sleep(1)
                refreshed = admin.execute("SELECT count(*) FROM ambient_features.cron_x "
                                          "WHERE superseded_at IS NULL AND x > 100").fetchone()[0]
            assert refreshed == 3, "the pg_cron job did not refresh within two minutes"
            assert {r[0] for r in admin.execute("SELECT DISTINCT who FROM cron_features_ran_as")} == {role}
            assert admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role]).fetchone()[0] is False
    finally:
        with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
            admin.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'ambient refresh test'")
            admin.execute("DROP EXTENSION IF EXISTS pg_ambient CASCADE")
            admin.execute("DROP TABLE IF EXISTS cron_events, cron_features_ran_as")
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def test_dump_and_restore_keep_feature_sets_training_sets_and_serving(database, tmp_path):
    with connect(database, autocommit=True) as conn:
        make_sources(conn)
        conn.execute("INSERT INTO spend SELECT region, customer_id, now() - interval '1 day', "
                     "customer_id, customer_id % 3 FROM spend GROUP BY region, customer_id")
        conn.execute("SELECT * FROM ambient.create_feature_set('spend_stats', 'spend', "
                     "'{region,customer_id}', 'at', ttl => '20 days')")
        conn.execute("SELECT * FROM ambient.create_feature_set('spend_doubled', "
                     "'SELECT region, customer_id, at, spend * 2 AS doubled FROM spend', '{region,customer_id}', 'at')")
        conn.execute("UPDATE spend SET spend = spend + 1 WHERE customer_id = 4")
        conn.execute("SELECT * FROM ambient.refresh_feature_set('spend_doubled')")
        conn.execute("ALTER TABLE spine ADD COLUMN label float8")
        conn.execute("UPDATE spine SET label = customer_id % 5")
        conn.execute("SELECT * FROM ambient.create_training_set('spend_train', 'spine', "
                     "'{spend_stats.*,spend_doubled.doubled}', label => 'label')")
        conn.execute("SELECT * FROM ambient.train('spend', training_set => 'spend_train', "
                     "algorithm => 'decision_tree', features => '{spend,visits,doubled}')")

    def state(dbname):
        with connect(dbname) as conn:
            return {
                "history": conn.execute("SELECT region, customer_id, at, spend, visits, ingested_at, superseded_at "
                                        "FROM ambient_features.spend_stats ORDER BY 1, 2, 3, 6").fetchall(),
                "training": conn.execute("SELECT * FROM ambient_training.spend_train ORDER BY 1, 2, 3, 4").fetchall(),
                "sets": conn.execute("SELECT feature_set, definition_sha256, live_projects "
                                     "FROM ambient.feature_sets ORDER BY 1").fetchall(),
                "served": conn.execute("SELECT array_agg(ambient.predict('spend', entity => ROW(r, c)) ORDER BY r, c) "
                                       "FROM unnest(ARRAY['eu', 'us']) r, generate_series(1, 30) c").fetchone(),
            }

    original = state(database)
    dump = tmp_path / "features.dump"
    subprocess.run([str(PGBIN / "pg_dump"), "-Fc", "-f", str(dump), dsn(database)], check=True)
    restored = database + "_restored"
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{restored}"')
    subprocess.run([str(PGBIN / "pg_restore"), "--exit-on-error", "-d", dsn(restored), str(dump)], check=True)
    assert state(restored) == original
    # The restored trigger records, and the restored query set refreshes.
    with connect(restored, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM ambient_features.spend_stats").fetchone()[0]
        conn.execute("INSERT INTO spend VALUES ('eu', 99, now(), 1, 1)")
        assert conn.execute("SELECT count(*) FROM ambient_features.spend_stats").fetchone()[0] == before + 1
        assert conn.execute("SELECT recorded FROM ambient.refresh_feature_set('spend_doubled')").fetchone()[0] == 1
