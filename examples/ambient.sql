-- Ambient MLOps, end to end, on a loan-application table: train, attach,
-- rows arriving over time, labels arriving late, drift and an alert, a
-- policy that retrains and a person who approves, and a regression rolled
-- back. `make demo` runs it after demo.sql; the docs test runs it too.
\set ON_ERROR_STOP on
\set QUIET on
\pset footer off
CREATE EXTENSION IF NOT EXISTS pg_ambient;
SET ambient.progress = off;
SET client_min_messages = warning;
SELECT setseed(0.42) AS seeded \gset

-- What decides whether a loan defaults: the loan against the income, a
-- little more risk for renters, and noise.
CREATE OR REPLACE FUNCTION pg_temp.defaults(amount float8, income float8, housing text)
RETURNS boolean LANGUAGE sql AS $$
    SELECT amount / income + CASE housing WHEN 'rent' THEN 0.1 ELSE 0 END
           + (random() - 0.5) * 0.15 > 0.35
$$;
-- n applications; `scale` makes the loans and incomes of a later market.
CREATE OR REPLACE FUNCTION pg_temp.applicants(n int, scale float8)
RETURNS TABLE (age int, income float8, housing text, amount float8) LANGUAGE sql AS $$
    SELECT (21 + random() * 45)::int,
           round((25000 + random() * 75000) * scale),
           (ARRAY['rent', 'own', 'mortgage'])[1 + floor(random() * 3)::int],
           round((1000 + random() * 30000) * scale * scale)
      FROM generate_series(1, n)
$$;

\echo '== 1. History: 2,000 past applications and whether each loan defaulted.'
DROP TABLE IF EXISTS loan_history, applications CASCADE;
CREATE TABLE loan_history (id serial PRIMARY KEY, age int, income float8, housing text,
                           amount float8, defaulted boolean);
INSERT INTO loan_history (age, income, housing, amount) SELECT * FROM pg_temp.applicants(2000, 1);
UPDATE loan_history SET defaulted = pg_temp.defaults(amount, income, housing);

\echo '== 2. Train: auto cross-validates a portfolio of algorithms and keeps the best.'
SELECT version, algorithm, round((metrics->>'f1')::numeric, 3) AS f1, deployed
  FROM ambient.train('loans', relation => 'loan_history', target => 'defaulted', algorithm => 'auto');

\echo '== 3. Attach the project to the table new applications arrive in.'
CREATE TABLE applications (id serial PRIMARY KEY, age int, income float8, housing text,
                           amount float8, defaulted boolean,
                           applied_at timestamptz NOT NULL DEFAULT now());
SELECT * FROM ambient.attach('loans', 'applications');

\echo '== 4. Applications arrive: each row gets its prediction, and the model that made it, as it is written.'
INSERT INTO applications (age, income, housing, amount) SELECT * FROM pg_temp.applicants(600, 1);
SELECT id, housing, income, amount, prediction, prediction_model_id
  FROM applications ORDER BY id LIMIT 4;

\echo '== 5. Months later the outcomes arrive; live accuracy follows, per model version.'
UPDATE applications SET defaulted = pg_temp.defaults(amount, income, housing);
SELECT version, labelled_rows, round((metrics->>'f1')::numeric, 3) AS live_f1,
       round((metrics->>'accuracy')::numeric, 3) AS live_accuracy
  FROM ambient.monitor('loans');

\echo '== 6. A policy: keep live F1 above 0.7 and the inputs stable; retrain, but a person approves.'
SELECT ambient.set_policy('loans', '{"min_live_metric": 0.7, "max_drift": 0.5,
                                     "action": "retrain_and_await_approval"}') ->> 'action' AS action;
SELECT status, reason FROM ambient.run_policy('loans');

\echo '== 7. The market moves: bigger loans, higher incomes. The inputs drift, and an alert goes out (NOTIFY ambient_alerts).'
LISTEN ambient_alerts;
INSERT INTO applications (age, income, housing, amount) SELECT * FROM pg_temp.applicants(600, 1.6);
UPDATE applications SET defaulted = pg_temp.defaults(amount, income, housing) WHERE defaulted IS NULL;
-- The history grows with the labelled applications.
INSERT INTO loan_history (age, income, housing, amount, defaulted)
SELECT age, income, housing, amount, defaulted FROM applications WHERE id > 600;
SELECT feature, round(psi::numeric, 3) AS psi, round(ks_p_value::numeric, 4) AS ks_p_value,
       round(js::numeric, 3) AS js, status
  FROM ambient.drift('loans', time_column => 'applied_at', "window" => '1 hour');
SELECT status, action, reason FROM ambient.run_policy('loans');
SELECT kind, message FROM ambient.alerts WHERE project = 'loans';

\echo '== 8. The retrained model waits for a person, who reviews it and approves: it goes live.'
SELECT version, state, round(score::numeric, 3) AS test_f1 FROM ambient.approvals WHERE project = 'loans';
SELECT ambient.approve(model_id, 'checked its leaderboard and live figures') AS approved
  FROM ambient.approvals WHERE project = 'loans' AND state = 'awaiting';
SELECT live_version FROM ambient.overview WHERE project = 'loans';

\echo '== 9. A regression: a rushed one-split model is deployed by hand; rollback_if_worse catches it.'
SELECT version, deployed FROM ambient.train('loans', relation => 'loan_history', algorithm => 'decision_tree',
                                            hyperparams => '{"max_depth": 1}', deploy => 'always');
SELECT ambient.set_policy('loans', '{"action": "rollback_if_worse", "max_drift": 1}') ->> 'action' AS action;
INSERT INTO applications (age, income, housing, amount) SELECT * FROM pg_temp.applicants(400, 1.6);
UPDATE applications SET defaulted = pg_temp.defaults(amount, income, housing) WHERE defaulted IS NULL;
SELECT status, action, reason FROM ambient.run_policy('loans');
SELECT live_version FROM ambient.overview WHERE project = 'loans';

\echo '== 10. What happened, as the database recorded it.'
SELECT version, strategy, reason FROM ambient.deployments WHERE project = 'loans' ORDER BY deployment_id;
SELECT run_id, status, action FROM ambient.policy_runs WHERE project = 'loans' ORDER BY run_id;
