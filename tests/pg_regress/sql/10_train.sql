-- Training: sources, tasks, label types, what a model records.
SELECT version, algorithm, deployed, metrics ?& ARRAY['accuracy', 'f1', 'precision', 'recall'] AS has_metrics
  FROM ambient.train('iris', relation => 'iris', target => 'species', algorithm => 'decision_tree');

-- The project's target and task are fixed now; later trains may leave them out.
SELECT project, task, target, live_version, algorithm, primary_metric, models FROM ambient.overview;

-- What the model row keeps: hyper-parameters with defaults, features, classes, sizes.
SELECT version, hyperparams, features, feature_types, label_classes, train_rows, test_rows,
       seed, test_size, extension_version, length(artifact_sha256) AS sha_len
  FROM ambient.model_store WHERE project_id = (SELECT id FROM ambient.projects WHERE name = 'iris');

-- The snapshot: source, counts, statistics, data hash.
SELECT s.source_kind, s.source, s.row_count, s.unlabeled_rows, length(s.data_sha256) AS sha_len,
       s.column_stats -> 0 -> 0 AS first_column,
       (s.column_stats -> 0 -> 1) - 'std' - 'mean' - 'percentiles' - 'bin_edges' - 'bin_shares' AS first_stats,
       s.column_stats -> 4 AS label_stats
  FROM ambient.snapshots s JOIN ambient.projects p ON p.id = s.project_id WHERE p.name = 'iris';

-- Rows with a NULL label are unlabeled: skipped, counted, and told in a NOTICE.
CREATE TABLE iris_partly_labeled AS SELECT * FROM iris;
UPDATE iris_partly_labeled SET species = NULL WHERE id % 10 = 0;
SELECT version, deployed FROM ambient.train('iris', relation => 'iris_partly_labeled', deploy => 'never', algorithm => 'decision_tree');
SELECT row_count, unlabeled_rows FROM ambient.snapshots ORDER BY id DESC LIMIT 1;

-- Any SELECT can be the source; its full text is recorded.
SELECT version, deployed FROM ambient.train('iris',
    query => 'SELECT sepal_length, sepal_width, petal_length, petal_width, species FROM iris WHERE id % 3 <> 0',
    deploy => 'never', algorithm => 'decision_tree');
SELECT source_kind, source, row_count FROM ambient.snapshots ORDER BY id DESC LIMIT 1;

-- Same data, parameters and seed: byte-identical artifact. Another seed: another split.
SELECT model_id AS det_a FROM ambient.train('det', relation => 'iris', target => 'species', deploy => 'never', algorithm => 'decision_tree') \gset
SELECT model_id AS det_b FROM ambient.train('det', relation => 'iris', deploy => 'never', algorithm => 'decision_tree') \gset
SELECT model_id AS det_c FROM ambient.train('det', relation => 'iris', seed => 7, deploy => 'never', algorithm => 'decision_tree') \gset
SELECT a.artifact = b.artifact AS same_bytes, a.artifact_sha256 = b.artifact_sha256 AS same_sha,
       a.artifact_sha256 <> c.artifact_sha256 AS other_seed_differs,
       (SELECT data_sha256 FROM ambient.snapshots WHERE id = a.snapshot_id)
         = (SELECT data_sha256 FROM ambient.snapshots WHERE id = c.snapshot_id) AS same_data_hash
  FROM ambient.model_store a, ambient.model_store b, ambient.model_store c
 WHERE a.id = :det_a AND b.id = :det_b AND c.id = :det_c;

-- The primary key is left out of the features by default; a query source has none.
SELECT m.version, s.features FROM ambient.models m JOIN ambient.model_store s ON s.id = m.model_id
 WHERE m.project = 'iris' ORDER BY m.version;

-- Regression: the task follows from a float target; linear regression recovers y = 3 + 2a - b.
SELECT version, algorithm, deployed, (metrics->>'r2')::float8 > 0.999 AS r2_near_1,
       metrics ?& ARRAY['r2', 'mae', 'rmse'] AS has_metrics
  FROM ambient.train('lines', relation => 'lines', target => 'y', algorithm => 'linear_regression');
SELECT task, m.features FROM ambient.projects p JOIN ambient.model_store m ON m.project_id = p.id WHERE p.name = 'lines';

-- Integer, boolean and text labels are classes; integer classes keep numeric order.
CREATE TABLE grades AS
SELECT g AS id, (g % 20)::float8 AS score, (g % 20 >= 10) AS passed,
       CASE WHEN g % 20 < 5 THEN 2 WHEN g % 20 < 15 THEN 10 ELSE -1 END AS grade
  FROM generate_series(1, 120) AS g;
SELECT version, deployed FROM ambient.train('passed', relation => 'grades', target => 'passed', features => ARRAY['score'], algorithm => 'decision_tree');
SELECT version, deployed, metrics ? 'roc_auc' AS has_auc
  FROM ambient.train('grade', relation => 'grades', target => 'grade', features => ARRAY['score'], algorithm => 'decision_tree');
SELECT p.name, p.task, m.label_classes FROM ambient.projects p JOIN ambient.model_store m ON m.project_id = p.id
 WHERE p.name IN ('passed', 'grade') ORDER BY p.name;
-- Binary classification adds ROC AUC and log loss.
SELECT metrics ?& ARRAY['roc_auc', 'log_loss'] AS binary_metrics FROM ambient.models WHERE project = 'passed';
