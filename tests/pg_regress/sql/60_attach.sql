-- Predictions written at INSERT: a project attached to a table fills each
-- new row's prediction and the id of the model that made it; labels
-- written later feed live metrics (ambient.monitor).
SET ambient.progress = off;
SELECT version FROM ambient.train('live_iris', relation => 'iris', target => 'species',
                                  algorithm => 'decision_tree', hyperparams => '{"max_depth": 2}');
CREATE TABLE arrivals (
    id           serial PRIMARY KEY,
    sepal_length float8, sepal_width float8, petal_length float8, petal_width float8,
    species      text,
    arrived_at   timestamptz NOT NULL DEFAULT now()
);
-- The table has the target column, so predictions are of its type and its
-- values are the labels.
SELECT * FROM ambient.attach('live_iris', 'arrivals');
SELECT column_name, data_type FROM information_schema.columns
 WHERE table_name = 'arrivals' AND column_name LIKE 'prediction%' ORDER BY ordinal_position;
SELECT project, relation, prediction_column, model_id_column, label_column FROM ambient.attachments;

-- INSERT ... SELECT and COPY: every row predicted, with the live model's id.
INSERT INTO arrivals (sepal_length, sepal_width, petal_length, petal_width)
SELECT sepal_length, sepal_width, petal_length, petal_width FROM iris ORDER BY id LIMIT 100;
COPY arrivals (sepal_length, sepal_width, petal_length, petal_width) FROM stdin;
6.3	3.3	6.0	2.5
5.1	3.5	1.4	0.2
\.
SELECT count(*) AS rows, count(prediction) AS predicted,
       bool_and(prediction_model_id = (SELECT live_model_id FROM ambient.overview WHERE project = 'live_iris')) AS by_the_live_model,
       bool_and(prediction = ambient.predict_label('live_iris', a.*)) AS same_as_predict
  FROM arrivals a;
-- A prediction cannot be forged: the trigger overwrites what was given
-- with a model id that is not one of the project's.
INSERT INTO arrivals (sepal_length, sepal_width, petal_length, petal_width, prediction, prediction_model_id)
VALUES (5.1, 3.5, 1.4, 0.2, 'virginica', -1) RETURNING prediction, prediction_model_id > 0 AS real_id;
-- A row that arrives with what the project's model served (a restore, a
-- copy) keeps it: predicting again would rewrite what was served.
INSERT INTO arrivals (sepal_length, sepal_width, petal_length, petal_width, prediction, prediction_model_id)
VALUES (5.1, 3.5, 1.4, 0.2, 'virginica', (SELECT live_model_id FROM ambient.overview WHERE project = 'live_iris'))
RETURNING prediction, prediction_model_id = (SELECT live_model_id FROM ambient.overview WHERE project = 'live_iris') AS kept;
DELETE FROM arrivals WHERE id = (SELECT max(id) FROM arrivals);

-- A deploy: the next statement predicts with the new model.
SELECT version FROM ambient.train('live_iris', relation => 'iris', algorithm => 'decision_tree',
                                  hyperparams => '{"max_depth": 4}', deploy => 'always');
INSERT INTO arrivals (sepal_length, sepal_width, petal_length, petal_width)
SELECT sepal_length, sepal_width, petal_length, petal_width FROM iris ORDER BY id OFFSET 100;
SELECT m.version, count(*) AS rows
  FROM arrivals a JOIN ambient.models m ON m.model_id = a.prediction_model_id
 GROUP BY m.version ORDER BY m.version;

-- Labels arrive later. monitor() counts every labelled row per model.
UPDATE arrivals a SET species = i.species
  FROM (SELECT row_number() OVER (ORDER BY id) AS n, species FROM iris) i
 WHERE i.n = a.id AND a.id <= 100;
SELECT version, labelled_rows, (metrics->>'accuracy')::float8 > 0.5 AS accurate,
       metrics ? 'f1' AS has_f1
  FROM ambient.monitor('live_iris') ORDER BY version;
-- They are the metrics of the labelled rows, computed again by hand.
SELECT avg((prediction = species)::int)::float8 AS accuracy_by_hand
  FROM arrivals WHERE species IS NOT NULL AND prediction_model_id =
       (SELECT model_id FROM ambient.models WHERE project = 'live_iris' AND version = 1);
SELECT (metrics->>'accuracy')::float8 AS accuracy_by_monitor FROM ambient.monitor_runs
 WHERE project = 'live_iris' AND version = 1 ORDER BY run_id DESC LIMIT 1;
-- Each run counts the rows as they are: a label corrected later counts
-- once, with its latest value.
UPDATE arrivals SET species = 'setosa' WHERE id = 51;
UPDATE arrivals SET species = 'virginica' WHERE id = 51;
SELECT version, labelled_rows FROM ambient.monitor('live_iris') ORDER BY version;
SELECT avg((prediction = species)::int)::float8 = (SELECT (metrics->>'accuracy')::float8 FROM ambient.monitor_runs
         WHERE project = 'live_iris' AND version = 1 ORDER BY run_id DESC LIMIT 1) AS still_by_hand
  FROM arrivals WHERE species IS NOT NULL AND prediction_model_id =
       (SELECT model_id FROM ambient.models WHERE project = 'live_iris' AND version = 1);
-- Changing a row's inputs predicts it again; changing only its label does not.
UPDATE arrivals SET petal_length = 6.5, petal_width = 2.4 WHERE id = 1
RETURNING prediction, prediction_model_id = (SELECT live_model_id FROM ambient.overview WHERE project = 'live_iris') AS by_live;
SELECT version, labelled_rows FROM ambient.monitor('live_iris') ORDER BY version;
-- An UPDATE cannot forge what was served: the prediction and its model
-- are written back as they were.
SELECT prediction AS served, prediction_model_id AS served_by FROM arrivals WHERE id = 2 \gset
UPDATE arrivals SET prediction = 'forged', prediction_model_id = -5 WHERE id = 2
RETURNING prediction = :'served' AS kept_prediction, prediction_model_id = :served_by AS kept_model;
-- The late-label upsert: the row that exists gets its label once; the row
-- proposed by INSERT and never stored is never counted.
INSERT INTO arrivals (id, sepal_length, sepal_width, petal_length, petal_width, species)
VALUES (101, 5.1, 3.5, 1.4, 0.2, 'setosa')
ON CONFLICT (id) DO UPDATE SET species = excluded.species;
SELECT version, labelled_rows FROM ambient.monitor('live_iris') ORDER BY version;
-- A deleted row's label is taken back.
DELETE FROM arrivals WHERE id = 3;
SELECT version, labelled_rows FROM ambient.monitor('live_iris') ORDER BY version;
-- A window over a time column reads the tables' recent labelled rows.
SELECT version, labelled_rows FROM ambient.monitor('live_iris', time_column => 'arrived_at', "window" => '1 hour')
 ORDER BY version;
SELECT scope, count(*) AS runs FROM ambient.monitor_runs WHERE project = 'live_iris' GROUP BY scope ORDER BY scope;

-- Regression: the prediction is float8 and metrics are R², MAE and RMSE.
SELECT version FROM ambient.train('live_lines', relation => 'lines', target => 'y', features => ARRAY['a', 'b'],
                                  algorithm => 'linear_regression');
CREATE TABLE line_feed (id int PRIMARY KEY, a float8, b float8, y numeric);
SELECT * FROM ambient.attach('live_lines', 'line_feed', prediction_column => 'y_hat');
INSERT INTO line_feed (id, a, b) SELECT id, a, b FROM lines;
UPDATE line_feed f SET y = l.y FROM lines l WHERE l.id = f.id;
SELECT labelled_rows, (metrics->>'r2')::float8 > 0.99 AS fits, metrics ?& ARRAY['mae', 'rmse'] AS has_errors
  FROM ambient.monitor('live_lines');

-- A label that is not a finite number cannot be scored: not counted.
UPDATE line_feed SET y = 'NaN' WHERE id = 1;
SELECT labelled_rows FROM ambient.monitor('live_lines');

-- A label of a domain type: predictions go through the domain's input
-- function (and its checks) row after row.
CREATE DOMAIN species_name AS text CHECK (VALUE <> '');
CREATE TABLE named_in (id int PRIMARY KEY, sepal_length float8, sepal_width float8,
                       petal_length float8, petal_width float8, species species_name);
SELECT prediction_column FROM ambient.attach('live_iris', 'named_in');
INSERT INTO named_in (id, sepal_length, sepal_width, petal_length, petal_width)
SELECT id, sepal_length, sepal_width, petal_length, petal_width FROM iris;
SELECT count(prediction) AS predicted, pg_typeof(min(prediction)) AS type FROM named_in;

-- Rows written before the attachment are predicted when next updated.
CREATE TABLE earlier (id int PRIMARY KEY, sepal_length float8, sepal_width float8,
                      petal_length float8, petal_width float8);
INSERT INTO earlier SELECT id, sepal_length, sepal_width, petal_length, petal_width FROM iris WHERE id <= 5;
SELECT prediction_column FROM ambient.attach('live_iris', 'earlier');
UPDATE earlier SET sepal_length = sepal_length WHERE id <= 2;
SELECT id, prediction IS NOT NULL AS predicted FROM earlier ORDER BY id;

-- A partition is refused: its partitioned table is attached instead, and
-- serves every partition (64_unattended).
CREATE TABLE split_rows (id int, sepal_length float8, sepal_width float8, petal_length float8,
                         petal_width float8) PARTITION BY RANGE (id);
CREATE TABLE split_low PARTITION OF split_rows FOR VALUES FROM (0) TO (100);
SELECT * FROM try($$SELECT ambient.attach('live_iris', 'split_low')$$);

-- A trigger made by hand, on a table never attached, feeds nothing.
CREATE TABLE rogue (id int, sepal_length float8, sepal_width float8, petal_length float8,
                    petal_width float8, prediction text, prediction_model_id bigint);
CREATE TRIGGER by_hand BEFORE INSERT ON rogue FOR EACH ROW
    EXECUTE FUNCTION ambient.predict_trigger('live_iris', 'prediction', 'prediction_model_id', '');
SELECT * FROM try($$INSERT INTO rogue VALUES (1, 5.1, 3.5, 1.4, 0.2)$$);

-- Detach removes the trigger and leaves the data.
SELECT ambient.detach('live_lines', 'line_feed');
INSERT INTO line_feed (id, a, b) VALUES (1000, 1, 1) RETURNING y_hat;
SELECT count(y_hat) AS kept FROM line_feed;
SELECT count(*) AS attachments FROM ambient.attachments WHERE project = 'live_lines';

-- Bad input, each with its SQLSTATE, nothing left behind.
CREATE TABLE no_petals (id int, sepal_length float8, sepal_width float8);
SELECT * FROM try($$SELECT ambient.attach('live_iris', 'no_petals')$$);
CREATE TABLE text_petals (sepal_length float8, sepal_width float8, petal_length text, petal_width float8);
SELECT * FROM try($$SELECT ambient.attach('live_iris', 'text_petals')$$);
SELECT * FROM try($$SELECT ambient.attach('live_iris', 'arrivals')$$);
CREATE VIEW arrivals_view AS SELECT * FROM arrivals;
SELECT * FROM try($$SELECT ambient.attach('live_iris', 'arrivals_view')$$);
CREATE TABLE taken (sepal_length float8, sepal_width float8, petal_length float8, petal_width float8, prediction int);
SELECT * FROM try($$SELECT ambient.attach('live_iris', 'taken')$$);
SELECT * FROM try($$SELECT ambient.attach('live_iris', 'taken', prediction_column => 'petal_width')$$);
SELECT * FROM try($$SELECT ambient.attach('no_such_project', 'taken')$$);
SELECT * FROM try($$SELECT ambient.detach('live_iris', 'taken')$$);
SELECT * FROM try($$SELECT * FROM ambient.monitor('live_iris', time_column => 'arrived_at')$$);
SELECT * FROM try($$SELECT * FROM ambient.monitor('live_iris', time_column => 'no_such_column', "window" => '1 day')$$);
SELECT * FROM try($$SELECT * FROM ambient.monitor('no_such_project')$$);
SELECT * FROM try($$SELECT ambient.predict_trigger()$$);
SELECT count(*) AS attachments FROM ambient.attachments;
SELECT count(*) AS untouched FROM information_schema.columns
 WHERE table_name IN ('no_petals', 'text_petals', 'taken') AND column_name LIKE '%model_id';

-- Another role: no attaching to a table it does not own, nothing seen of
-- the project's attachments or runs.
BEGIN;
CREATE ROLE ambient_eve;
GRANT CREATE ON SCHEMA public TO ambient_eve;
GRANT SELECT, INSERT ON arrivals TO ambient_eve;
GRANT USAGE ON SEQUENCE arrivals_id_seq TO ambient_eve;
SET ROLE ambient_eve;
SELECT * FROM try($$SELECT ambient.attach('live_iris', 'arrivals')$$);
SELECT * FROM try($$SELECT ambient.detach('live_iris', 'arrivals')$$);
-- Her own table does not let her attach a project she does not own.
CREATE TABLE eve_rows (sepal_length float8, sepal_width float8, petal_length float8, petal_width float8);
SELECT * FROM try($$SELECT ambient.attach('live_iris', 'eve_rows')$$);
SELECT count(*) AS attachments_seen FROM ambient.attachments;
SELECT count(*) AS runs_seen FROM ambient.monitor_runs;
SELECT * FROM try($$SELECT * FROM ambient.monitor('live_iris')$$);
SELECT * FROM try($$SELECT count(*) FROM ambient.monitor_log$$);
-- She may still write rows: the trigger predicts with the table owner's
-- rights, not hers.
INSERT INTO arrivals (sepal_length, sepal_width, petal_length, petal_width)
VALUES (5.1, 3.5, 1.4, 0.2) RETURNING prediction;
RESET ROLE;
ROLLBACK;
