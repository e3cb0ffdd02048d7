-- Preprocessing inside the model: text, enum, boolean, date and NULL
-- inputs, fitted on the training rows and applied by every predict form.
CREATE TYPE plan AS ENUM ('free', 'pro', 'team');
CREATE TABLE customers AS
SELECT g AS id,
       (ARRAY['north', 'south', 'east', 'west'])[1 + g % 4] AS region,
       CASE WHEN g % 11 = 0 THEN NULL ELSE (ARRAY['free', 'pro', 'team'])[1 + (g * 7) % 3]::plan END AS plan,
       CASE WHEN g % 13 = 0 THEN NULL ELSE 20 + (g * 37) % 50 END AS age,
       (g % 3 = 0) AS mobile,
       date '2024-01-01' + (g * 5) % 365 AS signed_up,
       ((g * 7) % 3 = 0 AND (20 + (g * 37) % 50) < 40) OR g % 4 = 3 AS churned
  FROM generate_series(1, 600) AS g;
ALTER TABLE customers ADD PRIMARY KEY (id);

-- Every column but the key and the target is an input; the default
-- algorithm (hist_gbm) takes them as they come: text and enums as
-- categories it splits into sets, NULL numbers, booleans and times as
-- missing values with a bin of their own (impute "none").
SELECT algorithm, (metrics->>'f1')::float8 > 0.9 AS f1_above_0_9
  FROM ambient.train('churn', relation => 'customers', target => 'churned');

-- What each input becomes, as the model records it.
SELECT p->>'column' AS "column", p->>'kind' AS kind, p->'impute' AS impute, p->'encode' AS encode
  FROM ambient.models m, jsonb_array_elements(m.preprocessing) p
 WHERE m.project = 'churn';

-- The row form matches columns by name: an unseen region, a NULL plan and
-- a NULL age go where the model learnt (the missing bin, the most common
-- plan), never an error.
SELECT ambient.predict_label('churn', c.*) AS churned,
       array_length(ambient.predict_proba('churn', c.*), 1) AS classes
  FROM (SELECT 'mars'::text AS region, NULL::plan AS plan, NULL::integer AS age,
               true AS mobile, date '2024-06-01' AS signed_up) c;
SELECT avg((ambient.predict_label('churn', c.*) = c.churned::text)::int) > 0.9 AS mostly_right
  FROM customers c;

-- A float8[] carries numbers only, so the array forms point to the row form.
SELECT * FROM try($$SELECT ambient.predict('churn', ARRAY[1, 2, 3, 4, 5])$$);
SELECT * FROM try($$SELECT ambient.predict_proba((SELECT model_id FROM ambient.models WHERE project = 'churn'), ARRAY[1, 2, 3, 4, 5])$$);

-- A linear model standardises numbers by default; options are per column.
SELECT algorithm, deployed
  FROM ambient.train('churn', relation => 'customers', algorithm => 'logistic_regression', deploy => 'never',
                     preprocess => '{"age": {"impute": "mean", "scale": "robust"},
                                     "region": {"encode": "target"},
                                     "plan": {"impute": "constant", "fill_value": "unknown", "max_categories": 2}}');
SELECT p->>'column' AS "column", p->'impute' AS impute, p->'scale' IS NOT NULL AND p->>'scale' <> 'null' AS scaled,
       p->'encode' AS encode
  FROM ambient.models m, jsonb_array_elements(m.preprocessing) p
 WHERE m.project = 'churn' AND m.version = 2;

-- impute "error" keeps a NULL an error, at training and at predict time.
SELECT * FROM try($$SELECT ambient.train('strict', relation => 'customers', target => 'churned', algorithm => 'decision_tree', preprocess => '{"age": {"impute": "error"}}')$$);
SELECT algorithm FROM ambient.train('strict', query => 'SELECT * FROM customers WHERE age IS NOT NULL', target => 'churned',
                                    algorithm => 'decision_tree', preprocess => '{"age": {"impute": "error"}}');
SELECT * FROM try($$SELECT ambient.predict('strict', c.*) FROM customers c WHERE age IS NULL LIMIT 1$$);

-- impute "none" keeps a NULL missing, which only hist_gbm can take, and
-- only for numbers, booleans and times.
SELECT * FROM try($$SELECT ambient.train('bad', relation => 'customers', target => 'churned', algorithm => 'decision_tree', preprocess => '{"age": {"impute": "none"}}')$$);
SELECT * FROM try($$SELECT ambient.train('bad', relation => 'customers', target => 'churned', preprocess => '{"region": {"impute": "none"}}')$$);

-- Bad options: unknown keys, values, columns; a cap below 2; an option for
-- the other kind of column. Nothing is left behind.
SELECT * FROM try($$SELECT ambient.train('bad', relation => 'customers', target => 'churned', preprocess => '{"age": {"impute": "sideways"}}')$$);
SELECT * FROM try($$SELECT ambient.train('bad', relation => 'customers', target => 'churned', preprocess => '{"age": {"scaling": "standard"}}')$$);
SELECT * FROM try($$SELECT ambient.train('bad', relation => 'customers', target => 'churned', preprocess => '{"height": {}}')$$);
SELECT * FROM try($$SELECT ambient.train('bad', relation => 'customers', target => 'churned', preprocess => '{"region": {"max_categories": 1}}')$$);
SELECT * FROM try($$SELECT ambient.train('bad', relation => 'customers', target => 'churned', preprocess => '{"region": {"impute": "median"}}')$$);
SELECT * FROM try($$SELECT ambient.train('bad', relation => 'customers', target => 'churned', preprocess => '{"age": {"encode": "one_hot"}}')$$);
SELECT * FROM try($$SELECT ambient.train('bad', relation => 'customers', target => 'churned', preprocess => '[1]')$$);
SELECT count(*) AS nothing_left_behind FROM ambient.projects WHERE name = 'bad';

-- Every feature constant in the training rows.
SELECT * FROM try($$SELECT ambient.train('flat', query => 'SELECT 1 AS x, ''a''::text AS t, g % 2 = 0 AS y FROM generate_series(1, 40) g', target => 'y')$$);
