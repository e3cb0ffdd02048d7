-- The input contract: a project's feature names, in the order the array
-- forms of predict take them. A model with other features (another order, a
-- column more or less) cannot go live unless the caller says
-- new_contract => true, so a positional array in application code never
-- silently changes meaning.
SELECT version, deployed FROM ambient.train('contract', relation => 'iris', target => 'species', algorithm => 'decision_tree');
SELECT features FROM ambient.overview WHERE project = 'contract';

-- Application code, written once: the array in the contract's order. The
-- row form matches columns by name. They agree on every row ...
CREATE VIEW app_disagreements AS
SELECT count(*) FILTER (WHERE ambient.predict('contract', ARRAY[sepal_length, sepal_width, petal_length, petal_width])
                              <> ambient.predict('contract', i.*)) AS disagreements
  FROM iris i;
SELECT * FROM app_disagreements;

-- ... and keep agreeing: the same features reordered (a query's column
-- order) or one feature fewer cannot go live, by any road.
SELECT version, deployed FROM ambient.train('contract', target => 'species', deploy => 'always',
       query => 'SELECT petal_width, petal_length, sepal_width, sepal_length, species FROM iris', algorithm => 'decision_tree');
SELECT version, deployed FROM ambient.train('contract', target => 'species', hyperparams => '{"max_depth": 2}',
       query => 'SELECT sepal_length, sepal_width, petal_length, species FROM iris', algorithm => 'decision_tree');
SELECT version, deployed FROM ambient.train('contract', relation => 'iris', features => ARRAY['petal_width', 'petal_length', 'sepal_width', 'sepal_length'], deploy => 'always', algorithm => 'decision_tree');
SELECT * FROM try($$SELECT ambient.deploy('contract', (SELECT model_id FROM ambient.models WHERE project = 'contract' AND version = 2))$$);
SELECT * FROM try($$SELECT ambient.deploy('contract', 'most_recent')$$);
SELECT * FROM app_disagreements;
-- A model with the contract's features deploys as before; rollback returns.
SELECT version, deployed FROM ambient.train('contract', relation => 'iris', hyperparams => '{"max_depth": 2}', deploy => 'always', algorithm => 'decision_tree');
SELECT * FROM app_disagreements;
SELECT ambient.rollback('contract') IS NOT NULL AS rolled_back;
SELECT live_version('contract');
SELECT * FROM app_disagreements;

-- Saying so changes the contract: the overview shows the new order, and
-- code that builds its array from it agrees with the row form again.
SELECT ambient.deploy('contract', (SELECT model_id FROM ambient.models WHERE project = 'contract' AND version = 2),
                      reason => 'petal first', new_contract => true) IS NOT NULL AS deployed;
SELECT features FROM ambient.overview WHERE project = 'contract';
SELECT count(*) FILTER (WHERE ambient.predict('contract', ARRAY(SELECT (to_jsonb(i) ->> f)::float8
                                 FROM unnest(o.features) WITH ORDINALITY AS c(f, n) ORDER BY n))
                              <> ambient.predict('contract', i.*)) AS disagreements_in_contract_order
  FROM iris i, ambient.overview o WHERE o.project = 'contract';
-- Rolling back across the change needs saying so too.
SELECT * FROM try($$SELECT ambient.rollback('contract')$$);
SELECT ambient.rollback('contract', new_contract => true) IS NOT NULL AS rolled_back;
SELECT live_version('contract');
SELECT features FROM ambient.overview WHERE project = 'contract';
SELECT * FROM app_disagreements;
DROP VIEW app_disagreements;
SELECT ambient.drop_project('contract', force => true) AS cleaned_up;
