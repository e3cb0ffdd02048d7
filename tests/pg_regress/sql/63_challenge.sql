-- Canary and shadow: a challenger serves a stable share of the keys, or
-- predicts beside the live model without serving; compare, promote and
-- end_trial finish the trial; rollback still walks history afterwards.
SET ambient.progress = off;
SELECT version FROM ambient.train('duel', relation => 'iris', target => 'species', algorithm => 'decision_tree',
                                  hyperparams => '{"max_depth": 1}');
SELECT version FROM ambient.train('duel', relation => 'iris', algorithm => 'decision_tree',
                                  hyperparams => '{"max_depth": 3}', deploy => 'never');
CREATE TABLE duel_rows (id int PRIMARY KEY, sepal_length float8, sepal_width float8,
                        petal_length float8, petal_width float8, species text);
SELECT prediction_column FROM ambient.attach('duel', 'duel_rows');
SELECT model_id AS challenger FROM ambient.models WHERE project = 'duel' AND version = 2 \gset

-- Bad trials.
SELECT * FROM try(format('SELECT ambient.deploy(%L, %s, traffic => 0)', 'duel', :challenger));
SELECT * FROM try(format('SELECT ambient.deploy(%L, %s, traffic => 1)', 'duel', :challenger));
SELECT * FROM try($$SELECT ambient.promote('duel')$$);
SELECT * FROM try($$SELECT ambient.end_trial('duel')$$);
SELECT * FROM try($$SELECT * FROM ambient.compare('duel')$$);

-- Another role may not start, finish or compare a trial (the model id is
-- enough to name a model; the project's owner decides).
BEGIN;
CREATE ROLE ambient_mallet;
SET ROLE ambient_mallet;
SELECT sqlstate, message FROM try(format('SELECT ambient.shadow(%L, %s)', 'duel', :challenger));
SELECT sqlstate, message FROM try(format('SELECT ambient.deploy(%L, %s, traffic => 0.5)', 'duel', :challenger));
SELECT sqlstate, message FROM try($$SELECT ambient.promote('duel')$$);
SELECT sqlstate, message FROM try($$SELECT ambient.end_trial('duel')$$);
SELECT sqlstate, message FROM try($$SELECT * FROM ambient.compare('duel')$$);
RESET ROLE;
ROLLBACK;
SELECT count(*) AS trials_started FROM ambient.challenges WHERE project = 'duel';

-- A canary on a fifth of the keys: the live model stays version 1.
SELECT ambient.deploy('duel', :challenger, traffic => 0.2) = :challenger AS started;
SELECT live_version FROM ambient.overview WHERE project = 'duel';
SELECT sqlstate, regexp_replace(message, 'model \d+', 'model <id>') AS message
  FROM try(format('SELECT ambient.shadow(%L, %s)', 'duel', :challenger));
INSERT INTO duel_rows (id, sepal_length, sepal_width, petal_length, petal_width)
SELECT g, i.sepal_length, i.sepal_width, i.petal_length, i.petal_width
  FROM generate_series(1, 10000) g JOIN iris i ON i.id = 1 + g % 150;
-- About a fifth of the rows went to the challenger (binomial sd 0.004),
-- and each row says which model answered.
SELECT abs(avg((prediction_model_id = :challenger)::int) - 0.2) < 0.02 AS about_a_fifth,
       count(DISTINCT prediction_model_id) AS models
  FROM duel_rows;
-- The same key always gets the same model: predicted again (new inputs),
-- every row stays with its model.
CREATE TEMP TABLE before AS SELECT id, prediction_model_id FROM duel_rows;
UPDATE duel_rows SET petal_length = petal_length + 0.01;
SELECT count(*) AS moved FROM duel_rows d JOIN before b USING (id)
 WHERE d.prediction_model_id <> b.prediction_model_id;
-- In a query, a key routes the same way: ambient.route names the model
-- each key gets, and the keyed predict answers with it.
SELECT bool_and(ambient.route('duel', id::text) = prediction_model_id) AS route_agrees,
       bool_and(ambient.predict_label('duel', d.*, d.id::text) = prediction) AS keyed_predict_agrees,
       count(DISTINCT ambient.route('duel', id::text)) AS models
  FROM duel_rows d;
-- Labels arrive; compare scores both on the same labelled rows.
UPDATE duel_rows d SET species = i.species FROM iris i WHERE i.id = 1 + d.id % 150;
SELECT role, version, labelled_rows, (metrics->>'f1')::float8 > 0.9 AS strong FROM ambient.compare('duel');
-- Promote: the challenger is live; the trial is over.
SELECT ambient.promote('duel', 'stronger on the same rows') = :challenger AS promoted;
SELECT live_version FROM ambient.overview WHERE project = 'duel';
SELECT mode, traffic, event, version FROM ambient.challenges WHERE project = 'duel' ORDER BY event_id;

-- A shadow: version 1 predicts beside the live version 2, recorded apart.
SELECT model_id AS first FROM ambient.models WHERE project = 'duel' AND version = 1 \gset
SELECT ambient.shadow('duel', :first) = :first AS shadowing;
INSERT INTO duel_rows (id, sepal_length, sepal_width, petal_length, petal_width)
SELECT 20000 + id, sepal_length, sepal_width, petal_length, petal_width FROM iris;
SELECT count(*) AS served_by_live FROM duel_rows
 WHERE id > 20000 AND prediction_model_id = (SELECT live_model_id FROM ambient.overview WHERE project = 'duel');
SELECT count(*) AS shadowed, count(DISTINCT row_key) AS keys, min(relation::text) AS relation
  FROM ambient.shadow_predictions WHERE project = 'duel';
SELECT ambient.end_trial('duel') = :first AS ended;
-- Without a canary every key gets the live model.
SELECT count(DISTINCT ambient.route('duel', g::text)) AS models FROM generate_series(1, 100) g;
-- Ending the trial deletes its shadow predictions (they were for the
-- trial), and rows written after it are not shadowed.
INSERT INTO duel_rows (id, sepal_length, sepal_width, petal_length, petal_width) VALUES (30000, 5, 3, 1.5, 0.2);
SELECT count(*) AS shadowed_after_end FROM ambient.shadow_predictions WHERE project = 'duel';
-- Rollback after a promoted canary goes back to the model before it.
SELECT ambient.rollback('duel') = :first AS back_to_first;
SELECT event, mode FROM ambient.challenges WHERE project = 'duel' ORDER BY event_id DESC LIMIT 1;
