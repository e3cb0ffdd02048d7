-- Why a model predicts what it does: importances, and one prediction split
-- into contributions that add up to it.
SELECT model_id AS tree_id FROM ambient.train('why', relation => 'iris', target => 'species',
                                              algorithm => 'decision_tree', hyperparams => '{"max_depth": 3}') \gset

-- Impurity importance per feature the model sees (summing to 1), and
-- permutation importance per input column on the test split.
SELECT method, count(*) AS features, round(sum(importance)::numeric, 6) AS total
  FROM ambient.feature_importance('why') GROUP BY method ORDER BY method;
SELECT feature FROM ambient.feature_importance('why')
 WHERE method = 'impurity' ORDER BY importance DESC LIMIT 1;

-- The bias plus the contributions is the prediction, in every form.
SELECT feature, round(contribution::numeric, 4) AS contribution, explains
  FROM ambient.explain('why', ARRAY[6.3, 2.8, 5.1, 1.5]);
SELECT bool_and(abs(e.total - p.value) < 1e-9) AS adds_up, count(*) AS rows
  FROM iris i,
       LATERAL (SELECT sum(contribution) AS total FROM ambient.explain('why', i.*)) e,
       LATERAL (SELECT (ambient.predict_proba('why', i.*))[(SELECT array_position(label_classes, ambient.predict_label('why', i.*))
                                                             FROM ambient.model_store WHERE id = :tree_id)] AS value) p;
SELECT sum(contribution) = (SELECT sum(contribution) FROM ambient.explain(:tree_id, ARRAY[6.3, 2.8, 5.1, 1.5])) AS pinned_agrees
  FROM ambient.explain('why', ARRAY[6.3, 2.8, 5.1, 1.5]);

-- A regression: the contributions add up to the estimate, for a linear
-- model (coefficient × standardised value) and for boosted trees.
SELECT algorithm FROM ambient.train('why_lines', relation => 'lines', target => 'y', features => ARRAY['a', 'b'],
                                    algorithm => 'linear_regression');
SELECT feature, round(contribution::numeric, 3) AS contribution, explains FROM ambient.explain('why_lines', ARRAY[10, 4]);
SELECT round((SELECT sum(contribution) FROM ambient.explain('why_lines', ARRAY[10, 4]))::numeric, 6)
     = round(ambient.predict('why_lines', ARRAY[10, 4])::numeric, 6) AS adds_up;
SELECT feature, method, round(importance::numeric, 3) AS importance
  FROM ambient.feature_importance('why_lines') ORDER BY method, feature;
SELECT algorithm FROM ambient.train('why_lines', relation => 'lines', algorithm => 'gbm', deploy => 'always');
SELECT round((SELECT sum(contribution) FROM ambient.explain('why_lines', l.*))::numeric, 6)
     = round(ambient.predict('why_lines', l.*)::numeric, 6) AS adds_up
  FROM lines l WHERE id = 7;

-- Naive Bayes has no additive explanation; its importances are by permutation.
SELECT model_id AS nb_id FROM ambient.train('why_nb', relation => 'iris', target => 'species', algorithm => 'gaussian_nb') \gset
SELECT * FROM try($$SELECT * FROM ambient.explain('why_nb', ARRAY[6.3, 2.8, 5.1, 1.5])$$);
SELECT DISTINCT method FROM ambient.feature_importance(:nb_id);
SELECT * FROM try($$SELECT * FROM ambient.feature_importance('no_such_project')$$);
