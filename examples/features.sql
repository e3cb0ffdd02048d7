-- The feature store, end to end: customers and their card payments;
-- aggregates as feature sets; a point-in-time training set; train; a table
-- attached by customer id alone; a late backfill; a rebuild of exactly
-- what the model was trained on. `make demo` runs it after ambient.sql;
-- the docs test runs it in a fresh database. Times are relative to this week's start, so
-- every run prints the same.
\set ON_ERROR_STOP on
\set QUIET on
\pset footer off
CREATE EXTENSION IF NOT EXISTS pg_ambient;
SET ambient.progress = off;
SET client_min_messages = warning;
SELECT setseed(0.17) AS seeded \gset
SELECT date_trunc('week', now()) AS week \gset

\echo '== 1. 300 customers on a plan, and 40 weeks of their card payments.'
CREATE TABLE customers (customer_id int PRIMARY KEY, plan text NOT NULL, plan_since timestamptz NOT NULL);
INSERT INTO customers
SELECT c, (ARRAY['basic', 'plus', 'family'])[1 + c % 3], :'week'::timestamptz - interval '300 days'
  FROM generate_series(1, 300) c;
CREATE TABLE payments (id serial PRIMARY KEY, customer_id int NOT NULL, paid_at timestamptz NOT NULL,
                       amount numeric NOT NULL);
-- Each customer pays less and less often as they drift away, at their own pace.
INSERT INTO payments (customer_id, paid_at, amount)
SELECT c, :'week'::timestamptz - (w * 7 + floor(random() * 7)) * interval '1 day',
       round((20 + random() * 80)::numeric, 2)
  FROM generate_series(1, 300) c, generate_series(0, 39) w
 WHERE random() < 0.35 + 0.6 * ((c * 37) % 100 / 100.0) * (1 - w / 60.0);

\echo '== 2. Feature sets: the plan (a table, recorded by a trigger) and weekly spend (a query).'
SELECT feature_set, source_kind, features, recorded
  FROM ambient.create_feature_set('customer_plan', 'customers', '{customer_id}', 'plan_since',
                                  description => 'the plan each customer is on');
SELECT feature_set, source_kind, features, recorded
  FROM ambient.create_feature_set('weekly_spend',
         $$SELECT customer_id, date_trunc('week', paid_at) + interval '1 week' AS week_end,
                  sum(amount) AS spend_week, count(*) AS payments_week
             FROM payments GROUP BY 1, 2$$,
         '{customer_id}', 'week_end', ttl => '21 days',
         description => 'card spend per customer and week, known when the week ends');
-- Plans change; the history keeps what each customer was on, and when.
UPDATE customers SET plan = 'basic', plan_since = :'week'::timestamptz - interval '60 days'
 WHERE customer_id % 10 = 0;
SELECT feature_set, feature, type, rows, nulls, round(mean::numeric, 2) AS mean FROM ambient.features ORDER BY 1, 2;

\echo '== 3. A spine: when we asked whether a customer would churn, and what happened.'
CREATE TABLE churn_labels AS
SELECT c AS customer_id, :'week'::timestamptz - (k * 28 + 3) * interval '1 day' AS asked_at,
       (SELECT coalesce(sum(p.amount), 0) FROM payments p
         WHERE p.customer_id = c
           AND p.paid_at BETWEEN :'week'::timestamptz - (k * 28 + 3) * interval '1 day'
                             AND :'week'::timestamptz - (k * 28 - 25) * interval '1 day') < 90
       AS churned
  FROM generate_series(1, 300) c, generate_series(1, 8) k;
SELECT training_set, columns
  FROM ambient.create_training_set('churn_train', 'churn_labels',
                                   '{weekly_spend.*,customer_plan.plan}', label => 'churned');
-- Each row has the values valid when it was asked: never a later one.
SELECT customer_id, round(extract(epoch FROM :'week'::timestamptz - asked_at) / 86400) AS days_ago,
       churned, spend_week, payments_week, plan
  FROM ambient_training.churn_train WHERE customer_id = 10 ORDER BY asked_at DESC LIMIT 4;

\echo '== 4. Train from the training set; the model knows where its features came from.'
SELECT version, algorithm, round((metrics->>'f1')::numeric, 3) AS f1, deployed
  FROM ambient.train('churn', training_set => 'churn_train', algorithm => 'decision_tree',
                     hyperparams => '{"max_depth": 4}');
SELECT project, version, training_set, feature_sets, features FROM ambient.models WHERE project = 'churn';
CREATE TABLE churn_seen AS SELECT * FROM ambient_training.churn_train;

\echo '== 5. Serve: a table that holds only customer ids, attached; features are looked up at INSERT.'
CREATE TABLE visits (id serial PRIMARY KEY, customer_id int NOT NULL);
SELECT prediction_column FROM ambient.attach('churn', 'visits');
INSERT INTO visits (customer_id) VALUES (10), (11), (12), (13);
SELECT v.customer_id, v.prediction, ambient.predict_label('churn', entity => v.customer_id) AS by_entity
  FROM visits v ORDER BY v.id;
SELECT * FROM ambient.features_for('{weekly_spend.*,customer_plan.plan}', 10);

\echo '== 6. A late backfill: a processor sends payments from weeks ago; refresh records them.'
INSERT INTO payments (customer_id, paid_at, amount)
SELECT c, :'week'::timestamptz - (100 + c % 50) * interval '1 day', 500
  FROM generate_series(1, 300, 7) c;
SELECT * FROM ambient.refresh_feature_set('weekly_spend');
SELECT count(*) AS rows_that_changed
  FROM (SELECT * FROM ambient_training.churn_train EXCEPT SELECT * FROM churn_seen) changed;

\echo '== 7. Rebuild what the model saw, as of its ingest high-water mark: same rows, same model.'
SELECT training_set
  FROM ambient.create_training_set('churn_as_trained', 'churn_labels',
                                   '{weekly_spend.*,customer_plan.plan}', label => 'churned',
                                   as_of_ingest => (SELECT (feature_lineage->>'ingest_high_water')::timestamptz
                                                      FROM ambient.models
                                                     WHERE project = 'churn' AND version = 1));
SELECT (SELECT count(*) FROM (SELECT * FROM ambient_training.churn_as_trained
                               EXCEPT SELECT * FROM churn_seen) d) AS rows_that_differ,
       (SELECT count(*) FROM ambient_training.churn_as_trained) AS rows;
SELECT version, deployed
  FROM ambient.train('churn_rebuilt', training_set => 'churn_as_trained', algorithm => 'decision_tree',
                     hyperparams => '{"max_depth": 4}');
SELECT count(DISTINCT artifact_sha256) AS distinct_artifacts
  FROM ambient.models WHERE project IN ('churn', 'churn_rebuilt');
