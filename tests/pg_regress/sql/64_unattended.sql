-- Unattended operation (0.3.0): stored SQL runs as the role that wrote it,
-- a retrain follows the live model, attached tables keep accepting writes
-- through deploys and DDL, live counts follow the tables, logs stay
-- bounded, time inputs do not drift. The pg_cron side (a job that runs as
-- the project's owner, co-owners scheduling in turn, drop_project) is in
-- tests/integration/test_operations.py.
SET ambient.progress = off;
-- Roles are cluster-wide: a run that stopped half-way left them behind
-- (owning nothing: their database is made anew each run).
SET client_min_messages = warning;
DROP ROLE IF EXISTS amb_bob, amb_carol, amb_team, amb_dave, amb_gone;
RESET client_min_messages;
CREATE ROLE amb_bob;
CREATE ROLE amb_team NOLOGIN;
CREATE ROLE amb_carol IN ROLE amb_team;
CREATE ROLE amb_dave;
CREATE SCHEMA bob AUTHORIZATION amb_bob;
CREATE SCHEMA team AUTHORIZATION amb_team;
CREATE TABLE loans AS
SELECT g AS id, (g % 10)::float8 AS income, (g % 7)::float8 AS debt, (g % 10 >= 5) AS repaid
  FROM generate_series(1, 200) g;
GRANT SELECT ON loans TO amb_bob, amb_team;
-- Who each stored query ran as.
CREATE TABLE ran_as (who name);
GRANT INSERT ON ran_as TO amb_bob, amb_team;

-- 1. bob's stored query calls his function, which tries to make him a
-- superuser with the rights of whoever runs it.
SET ROLE amb_bob;
CREATE FUNCTION bob.pwn() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.ran_as VALUES (current_user);
    BEGIN
        EXECUTE 'ALTER ROLE amb_bob SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END $$;
SELECT version FROM ambient.train('bobs', query => 'SELECT income, debt, repaid FROM public.loans WHERE bob.pwn()',
                                  target => 'repaid', algorithm => 'decision_tree');
SELECT ambient.set_policy('bobs', '{"action": "retrain", "retrain_after_changed_rows": 1}') ->> 'action' AS action;
RESET ROLE;
INSERT INTO loans SELECT g, (g % 10)::float8, (g % 7)::float8, (g % 10 >= 5) FROM generate_series(201, 260) g;
TRUNCATE ran_as;
-- A superuser runs bob's policy: the changed-rows count and the retrain
-- run bob's query as bob, who cannot make himself a superuser.
SELECT status, action FROM ambient.run_policy('bobs');
SELECT DISTINCT who FROM ran_as;
SELECT rolsuper FROM pg_roles WHERE rolname = 'amb_bob';
-- The retrained model records bob as its definition's author.
SELECT version, definition_role FROM ambient.model_store
 WHERE project_id = (SELECT id FROM ambient.projects WHERE name = 'bobs') ORDER BY version;
-- A version a superuser trains in bob's project, from bob's table, is
-- bob's definition too: bob could otherwise swap his table for a view and
-- run it with the superuser's rights through his own policy.
CREATE TABLE bob.history AS SELECT income, debt, repaid FROM public.loans;
ALTER TABLE bob.history OWNER TO amb_bob;
SELECT version FROM ambient.train('bobs', relation => 'bob.history', algorithm => 'decision_tree', deploy => 'always');
SELECT version, definition_role FROM ambient.model_store
 WHERE project_id = (SELECT id FROM ambient.projects WHERE name = 'bobs') ORDER BY version DESC LIMIT 1;
TRUNCATE ran_as;
SET ROLE amb_bob;
-- (The source guard refuses the swap until bob accepts it.)
SELECT * FROM try($$ALTER TABLE bob.history RENAME TO history_table$$);
SELECT array_length(ambient.release('bobs', 'swapping the table for a view'), 1) AS released;
ALTER TABLE bob.history RENAME TO history_table;
CREATE VIEW bob.history AS SELECT * FROM bob.history_table UNION ALL SELECT * FROM bob.history_table WHERE bob.pwn();
SELECT status, action FROM ambient.run_policy('bobs');
RESET ROLE;
SELECT DISTINCT who FROM ran_as;
SELECT rolsuper FROM pg_roles WHERE rolname = 'amb_bob';

-- A relation source swapped for a view after training: read as bob.
SET ROLE amb_bob;
CREATE TABLE bob.src AS SELECT * FROM public.loans WHERE id <= 200;
SELECT version FROM ambient.train('bobrel', relation => 'bob.src', target => 'repaid', algorithm => 'decision_tree');
SELECT ambient.set_policy('bobrel', '{"action": "retrain", "retrain_after_changed_rows": 1}') ->> 'action' AS action;
SELECT array_length(ambient.release('bobrel'), 1) AS released;
DROP TABLE bob.src;
CREATE VIEW bob.src AS SELECT l.* FROM public.loans l WHERE bob.pwn();
RESET ROLE;
TRUNCATE ran_as;
SELECT status, action FROM ambient.run_policy('bobrel');
SELECT DISTINCT who FROM ran_as;
SELECT rolsuper FROM pg_roles WHERE rolname = 'amb_bob';

-- A row-level security policy's function, on the team's table, when carol
-- (a member of the team, with rights of her own) runs the team's policy:
-- it runs as the team, the role that trained the project.
SET ROLE amb_team;
CREATE FUNCTION team.seen() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.ran_as VALUES (current_user);
    RETURN true;
END $$;
CREATE TABLE team.loans AS SELECT * FROM public.loans WHERE id <= 200;
ALTER TABLE team.loans ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY everyone ON team.loans USING (team.seen());
SELECT version FROM ambient.train('teamp', relation => 'team.loans', target => 'repaid', algorithm => 'decision_tree');
SELECT ambient.set_policy('teamp', '{"action": "retrain", "retrain_after_changed_rows": 1}') ->> 'action' AS action;
INSERT INTO team.loans SELECT * FROM public.loans WHERE id > 200;
RESET ROLE;
TRUNCATE ran_as;
SET ROLE amb_carol;
SELECT status, action FROM ambient.run_policy('teamp');
RESET ROLE;
SELECT DISTINCT who FROM ran_as;

-- An author that is gone, or lost its SELECT: the run fails cleanly, and
-- is recorded as failed.
CREATE ROLE amb_gone;
GRANT SELECT ON loans TO amb_gone;
SET ROLE amb_gone;
SELECT version FROM ambient.train('orphan', query => 'SELECT income, debt, repaid FROM public.loans',
                                  target => 'repaid', algorithm => 'decision_tree');
SELECT ambient.set_policy('orphan', '{"action": "retrain", "retrain_after_changed_rows": 1}') ->> 'action' AS action;
RESET ROLE;
REVOKE SELECT ON loans FROM amb_gone;
SELECT status, reason FROM ambient.run_policy('orphan');
DROP ROLE amb_gone;
SELECT status, regexp_replace(reason, 'oid \d+', 'oid <n>') AS reason FROM ambient.run_policy('orphan');
SELECT status FROM ambient.policy_runs WHERE project = 'orphan' ORDER BY run_id;

-- 2. A retrain reruns the live model's definition, never a newer one a
-- person rolled back. Version 2 learnt flipped labels and was rolled back.
CREATE TABLE truth AS
SELECT g AS id, (g % 10)::float8 AS x, (g % 7)::float8 AS z, (g % 10 >= 5) AS label FROM generate_series(1, 300) g;
SELECT version FROM ambient.train('flip', query => 'SELECT x, z, label FROM truth', target => 'label',
                                  algorithm => 'decision_tree');
SELECT version FROM ambient.train('flip', query => 'SELECT x, z, NOT label AS label FROM truth',
                                  algorithm => 'decision_tree', deploy => 'always');
SELECT ambient.rollback('flip', 'trained on flipped labels') IS NOT NULL AS rolled_back;
SELECT ambient.set_policy('flip', '{"action": "retrain_and_deploy_if_better", "retrain_after_changed_rows": 1}') ->> 'action' AS action;
INSERT INTO truth SELECT g, (g % 10)::float8, (g % 7)::float8, (g % 10 >= 5) FROM generate_series(301, 400) g;
SELECT status, action FROM ambient.run_policy('flip');
SELECT m.version, s.source, m.live FROM ambient.models m JOIN ambient.model_snapshots s USING (model_id)
 WHERE m.project = 'flip' ORDER BY m.version;
SELECT avg((ambient.predict_label('flip', t.*) = t.label::text)::int) AS live_accuracy_on_true_labels FROM truth t;

-- 3. Attached tables keep accepting writes.
SELECT version FROM ambient.train('bloom', relation => 'iris', target => 'species', algorithm => 'decision_tree',
                                  features => ARRAY['sepal_length', 'sepal_width', 'petal_length', 'petal_width']);
CREATE TABLE flowers (id int PRIMARY KEY, sepal_length float8, sepal_width float8, petal_length float8,
                      petal_width float8, species text);
SELECT prediction_column FROM ambient.attach('bloom', 'flowers');
-- A label column whose type cannot hold every class the model predicts.
CREATE TYPE two_species AS ENUM ('setosa', 'versicolor');
CREATE TABLE few_flowers (id int, sepal_length float8, sepal_width float8, petal_length float8,
                          petal_width float8, species two_species);
SELECT * FROM try($$SELECT ambient.attach('bloom', 'few_flowers')$$);
-- A label domain's CHECK runs when classes are checked: as the table's
-- owner, never as whoever deploys (a superuser here).
GRANT SELECT ON iris TO amb_bob;
SET ROLE amb_bob;
CREATE FUNCTION bob.check_species(value text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.ran_as VALUES (current_user);
    BEGIN
        EXECUTE 'ALTER ROLE amb_bob SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END $$;
CREATE DOMAIN bob.species AS text CHECK (bob.check_species(VALUE));
CREATE TABLE bob.blooms (id int PRIMARY KEY, sepal_length float8, sepal_width float8, petal_length float8,
                         petal_width float8, species bob.species);
SELECT version FROM ambient.train('bobbloom', relation => 'iris', target => 'species', algorithm => 'decision_tree',
                                  features => ARRAY['sepal_length', 'sepal_width', 'petal_length', 'petal_width']);
SELECT prediction_column FROM ambient.attach('bobbloom', 'bob.blooms');
RESET ROLE;
TRUNCATE ran_as;
SELECT version FROM ambient.train('bobbloom', relation => 'iris', algorithm => 'decision_tree',
                                  hyperparams => '{"max_depth": 2}', deploy => 'always');
SELECT DISTINCT who FROM ran_as;
SELECT rolsuper FROM pg_roles WHERE rolname = 'amb_bob';
-- A model that reads a column flowers lacks: its deploy (and rollback to
-- it) is refused, naming the table, and writes go on.
CREATE TABLE iris_more AS SELECT *, petal_length * petal_width AS petal_area FROM iris;
SELECT model_id AS wide FROM ambient.train('bloom', relation => 'iris_more', deploy => 'never', algorithm => 'decision_tree',
       features => ARRAY['sepal_length', 'sepal_width', 'petal_length', 'petal_width', 'petal_area']) \gset
SELECT sqlstate, regexp_replace(message, 'model \d+', 'model <wide>') AS message, hint
  FROM try(format('SELECT ambient.deploy(%L, %s, new_contract => true)', 'bloom', :wide));
INSERT INTO flowers (id, sepal_length, sepal_width, petal_length, petal_width)
SELECT id, sepal_length, sepal_width, petal_length, petal_width FROM iris WHERE id <= 10;
SELECT count(*) AS rows, count(prediction) AS predicted FROM flowers;
-- With the column added, the deploy goes through and writes go on.
ALTER TABLE flowers ADD COLUMN petal_area float8;
SELECT ambient.deploy('bloom', :wide, new_contract => true) = :wide AS deployed;
INSERT INTO flowers (id, sepal_length, sepal_width, petal_length, petal_width, petal_area)
SELECT id, sepal_length, sepal_width, petal_length, petal_width, petal_length * petal_width FROM iris WHERE id BETWEEN 11 AND 20;
SELECT count(*) AS rows, count(*) FILTER (WHERE prediction_model_id = :wide) AS by_wide FROM flowers;

-- DDL that would break the trigger is refused, with a hint; other DDL is not.
SELECT sqlstate, regexp_replace(message, 'model \d+', 'model <wide>') AS message, hint
  FROM try($$ALTER TABLE flowers RENAME COLUMN petal_width TO pw$$);
SELECT sqlstate, message FROM try($$ALTER TABLE flowers RENAME COLUMN species TO kind$$);
SELECT sqlstate, message FROM try($$ALTER TABLE flowers RENAME COLUMN prediction TO guess$$);
SELECT sqlstate, message FROM try($$ALTER TABLE flowers RENAME COLUMN prediction_model_id TO served_by$$);
SELECT sqlstate, regexp_replace(message, 'model \d+', 'model <wide>') AS message
  FROM try($$ALTER TABLE flowers DROP COLUMN petal_area CASCADE$$);
SELECT sqlstate, message FROM try($$ALTER TABLE flowers ALTER COLUMN petal_length TYPE text$$);
SELECT trigger_name FROM ambient.attachments WHERE project = 'bloom' AND relation = 'flowers'::regclass \gset
SELECT sqlstate, replace(message, :'trigger_name', '<trigger>') AS message
  FROM try(format('ALTER TRIGGER %I ON flowers RENAME TO renamed', :'trigger_name'));
SELECT sqlstate, replace(message, :'trigger_name', '<trigger>') AS message
  FROM try(format('CREATE OR REPLACE TRIGGER %I BEFORE INSERT ON flowers FOR EACH ROW
                   EXECUTE FUNCTION ambient.predict_trigger(''bloom'', ''prediction'', ''prediction_model_id'', '''')',
                  :'trigger_name'));
-- Dropping the trigger (by hand, or pg_restore --clean) detaches: the
-- attachment is forgotten, so ambient.attachments stays true.
BEGIN;
SELECT sqlstate FROM try(format('DROP TRIGGER %I ON flowers', :'trigger_name'));
SELECT count(*) AS still_attached FROM ambient.attachments WHERE project = 'bloom' AND relation = 'flowers'::regclass;
ROLLBACK;
ALTER TABLE flowers ADD COLUMN note text;
ALTER TABLE flowers RENAME COLUMN note TO remark;
INSERT INTO flowers (id, sepal_length, sepal_width, petal_length, petal_width, petal_area) VALUES (21, 5.1, 3.5, 1.4, 0.2, 0.28)
RETURNING prediction;
SELECT count(*) AS attached_triggers FROM pg_trigger WHERE tgrelid = 'flowers'::regclass AND NOT tgisinternal;
-- A shadow or canary challenger must serve the tables too: this one
-- takes the contract's names, but reads petal_area as text.
SELECT model_id AS texty FROM ambient.train('bloom', deploy => 'never', algorithm => 'decision_tree',
       query => 'SELECT sepal_length, sepal_width, petal_length, petal_width, petal_area::text AS petal_area, species FROM iris_more') \gset
SELECT sqlstate, regexp_replace(message, 'model \d+', 'model <id>') AS message
  FROM try(format('SELECT ambient.shadow(%L, %s)', 'bloom', :texty));
SELECT sqlstate, regexp_replace(message, 'model \d+', 'model <id>') AS message
  FROM try(format('SELECT ambient.deploy(%L, %s, traffic => 0.5)', 'bloom', :texty));
-- A role that may only insert cannot supply its own prediction.
GRANT INSERT ON flowers TO amb_dave;
SET ROLE amb_dave;
INSERT INTO flowers (id, sepal_length, sepal_width, petal_length, petal_width, petal_area, prediction, prediction_model_id)
VALUES (40, 5.1, 3.5, 1.4, 0.2, 0.28, 'virginica', :wide);
RESET ROLE;
SELECT prediction FROM flowers WHERE id = 40;
DELETE FROM flowers WHERE id = 40;
-- The trigger predicts with the table owner's rights: the table can go to
-- an owner allowed to use the project, and to no other.
SELECT sqlstate, message, hint FROM try($$ALTER TABLE flowers OWNER TO amb_dave$$);
SELECT ambient.grant('bloom', 'amb_dave', 'predict');
ALTER TABLE flowers OWNER TO amb_dave;
-- An owner who loses that use later (a revoke, a membership taken away,
-- REASSIGN OWNED, none of which DDL guards see): writes go on, with the
-- gap visible, no prediction and no model.
SELECT ambient.revoke('bloom', 'amb_dave', 'predict');
INSERT INTO flowers (id, sepal_length, sepal_width, petal_length, petal_width, petal_area) VALUES (41, 5.1, 3.5, 1.4, 0.2, 0.28)
RETURNING prediction IS NULL AS no_prediction, prediction_model_id IS NULL AS no_model;
DELETE FROM flowers WHERE id = 41;
ALTER TABLE flowers OWNER TO CURRENT_USER;
-- Only the event trigger may call the checks it runs.
SET ROLE amb_dave;
SELECT sqlstate, message FROM try($$SELECT ambient.check_attached_tables(ARRAY['flowers'::regclass::oid], '{}', '{}')$$);
RESET ROLE;
-- A dropped table's attachment is forgotten.
CREATE TABLE doomed (LIKE flowers);
SELECT prediction_column FROM ambient.attach('bloom', 'doomed');
SELECT count(*) AS attachments FROM ambient.attachments WHERE project = 'bloom';
DROP TABLE doomed;
SELECT count(*) AS attachments FROM ambient.attachments WHERE project = 'bloom';

-- Two projects on one table never share prediction columns.
SELECT version FROM ambient.train('parts', relation => 'iris', target => 'species', algorithm => 'decision_tree',
                                  features => ARRAY['sepal_length', 'sepal_width', 'petal_length', 'petal_width']);
SELECT sqlstate, message FROM try($$SELECT ambient.attach('parts', 'flowers')$$);
SELECT prediction_column, model_id_column FROM ambient.attach('parts', 'flowers', prediction_column => 'parts_prediction');
INSERT INTO flowers (id, sepal_length, sepal_width, petal_length, petal_width, petal_area)
SELECT id, sepal_length, sepal_width, petal_length, petal_width, petal_length * petal_width FROM iris
 WHERE id BETWEEN 22 AND 30 OR id BETWEEN 51 AND 60 OR id BETWEEN 101 AND 110;
UPDATE flowers f SET species = i.species FROM iris i WHERE i.id = f.id;
SELECT version, labelled_rows FROM ambient.monitor('bloom') ORDER BY version;
SELECT version, labelled_rows FROM ambient.monitor('parts') ORDER BY version;

-- Training on the attached table itself: the columns triggers write are
-- never features.
ALTER TABLE flowers DROP COLUMN remark;
SELECT model_id AS selfie FROM ambient.train('selfie', relation => 'flowers', target => 'species',
                                             algorithm => 'decision_tree') \gset
SELECT features FROM ambient.models WHERE model_id = :selfie;

-- Partitioned tables: one attachment serves every partition, those made
-- later too, with the partitioned table's owner's rights (the partition's
-- owner has none on the project).
CREATE TABLE parted (id int, sepal_length float8, sepal_width float8, petal_length float8,
                     petal_width float8, species text) PARTITION BY RANGE (id);
CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (100);
SELECT prediction_column FROM ambient.attach('parts', 'parted');
CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM (100) TO (1000);
ALTER TABLE parted_high OWNER TO amb_dave;
INSERT INTO parted SELECT id, sepal_length, sepal_width, petal_length, petal_width, species FROM iris;
INSERT INTO parted_high (id, sepal_length, sepal_width, petal_length, petal_width) VALUES (500, 6.3, 3.3, 6.0, 2.5)
RETURNING prediction;
SELECT count(*) AS rows, count(prediction) AS predicted,
       bool_and(prediction = ambient.predict_label('parts', p.*)) AS as_predict FROM parted p;
SELECT version, labelled_rows FROM ambient.monitor('parts') ORDER BY version;
SELECT sqlstate, regexp_replace(message, 'model \d+', 'model <id>') AS message
  FROM try($$ALTER TABLE parted RENAME COLUMN petal_width TO pw$$);
-- A table attached on its own, then made a partition of the attached
-- partitioned table, keeps taking writes (both triggers fire).
CREATE TABLE solo (LIKE parted);
SELECT prediction_column FROM ambient.attach('parts', 'solo');
ALTER TABLE parted ATTACH PARTITION solo FOR VALUES FROM (1000) TO (2000);
INSERT INTO solo (id, sepal_length, sepal_width, petal_length, petal_width) VALUES (1500, 6.3, 3.3, 6.0, 2.5)
RETURNING prediction;
INSERT INTO parted (id, sepal_length, sepal_width, petal_length, petal_width) VALUES (1501, 5.1, 3.5, 1.4, 0.2)
RETURNING prediction;
ALTER TABLE parted DETACH PARTITION solo;
SELECT ambient.detach('parts', 'solo');

-- A trigger made by hand on an attached table, by a role with TRIGGER on
-- it, cannot feed the project.
GRANT TRIGGER ON flowers TO amb_dave;
SET ROLE amb_dave;
CREATE TRIGGER fake BEFORE INSERT ON flowers FOR EACH ROW
    EXECUTE FUNCTION ambient.predict_trigger('bloom', 'prediction', 'prediction_model_id', 'species');
RESET ROLE;
SELECT sqlstate, message FROM try($$INSERT INTO flowers (id, sepal_length, sepal_width, petal_length, petal_width, petal_area)
                                    VALUES (31, 5.1, 3.5, 1.4, 0.2, 0.28)$$);
DROP TRIGGER fake ON flowers;

-- 4. Live counts follow the table, whatever the trigger missed: four
-- labelled rows; detach; a label changes; attach; it changes again.
CREATE TABLE gap (id int PRIMARY KEY, sepal_length float8, sepal_width float8, petal_length float8,
                  petal_width float8, species text);
SELECT prediction_column FROM ambient.attach('parts', 'gap');
INSERT INTO gap SELECT id, sepal_length, sepal_width, petal_length, petal_width, species FROM iris WHERE id IN (1, 2, 51, 101);
CREATE FUNCTION gap_counts() RETURNS TABLE (rows bigint, accuracy float8) LANGUAGE sql AS $$
    SELECT count(*), avg((prediction = species)::int) FROM gap
     WHERE species IS NOT NULL AND prediction IS NOT NULL AND prediction_model_id IS NOT NULL $$;
-- (gap alone: the project's other tables are detached)
SELECT ambient.detach('parts', 'parted');
SELECT ambient.detach('parts', 'flowers');
SELECT labelled_rows, (metrics->>'accuracy')::float8 AS accuracy FROM ambient.monitor('parts');
SELECT ambient.detach('parts', 'gap');
UPDATE gap SET species = 'versicolor' WHERE id = 1;
SELECT prediction_column FROM ambient.attach('parts', 'gap');
UPDATE gap SET species = 'virginica' WHERE id = 1;
SELECT labelled_rows, (metrics->>'accuracy')::float8 AS accuracy FROM ambient.monitor('parts');
SELECT * FROM gap_counts();
-- A disabled trigger, replication apply, TRUNCATE: still the table's truth.
ALTER TABLE gap DISABLE TRIGGER ALL;
UPDATE gap SET species = 'setosa' WHERE id = 1;
ALTER TABLE gap ENABLE TRIGGER ALL;
SELECT labelled_rows, (metrics->>'accuracy')::float8 AS accuracy FROM ambient.monitor('parts');
SET session_replication_role = replica;
INSERT INTO gap (id, sepal_length, sepal_width, petal_length, petal_width, species) VALUES (3, 4.7, 3.2, 1.3, 0.2, 'setosa');
RESET session_replication_role;
SELECT labelled_rows, (metrics->>'accuracy')::float8 AS accuracy FROM ambient.monitor('parts');
TRUNCATE gap;
SELECT count(*) AS models_with_labelled_rows FROM ambient.monitor('parts');

-- 5. Logs stay bounded: 100,000 labelled rows under a windowed policy,
-- three runs. No log grows with the rows, and each run log keeps its
-- newest ambient.log_rows_per_project rows.
CREATE TABLE stream (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), sepal_length float8,
                     sepal_width float8, petal_length float8, petal_width float8, species text);
SELECT ambient.detach('parts', 'gap');
SELECT prediction_column FROM ambient.attach('parts', 'stream');
INSERT INTO stream (id, sepal_length, sepal_width, petal_length, petal_width, species)
SELECT g, i.sepal_length, i.sepal_width, i.petal_length, i.petal_width, i.species
  FROM generate_series(1, 100000) g JOIN iris i ON i.id = 1 + g % 150;
SELECT ambient.set_policy('parts', '{"action": "alert", "time_column": "at", "window": "1 hour", "max_drift": 1, "min_live_metric": 1.01}') ->> 'action' AS action;
-- A window's time column is read as the table's owner, so the caller must
-- be allowed to read it: the team's carol cannot probe bob's table
-- through the counts.
SELECT ambient.grant('teamp', 'amb_bob', 'predict');
CREATE TABLE bob.visits (id int PRIMARY KEY, at timestamptz DEFAULT now(), income float8, debt float8, repaid boolean);
ALTER TABLE bob.visits OWNER TO amb_bob;
SELECT prediction_column FROM ambient.attach('teamp', 'bob.visits');
SET ROLE amb_carol;
SELECT sqlstate, message FROM try($$SELECT * FROM ambient.monitor('teamp', time_column => 'at', "window" => '1 day')$$);
RESET ROLE;
SELECT ambient.detach('teamp', 'bob.visits');
CREATE FUNCTION catalog_rows() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE total bigint := 0; n bigint; t regclass;
BEGIN
    -- The audit trail is never pruned: it keeps every change, by design.
    FOR t IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'ambient'::regnamespace AND c.relkind = 'r'
                AND c.oid <> 'ambient.audit_log'::regclass LOOP
        EXECUTE format('SELECT count(*) FROM %s', t) INTO n;
        total := total + n;
    END LOOP;
    RETURN total;
END $$;
SET ambient.log_rows_per_project = 2;
SELECT status, action, reason FROM ambient.run_policy('parts');
SELECT status, action FROM ambient.run_policy('parts');
SELECT catalog_rows() AS after_two \gset
SELECT status, action FROM ambient.run_policy('parts');
-- Steady: a third run leaves the catalog exactly as large as it found it.
SELECT catalog_rows() - :after_two AS grown;
SELECT (SELECT count(*) FROM ambient.policy_runs WHERE project = 'parts') AS policy_runs,
       (SELECT count(*) FROM ambient.alerts WHERE project = 'parts') AS alerts,
       (SELECT count(DISTINCT run_id) FROM ambient.drift_runs WHERE project = 'parts') AS drift_runs,
       (SELECT count(*) FROM ambient.monitor_runs WHERE project = 'parts') AS monitor_runs;
RESET ambient.log_rows_per_project;

-- 7. Time inputs do not drift: unchanged numbers with now() timestamps.
CREATE TABLE timed AS
SELECT g AS id, (g % 10)::float8 AS x, now() - g * interval '1 day' AS seen_at, (g % 10 >= 5) AS y
  FROM generate_series(1, 300) g;
SELECT version FROM ambient.train('timed', relation => 'timed', target => 'y', algorithm => 'decision_tree',
                                  features => ARRAY['x', 'seen_at']);
SELECT feature, status FROM ambient.drift('timed', query => 'SELECT (g % 10)::float8 AS x, now() AS seen_at FROM generate_series(1, 300) g');

-- 8. A run the statement's own statement_timeout would end is stopped
-- first, and recorded.
SELECT version FROM ambient.train('sleepy', query => 'SELECT x, z, label FROM truth WHERE pg_catalog.pg_sleep(0.01) IS NOT NULL',
                                  target => 'label', algorithm => 'decision_tree');
SELECT ambient.set_policy('sleepy', '{"action": "retrain", "retrain_after_changed_rows": 1, "max_seconds": 600}') ->> 'action' AS action;
INSERT INTO truth SELECT g, (g % 10)::float8, (g % 7)::float8, (g % 10 >= 5) FROM generate_series(401, 410) g;
SET statement_timeout = '2s';
SELECT status, reason FROM ambient.run_policy('sleepy');
RESET statement_timeout;
SELECT status, reason FROM ambient.policy_runs WHERE project = 'sleepy';

-- A full deploy or rollback ends a canary: the challenger stops serving.
SELECT version FROM ambient.train('parts', relation => 'iris', algorithm => 'decision_tree',
                                  hyperparams => '{"max_depth": 2}', deploy => 'always');
SELECT model_id AS third FROM ambient.train('parts', relation => 'iris', algorithm => 'decision_tree',
                                            hyperparams => '{"max_depth": 1}', deploy => 'never') \gset
SELECT ambient.deploy('parts', :third, traffic => 0.5) = :third AS canary;
SELECT count(DISTINCT ambient.route('parts', g::text)) AS models_serving FROM generate_series(1, 100) g;
SELECT ambient.rollback('parts') IS NOT NULL AS rolled_back;
SELECT count(DISTINCT ambient.route('parts', g::text)) AS models_serving FROM generate_series(1, 100) g;
SELECT event, reason FROM ambient.challenges WHERE project = 'parts' ORDER BY event_id DESC LIMIT 1;

-- A project a role cannot see answers as one that does not exist.
SET ROLE amb_dave;
SELECT sqlstate, replace(message, 'parts', '<name>') AS message, hint
  FROM try($$SELECT * FROM ambient.monitor('parts')$$);
SELECT sqlstate, replace(message, 'no_such_project', '<name>') AS message, hint
  FROM try($$SELECT * FROM ambient.monitor('no_such_project')$$);
RESET ROLE;

-- Only superusers set the training limits.
SET ROLE amb_dave;
SELECT * FROM try($$SET ambient.training_threads = 64$$);
SELECT * FROM try($$SET ambient.max_classes = 100000$$);
SELECT * FROM try($$SET ambient.log_rows_per_project = 1$$);
RESET ROLE;

-- The roles go (they own nothing outside this database, dropped next run).
-- (Their projects' live models read their tables: accepting that first.)
SELECT p AS project, array_length(ambient.release(p), 1) AS released
  FROM unnest(ARRAY['bobs', 'bobrel', 'teamp']) AS p;
DROP OWNED BY amb_bob, amb_team, amb_carol, amb_dave;
DROP ROLE amb_bob, amb_carol, amb_team, amb_dave;
