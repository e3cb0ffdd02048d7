-- Deployment: champion and challenger, manual deploys, strategies, rollback.
CREATE TABLE wide AS
SELECT g AS id, (g % 13)::float8 AS x1, ((g * 7) % 5)::float8 AS x2, ((g * 3) % 11)::float8 AS x3,
       CASE WHEN g % 13 < 4 THEN 'low' WHEN (g * 3) % 11 < 5 THEN 'mid' ELSE 'high' END AS band
  FROM generate_series(1, 400) AS g;

-- v1, a stump, deploys: it is the project's first model.
SELECT version, deployed FROM ambient.train('band', relation => 'wide', target => 'band', hyperparams => '{"max_depth": 1}', algorithm => 'decision_tree');
-- v2 is deeper and beats v1 on the same test rows, so it replaces it.
SELECT version, deployed FROM ambient.train('band', relation => 'wide', hyperparams => '{"max_depth": 3}', algorithm => 'decision_tree');
-- v3 only ties v2 on the same rows; a tie keeps the live model.
SELECT version, deployed FROM ambient.train('band', relation => 'wide', hyperparams => '{"max_depth": 2}', algorithm => 'decision_tree');
-- 'never' and 'always' do as they say.
SELECT version, deployed FROM ambient.train('band', relation => 'wide', deploy => 'never', algorithm => 'decision_tree');
SELECT version, deployed FROM ambient.train('band', relation => 'wide', hyperparams => '{"max_depth": 1}', deploy => 'always', algorithm => 'decision_tree');
SELECT version, round(score::numeric, 4) AS f1, live FROM ambient.models WHERE project = 'band' ORDER BY version;
SELECT version, previous_model_id IS NOT NULL AS had_previous, strategy FROM ambient.deployments WHERE project = 'band' ORDER BY deployment_id;

-- best_score orders the scores as numbers, newest first on ties.
SELECT ambient.deploy('band', 'best_score', reason => 'pick the best') IS NOT NULL AS ok;
SELECT live_version('band'), (SELECT version FROM ambient.models WHERE project = 'band' ORDER BY score DESC, version DESC LIMIT 1) AS best;
SELECT version, strategy, reason FROM ambient.deployments WHERE project = 'band' ORDER BY deployment_id DESC LIMIT 1;
-- A score that is not a number never wins (in SQL, NaN sorts above every number).
UPDATE ambient.model_store SET score = 'NaN'
 WHERE project_id = (SELECT id FROM ambient.projects WHERE name = 'band') AND version = 1;
SELECT ambient.deploy('band', 'best_score') IS NOT NULL AS ok;
SELECT live_version('band');
UPDATE ambient.model_store SET score = (metrics->>'f1')::float8
 WHERE project_id = (SELECT id FROM ambient.projects WHERE name = 'band') AND version = 1;
SELECT ambient.deploy('band', 'most_recent') IS NOT NULL AS ok;
SELECT live_version('band');

-- A model by id, with a reason. Deploying the live model again adds nothing.
SELECT ambient.deploy('band', (SELECT model_id FROM ambient.models WHERE project = 'band' AND version = 3),
                      reason => 'canary') IS NOT NULL AS ok;
SELECT count(*) AS deployments_before FROM ambient.deployments WHERE project = 'band';
SELECT ambient.deploy('band', (SELECT model_id FROM ambient.models WHERE project = 'band' AND live)) IS NOT NULL AS ok;
SELECT count(*) AS deployments_after FROM ambient.deployments WHERE project = 'band';
SELECT version, strategy, reason FROM ambient.deployments WHERE project = 'band' ORDER BY deployment_id;

-- Rollback walks back through the history above, one deployment further each time
-- (3, then 5, 3, 5, 2, 1), instead of flipping between the last two.
SELECT ambient.rollback('band', reason => 'canary failed') IS NOT NULL AS ok;
SELECT live_version('band');
SELECT ambient.rollback('band') IS NOT NULL AS ok;
SELECT live_version('band');
SELECT ambient.rollback('band') IS NOT NULL AS ok;
SELECT live_version('band');
SELECT ambient.rollback('band') IS NOT NULL AS ok;
SELECT live_version('band');
SELECT ambient.rollback('band') IS NOT NULL AS ok;
SELECT live_version('band');
SELECT * FROM try($$SELECT ambient.rollback('band')$$);
SELECT live_version('band');
SELECT version, previous_model_id IS NOT NULL AS had_previous, strategy, reason
  FROM ambient.deployments WHERE project = 'band' ORDER BY deployment_id DESC LIMIT 5;

-- Transactions: a train, deploy or rollback that rolls back leaves no trace.
SELECT ambient.deploy('band', 'best_score') IS NOT NULL AS ok;
CREATE TEMP TABLE counts AS
SELECT (SELECT count(*) FROM ambient.model_store) AS models, (SELECT count(*) FROM ambient.snapshots) AS snapshots,
       (SELECT count(*) FROM ambient.deployment_log) AS deployments, (SELECT count(*) FROM ambient.projects) AS projects,
       live_version('band') AS live;
BEGIN;
SELECT version, deployed FROM ambient.train('band', relation => 'wide', deploy => 'always', algorithm => 'decision_tree');
SELECT version, deployed FROM ambient.train('brand_new', relation => 'wide', target => 'band', algorithm => 'decision_tree');
SELECT ambient.rollback('band') IS NOT NULL AS rolled_back_in_tx;
SELECT ambient.deploy('band', 'most_recent') IS NOT NULL AS deployed_in_tx;
ROLLBACK;
SELECT (SELECT count(*) FROM ambient.model_store) = c.models AS same_models,
       (SELECT count(*) FROM ambient.snapshots) = c.snapshots AS same_snapshots,
       (SELECT count(*) FROM ambient.deployment_log) = c.deployments AS same_deployments,
       (SELECT count(*) FROM ambient.projects) = c.projects AS same_projects,
       live_version('band') = c.live AS same_live
  FROM counts c;

-- drop_model drops models that were never deployed, and refuses the others.
SELECT version FROM ambient.train('band', relation => 'wide', deploy => 'never', algorithm => 'decision_tree');
SELECT ambient.drop_model((SELECT max(model_id) FROM ambient.models WHERE project = 'band')) AS dropped;
SELECT sqlstate, regexp_replace(message, 'model [0-9]+', 'model <id>') AS message, hint
  FROM try($$SELECT ambient.drop_model((SELECT model_id FROM ambient.models WHERE project = 'band' AND version = 1))$$);
-- drop_project needs force while the project has models.
SELECT * FROM try($$SELECT ambient.drop_project('band')$$);
SELECT ambient.drop_project('band', force => true) AS dropped;
SELECT (SELECT count(*) FROM ambient.models WHERE project = 'band') AS models_left,
       (SELECT count(*) FROM ambient.deployments WHERE project = 'band') AS deployments_left;
SELECT * FROM try($$SELECT ambient.predict('band', ARRAY[1, 2, 3])$$);

-- A PL/pgSQL loop keeps its expressions, and their call sites, for the
-- whole transaction. Each round still sees the deploys made before it, as a
-- new statement would ...
SELECT model_id AS looped_full FROM ambient.train('looped', relation => 'iris', target => 'species', algorithm => 'decision_tree') \gset
SELECT model_id AS looped_stump FROM ambient.train('looped', relation => 'iris', hyperparams => '{"max_depth": 1}', deploy => 'never', algorithm => 'decision_tree') \gset
CREATE FUNCTION public.labels_across_deploys(stump bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE seen text := '';
BEGIN
  FOR round IN 1..3 LOOP
    seen := seen || ambient.predict_label('looped', ARRAY[7.7, 3.0, 6.1, 2.3]) || ' ';
    IF round = 1 THEN PERFORM ambient.deploy('looped', stump); END IF;
    IF round = 2 THEN PERFORM ambient.rollback('looped'); END IF;
  END LOOP;
  RETURN seen;
END $$;
SELECT labels_across_deploys(:looped_stump);
-- A deploy undone by a rolled-back exception block is undone for the call
-- site too, though the snapshot (REPEATABLE READ) and the command counter
-- are the same as before it.
BEGIN ISOLATION LEVEL REPEATABLE READ;
CREATE FUNCTION pg_temp.labels_across_undone_deploy(stump bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE seen text := '';
BEGIN
  FOR round IN 1..2 LOOP
    BEGIN
      IF round = 1 THEN PERFORM ambient.deploy('looped', stump); END IF;
      seen := seen || ambient.predict_label('looped', ARRAY[7.7, 3.0, 6.1, 2.3]) || ' ';
      IF round = 1 THEN RAISE EXCEPTION 'undo the deploy'; END IF;
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
  END LOOP;
  RETURN seen;
END $$;
SELECT pg_temp.labels_across_undone_deploy(:looped_stump);
COMMIT;
-- A row type can change while a statement runs: here functions alter or
-- rename columns between the rows they return. The transaction has written
-- already, so nothing but the row's own type tells the second row apart.
BEGIN;
CREATE TABLE looped_rows AS SELECT * FROM iris WHERE id = 51;
CREATE FUNCTION pg_temp.row_altered_on(round int) RETURNS looped_rows LANGUAGE plpgsql AS $$
DECLARE r looped_rows;
BEGIN
  IF round = 2 THEN
    ALTER TABLE looped_rows ALTER COLUMN petal_length TYPE numeric(4, 1), ALTER COLUMN petal_width TYPE numeric(4, 1);
  END IF;
  SELECT * INTO r FROM looped_rows;
  RETURN r;
END $$;
SELECT round, ambient.predict_label('looped', pg_temp.row_altered_on(round)) AS label
  FROM generate_series(1, 2) AS round;
-- Renamed: by name, petal_length now holds 1.4 and petal_width 4.7, and the
-- second row is read so, as a new statement reads it.
CREATE FUNCTION pg_temp.row_swapped_on(round int) RETURNS looped_rows LANGUAGE plpgsql AS $$
DECLARE r looped_rows;
BEGIN
  IF round = 2 THEN
    ALTER TABLE looped_rows RENAME COLUMN petal_length TO swapping;
    ALTER TABLE looped_rows RENAME COLUMN petal_width TO petal_length;
    ALTER TABLE looped_rows RENAME COLUMN swapping TO petal_width;
  END IF;
  SELECT * INTO r FROM looped_rows;
  RETURN r;
END $$;
SELECT round, ambient.predict_label('looped', pg_temp.row_swapped_on(round)) AS label
  FROM generate_series(1, 2) AS round;
SELECT ambient.predict_label('looped', l.*) AS new_statement FROM looped_rows l;
COMMIT;
SELECT ambient.drop_project('looped', force => true) AS cleaned_up;
