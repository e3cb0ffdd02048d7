-- The pg_ambient demo: train two models, predict inside a SELECT, deploy,
-- roll back, and look at the registry. `make demo` runs this file.
\set ON_ERROR_STOP on
\pset footer off
CREATE EXTENSION IF NOT EXISTS pg_ambient;

\echo '== 1. Train a decision tree on Iris. The first model of a project deploys itself.'
SELECT model_id, version, algorithm, round((metrics->>'f1')::numeric, 3) AS f1, deployed
  FROM ambient.train('iris', relation => 'iris', target => 'species');

\echo '== 2. Train a shallower tree. It is scored against the live model on the same test rows, and only deploys if better.'
SELECT model_id, version, algorithm, round((metrics->>'f1')::numeric, 3) AS f1, deployed
  FROM ambient.train('iris', relation => 'iris', hyperparams => '{"max_depth": 1}');

\echo '== 3. Predict inside a query, by row: the live model picks its columns by name.'
SELECT id, species,
       ambient.predict_label('iris', iris.*) AS predicted,
       ambient.predict_proba('iris', iris.*) AS probabilities
  FROM iris WHERE id IN (1, 51, 101, 120);

\echo '== 4. Accuracy of the live model over the whole table.'
SELECT round(avg((ambient.predict_label('iris', iris.*) = species)::int), 3) AS accuracy FROM iris;

\echo '== 5. Deploy version 2 by hand, then roll back to version 1.'
SELECT ambient.deploy('iris', model_id, reason => 'demo: try the shallow tree') AS now_live
  FROM ambient.models WHERE project = 'iris' AND version = 2;
SELECT ambient.predict_label('iris', ARRAY[7.7, 3.0, 6.1, 2.3]) AS with_v2;
SELECT ambient.rollback('iris', reason => 'demo: v2 is worse') AS now_live;
SELECT ambient.predict_label('iris', ARRAY[7.7, 3.0, 6.1, 2.3]) AS with_v1;

\echo '== 6. A regression project on the same table: petal width from the other measurements.'
SELECT model_id, algorithm, round((metrics->>'r2')::numeric, 3) AS r2, deployed
  FROM ambient.train('petal_width', relation => 'iris', target => 'petal_width',
                     algorithm => 'linear_regression',
                     features => ARRAY['sepal_length', 'sepal_width', 'petal_length']);
SELECT round(ambient.predict('petal_width', ARRAY[5.9, 3.0, 5.1])::numeric, 2) AS petal_width;

\echo '== 7. The registry.'
SELECT project, task, live_model_id, live_version, algorithm, primary_metric,
       round(score::numeric, 3) AS score, deployed_by, models
  FROM ambient.overview ORDER BY project;
SELECT project, version, algorithm, round(score::numeric, 3) AS score, live, train_rows, test_rows
  FROM ambient.models ORDER BY project, version;
SELECT deployment_id, project, model_id, version, previous_model_id, strategy, reason
  FROM ambient.deployments ORDER BY deployment_id;
