-- The algorithm family: what ambient.algorithms lists, the default for each
-- task, and every algorithm trained and asked through SQL.
SELECT algorithm, string_agg(DISTINCT task, ', ' ORDER BY task) AS tasks,
       bool_or(is_default) AS is_default_somewhere
  FROM ambient.algorithms() GROUP BY algorithm ORDER BY algorithm;

-- Each hyper-parameter with its type, range and default, per task.
SELECT task, parameter, type, range, "default"
  FROM ambient.algorithms() WHERE algorithm = 'random_forest' ORDER BY task, parameter;

-- With no algorithm named, each task gets its default, and it works for both.
SELECT algorithm, deployed FROM ambient.train('default_cls', relation => 'iris', target => 'species');
SELECT algorithm, deployed FROM ambient.train('default_reg', relation => 'lines', target => 'y',
                                              features => ARRAY['a', 'b']);
SELECT project, algorithm = (SELECT algorithm FROM ambient.algorithms()
                              WHERE is_default AND task = o.task LIMIT 1) AS is_the_default
  FROM ambient.overview o WHERE project LIKE 'default_%' ORDER BY project;

-- Every algorithm on every task it does: trained, then every predict form.
CREATE TEMP TABLE fitted AS
SELECT a.algorithm, a.task, t.model_id,
       (t.metrics->>CASE a.task WHEN 'classification' THEN 'f1' ELSE 'r2' END)::float8 AS score
  FROM (SELECT DISTINCT algorithm, task FROM ambient.algorithms()) a,
       LATERAL ambient.train('every_' || a.algorithm || '_' || a.task,
                 relation => CASE a.task WHEN 'classification' THEN 'iris' ELSE 'lines' END::regclass,
                 target => CASE a.task WHEN 'classification' THEN 'species' ELSE 'y' END,
                 features => CASE a.task WHEN 'classification'
                                 THEN ARRAY['sepal_length', 'sepal_width', 'petal_length', 'petal_width']
                                 ELSE ARRAY['a', 'b'] END,
                 algorithm => a.algorithm) t;
SELECT algorithm, task, score > 0.85 AS scores_well FROM fitted ORDER BY task, algorithm;

-- Every algorithm is deterministic: trained again on the same data, with
-- the same parameters and seed, it gives the same artifact, byte for byte.
CREATE TEMP TABLE again AS
SELECT f.algorithm, f.task, f.model_id AS first_id, t.model_id AS again_id
  FROM fitted f,
       LATERAL ambient.train('every_' || f.algorithm || '_' || f.task,
                 relation => CASE f.task WHEN 'classification' THEN 'iris' ELSE 'lines' END::regclass,
                 algorithm => f.algorithm, deploy => 'never') t;
SELECT a.algorithm, a.task, first.artifact_sha256 = second.artifact_sha256 AS same_bytes
  FROM again a
  JOIN ambient.model_store first ON first.id = a.first_id
  JOIN ambient.model_store second ON second.id = a.again_id
 ORDER BY a.task, a.algorithm;

-- Classifiers: the label of each iris row, and probabilities that sum to 1
-- and agree with it.
SELECT f.algorithm,
       avg((ambient.predict_label(f.model_id, ARRAY[sepal_length, sepal_width, petal_length, petal_width]) = species)::int) > 0.85 AS mostly_right,
       bool_and(abs((SELECT sum(p) FROM unnest(ambient.predict_proba(f.model_id, ARRAY[sepal_length, sepal_width, petal_length, petal_width])) p) - 1) < 1e-9) AS proba_sums_to_1,
       bool_and(ambient.predict_label('every_' || f.algorithm || '_classification', i.*) =
                ambient.predict_label(f.model_id, ARRAY[sepal_length, sepal_width, petal_length, petal_width])) AS row_form_agrees
  FROM fitted f, iris i WHERE f.task = 'classification'
 GROUP BY f.algorithm ORDER BY f.algorithm;

-- Regressors: they explain most of y = 3 + 2a - b over every row (R² above
-- 0.8; the lasso and elastic net defaults shrink their coefficients).
SELECT f.algorithm,
       1 - sum((ambient.predict(f.model_id, ARRAY[a, b]) - y) ^ 2) / sum((y - avg_y) ^ 2) > 0.8 AS explains_y
  FROM fitted f, lines, (SELECT avg(y) AS avg_y FROM lines) m WHERE f.task = 'regression'
 GROUP BY f.algorithm ORDER BY f.algorithm;

-- An algorithm that does not do the task, before any data is read.
SELECT * FROM try($$SELECT * FROM ambient.train('every_gaussian_nb_classification', relation => 'lines', algorithm => 'ridge')$$);
SELECT * FROM try($$SELECT * FROM ambient.train('nb_on_numbers', relation => 'lines', target => 'y', task => 'regression', algorithm => 'gaussian_nb')$$);
-- ... or after it, when the first train infers the task.
SELECT * FROM try($$SELECT * FROM ambient.train('nb_inferred', relation => 'lines', target => 'y', algorithm => 'logistic_regression')$$);
SELECT count(*) AS nothing_left_behind FROM ambient.projects WHERE name IN ('nb_on_numbers', 'nb_inferred');
-- A hyper-parameter of the other task.
SELECT * FROM try($$SELECT * FROM ambient.train('every_random_forest_regression', relation => 'lines', algorithm => 'random_forest', hyperparams => '{"criterion": "gini"}')$$);
