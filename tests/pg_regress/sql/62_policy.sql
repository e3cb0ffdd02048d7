-- Policies: run_policy monitors, measures drift and changed rows, decides
-- and acts (alert, retrain, deploy if better, await approval, roll back);
-- every run leaves a row, a failed one too. NOTIFY and pg_cron are tested
-- from a real client (tests/integration/test_operations.py).
SET ambient.progress = off;
CREATE TABLE seen AS SELECT * FROM iris WHERE id <= 100;
ALTER TABLE seen ADD PRIMARY KEY (id);
-- A weak first model: one split.
SELECT version FROM ambient.train('guard', relation => 'seen', target => 'species', algorithm => 'decision_tree',
                                  hyperparams => '{"max_depth": 1}');
CREATE TABLE visits (id int PRIMARY KEY, sepal_length float8, sepal_width float8,
                     petal_length float8, petal_width float8, species text);
SELECT prediction_column FROM ambient.attach('guard', 'visits');
INSERT INTO visits (id, sepal_length, sepal_width, petal_length, petal_width)
SELECT id, sepal_length, sepal_width, petal_length, petal_width FROM iris;
UPDATE visits v SET species = i.species FROM iris i WHERE i.id = v.id;

-- No policy yet.
SELECT * FROM try($$SELECT * FROM ambient.run_policy('guard')$$);
-- Bad policies are refused.
SELECT * FROM try($$SELECT ambient.set_policy('guard', '{"action": "panic"}')$$);
SELECT * FROM try($$SELECT ambient.set_policy('guard', '{"min_accuracy": 0.9}')$$);
SELECT * FROM try($$SELECT ambient.set_policy('guard', '{"max_seconds": 0}')$$);
SELECT * FROM try($$SELECT ambient.set_policy('guard', '{"time_column": "x"}')$$);
SELECT * FROM try($$SELECT ambient.set_policy('guard', '{"time_column": "x", "window": "soon"}')$$);
SELECT * FROM try($$SELECT ambient.set_policy('guard', '{"drift": {"psi": 1}}')$$);
-- Every default is filled in.
SELECT ambient.set_policy('guard', '{"min_live_metric": 0.9, "action": "retrain_and_await_approval"}');

-- The live F1 of the one-split model is below 0.9: an alert, and a
-- retrain that waits for a person.
SELECT status, action, reason, model_id IS NOT NULL AS retrained FROM ambient.run_policy('guard');
SELECT kind, message FROM ambient.alerts WHERE project = 'guard';
SELECT version, state FROM ambient.approvals WHERE project = 'guard';
SELECT m.version, p.version AS parent_version
  FROM ambient.model_store s
  JOIN ambient.models m ON m.model_id = s.id
  JOIN ambient.models p ON p.model_id = s.parent_model_id
 WHERE m.project = 'guard';
SELECT live_version FROM ambient.overview WHERE project = 'guard';
-- A person approves it: it goes live, and the approval is logged.
SELECT ambient.approve(model_id, 'checked the leaderboard') = model_id AS approved
  FROM ambient.approvals WHERE project = 'guard' AND state = 'awaiting';
SELECT live_version FROM ambient.overview WHERE project = 'guard';
SELECT state, decided_by, reason FROM ambient.approvals WHERE project = 'guard';
SELECT strategy, reason FROM ambient.deployments WHERE project = 'guard' ORDER BY deployment_id DESC LIMIT 1;
SELECT sqlstate, regexp_replace(message, 'model \d+', 'model <id>') AS message
  FROM try($$SELECT ambient.approve((SELECT model_id FROM ambient.approvals WHERE project = 'guard'))$$);
SELECT sqlstate, regexp_replace(message, 'model \d+', 'model <id>') AS message
  FROM try($$SELECT ambient.reject((SELECT model_id FROM ambient.models WHERE project = 'guard' AND version = 1))$$);

-- rollback_if_worse: a good model goes live, then a worse one; rows the
-- worse one predicts get their labels, and the policy finds it below the
-- model before it on the same rows: it rolls back. (max_drift 1: only a
-- drift of every input would alert here.)
SELECT ambient.set_policy('guard', '{"action": "rollback_if_worse", "max_drift": 1}') ->> 'action' AS action;
SELECT version FROM ambient.train('guard', relation => 'iris', algorithm => 'decision_tree',
                                  hyperparams => '{"max_depth": 3}', deploy => 'always', new_contract => true);
SELECT version FROM ambient.train('guard', relation => 'seen', algorithm => 'decision_tree',
                                  hyperparams => '{"max_depth": 1}', deploy => 'always');
INSERT INTO visits (id, sepal_length, sepal_width, petal_length, petal_width, species)
SELECT id + 1000, sepal_length, sepal_width, petal_length, petal_width, species FROM iris;
SELECT status, action, reason LIKE 'the live model''s f1 % is below the previous model''s % on the same 150 labelled rows' AS why
  FROM ambient.run_policy('guard');
SELECT live_version FROM ambient.overview WHERE project = 'guard';
SELECT strategy, reason LIKE 'run_policy: %' AS by_policy FROM ambient.deployments WHERE project = 'guard'
 ORDER BY deployment_id DESC LIMIT 1;
SELECT kind FROM ambient.alerts WHERE project = 'guard' ORDER BY alert_id DESC LIMIT 1;
-- Run again: the live model is the better one now, nothing to do.
SELECT status FROM ambient.run_policy('guard');

-- retrain_after_changed_rows: new labelled rows in the live model's
-- training source since it was trained. The live model (version 3) was
-- trained on iris; version 4, on 'seen', goes live first.
SELECT ambient.deploy('guard', model_id) = model_id AS deployed
  FROM ambient.models WHERE project = 'guard' AND version = 4;
SELECT ambient.set_policy('guard', '{"action": "retrain", "retrain_after_changed_rows": 20}') ->> 'action' AS action;
INSERT INTO seen SELECT * FROM iris WHERE id > 100;
SELECT status, action, reason FROM ambient.run_policy('guard');

-- A run that runs out of time is rolled back and still recorded.
SELECT ambient.set_policy('guard', '{"action": "retrain", "retrain_after_changed_rows": 1, "max_seconds": 0.000001}') ->> 'action' AS action;
SELECT count(*) AS models_before FROM ambient.models WHERE project = 'guard' \gset
SELECT status, reason FROM ambient.run_policy('guard');
SELECT count(*) = :models_before AS nothing_written FROM ambient.models WHERE project = 'guard';
SELECT status, action, reason FROM ambient.policy_runs WHERE project = 'guard' ORDER BY run_id;
-- Without pg_cron in this database, scheduling says what to do.
SELECT * FROM try($$SELECT ambient.schedule('guard', '*/5 * * * *')$$);
-- Another role sees none of it.
BEGIN;
CREATE ROLE ambient_oscar;
SET ROLE ambient_oscar;
SELECT (SELECT count(*) FROM ambient.policy_runs) AS runs, (SELECT count(*) FROM ambient.alerts) AS alerts,
       (SELECT count(*) FROM ambient.approvals) AS approvals, (SELECT count(*) FROM ambient.project_policies) AS policies;
SELECT * FROM try($$SELECT * FROM ambient.run_policy('guard')$$);
SELECT * FROM try($$SELECT ambient.set_policy('guard', '{}')$$);
RESET ROLE;
ROLLBACK;
