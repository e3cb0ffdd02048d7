-- History you can audit, on a pump-monitoring table: a person trains and
-- keeps a copy of the rows, a policy retrains, then the log, a diff, a
-- tag, a reproduction, the lineage of one stored prediction, the source
-- guard, and the audit trail with its hash chain. `make demo` runs it
-- after features.sql; the docs test runs it too.
\set ON_ERROR_STOP on
\set QUIET on
\pset footer off
CREATE EXTENSION IF NOT EXISTS pg_ambient;
SET ambient.progress = off;
SET client_min_messages = warning;
SELECT setseed(0.17) AS seeded \gset

-- A pump fails when it runs hot and shakes, more so when it is old.
CREATE OR REPLACE FUNCTION pg_temp.readings(n int, first_id int)
RETURNS TABLE (id int, temperature float8, vibration float8, age_years int, failed boolean)
LANGUAGE sql AS $$
    SELECT first_id + g, t, v, a, t / 80 + v / 10 + a / 40.0 + (random() - 0.5) * 0.3 > 1.0
      FROM (SELECT g, round((20 + random() * 60)::numeric, 1)::float8 AS t,
                   round((random() * 8)::numeric, 2)::float8 AS v,
                   (random() * 15)::int AS a
              FROM generate_series(1, n) g) r
$$;

\echo '== 1. 600 readings, and a first model trained by a person, keeping a copy of its rows.'
DROP TABLE IF EXISTS pump_readings, pump_stream CASCADE;
CREATE TABLE pump_readings AS SELECT * FROM pg_temp.readings(600, 0);
ALTER TABLE pump_readings ADD PRIMARY KEY (id);
SELECT version, algorithm, deployed
  FROM ambient.train('pumps', relation => 'pump_readings', target => 'failed',
                     algorithm => 'logistic_regression', snapshot => 'copy');

\echo '== 2. 400 more readings arrive; the policy retrains, and deploys the new model if it is better.'
SELECT ambient.set_policy('pumps', '{"action": "retrain_and_deploy_if_better",
                                     "retrain_after_changed_rows": 200}') ->> 'action' AS policy;
INSERT INTO pump_readings SELECT * FROM pg_temp.readings(400, 600);
SELECT status, action, reason FROM ambient.run_policy('pumps');

\echo '== 3. A person tries a tree, without deploying it.'
SELECT version, algorithm, deployed
  FROM ambient.train('pumps', relation => 'pump_readings', algorithm => 'decision_tree',
                     hyperparams => '{"max_depth": 4}', deploy => 'never');

-- Model ids are global to the database; the versions name them here.
SELECT max(model_id) FILTER (WHERE version = 1) AS v1, max(model_id) FILTER (WHERE version = 2) AS v2,
       max(model_id) FILTER (WHERE version = 3) AS v3
  FROM ambient.models WHERE project = 'pumps' \gset

\echo '== 4. The log, newest first: who trained each model, why, and where it stands.'
SELECT graph, version, algorithm, round(score::numeric, 3) AS f1, why, marks, tags
  FROM ambient.log('pumps');

\echo '== 5. What changed between version 1 and the policy''s version 2.'
SELECT aspect, key, a, b FROM ambient.diff(:v1, :v2)
 WHERE aspect IN ('model', 'data', 'source') AND key NOT IN ('id', 'trained_at', 'artifact_sha256', 'data_sha256')
    OR key LIKE 'f1 %';

\echo '== 6. Tags: the tree is the candidate; predict with it by name, then deploy it by name.'
SELECT ambient.tag(:v3, 'candidate');
SELECT ambient.predict_proba('pumps@candidate', ARRAY[75.0, 7.5, 12]) AS candidate,
       ambient.predict_proba('pumps', ARRAY[75.0, 7.5, 12]) AS live;
SELECT ambient.deploy('pumps', 'pumps@candidate', reason => 'the tree catches old pumps') AS deployed;

\echo '== 7. Forty labels are corrected. Version 1 kept a copy: it reproduces byte for byte.'
\echo '==    Version 3 kept only a hash of its rows: the reproduction says the data changed.'
UPDATE pump_readings SET failed = NOT failed WHERE id % 25 = 0;
SELECT 1 AS version, identical, data_identical, read_from, reason FROM ambient.reproduce(:v1)
UNION ALL
SELECT 3, identical, data_identical, read_from, left(reason, 40) || '...' FROM ambient.reproduce(:v3);

\echo '== 8. A stored prediction, traced back to its model and that model''s lineage.'
CREATE TABLE pump_stream (id int PRIMARY KEY, temperature float8, vibration float8, age_years int);
SELECT prediction_column FROM ambient.attach('pumps', 'pump_stream');
INSERT INTO pump_stream VALUES (1, 78.5, 6.9, 14);
SELECT node, kind, edge, left(detail, 60) AS detail
  FROM ambient.lineage_of_prediction('pump_stream', 1)
 WHERE kind NOT IN ('deployment', 'snapshot', 'tag');

\echo '== 9. The table the live model was trained from cannot be dropped from under it.'
CREATE OR REPLACE FUNCTION pg_temp.refusal(statement text)
RETURNS TABLE (code text, message text, hint text) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
END $$;
\x on
SELECT * FROM pg_temp.refusal('DROP TABLE pump_readings');
\x off

\echo '== 10. The audit trail of the project, and a check of its hash chain.'
SELECT position, action, model_id, role, reason FROM ambient.audit
 WHERE project = 'pumps' ORDER BY position;
SELECT entries, valid, problem FROM ambient.verify_audit();
