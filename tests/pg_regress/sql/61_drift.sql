-- Drift: recent rows against the live model's training snapshot. Numbers:
-- PSI over the training deciles and Kolmogorov-Smirnov; categories:
-- Jensen-Shannon distance. The dataset drifts when half its inputs do.
SET ambient.progress = off;
SELECT version FROM ambient.train('drift_iris', relation => 'iris', target => 'species', algorithm => 'decision_tree');
-- The snapshot keeps what drift needs: percentiles and decile bins.
SELECT jsonb_array_length(s.column_stats -> 0 -> 1 -> 'percentiles') AS percentiles,
       jsonb_array_length(s.column_stats -> 0 -> 1 -> 'bin_shares') AS bins
  FROM ambient.model_snapshots s WHERE s.project = 'drift_iris';
CREATE TABLE flowers_in (id serial PRIMARY KEY, sepal_length float8, sepal_width float8,
                         petal_length float8, petal_width float8, species text,
                         arrived_at timestamptz NOT NULL DEFAULT now());
SELECT prediction_column FROM ambient.attach('drift_iris', 'flowers_in');
-- Rows like the training rows: nothing drifts.
INSERT INTO flowers_in (sepal_length, sepal_width, petal_length, petal_width, arrived_at)
SELECT sepal_length, sepal_width, petal_length, petal_width, now() - interval '2 days' FROM iris;
SELECT feature, kind, rows, round(psi::numeric, 3) AS psi, ks < 0.02 AS ks_small,
       ks_p_value > 0.5 AS ks_p_high, status
  FROM ambient.drift('drift_iris');
-- Rows whose sepals and petals grew: those inputs drift, and so does the
-- dataset (half of its inputs); the predictions shift too.
INSERT INTO flowers_in (sepal_length, sepal_width, petal_length, petal_width)
SELECT sepal_length + 2, sepal_width, petal_length * 1.5, petal_width FROM iris, generate_series(1, 3);
SELECT feature, rows, psi >= 0.25 AS psi_alerts, ks_p_value < 0.05 AS ks_rejects, js >= 0.1 AS js_drifts, status
  FROM ambient.drift('drift_iris');
-- Any relation or query can be the recent rows, and a window narrows them
-- (to the 450 rows that arrived last).
SELECT feature, rows, status FROM ambient.drift('drift_iris', relation => 'iris') WHERE feature = '(dataset)';
SELECT feature, rows, status
  FROM ambient.drift('drift_iris', query => 'SELECT * FROM flowers_in WHERE id <= 150') WHERE feature = '(dataset)';
SELECT feature, rows, status
  FROM ambient.drift('drift_iris', time_column => 'arrived_at', "window" => '1 hour') WHERE feature = '(dataset)';
-- Every run is recorded, a row per column.
SELECT run_id, count(*) AS columns, bool_or(dataset_drifted) AS drifted
  FROM ambient.drift_runs WHERE project = 'drift_iris' GROUP BY run_id ORDER BY run_id;

-- Categories: a text input compared by Jensen-Shannon distance.
CREATE TABLE pets AS
SELECT g AS id, (ARRAY['cat', 'dog', 'fish'])[g % 3 + 1] AS kind, (g % 7)::float8 AS age,
       (g % 3 = 0) AS indoor FROM generate_series(1, 300) g;
ALTER TABLE pets ADD PRIMARY KEY (id);
SELECT algorithm FROM ambient.train('pets', relation => 'pets', target => 'indoor', algorithm => 'decision_tree');
SELECT feature, kind, round(js::numeric, 3) AS js, status
  FROM ambient.drift('pets', query => $$SELECT 'bird'::text AS kind, age FROM pets$$)
 WHERE feature IN ('kind', '(dataset)');

-- Bad input.
SELECT * FROM try($$SELECT * FROM ambient.drift('pets')$$);
SELECT * FROM try($$SELECT * FROM ambient.drift('pets', relation => 'pets', query => 'SELECT 1')$$);
SELECT * FROM try($$SELECT * FROM ambient.drift('drift_iris', time_column => 'arrived_at')$$);
SELECT * FROM try($$SELECT * FROM ambient.drift('drift_iris', query => 'SELECT 1 AS x')$$);
SELECT * FROM try($$SELECT * FROM ambient.drift('no_such_project')$$);
