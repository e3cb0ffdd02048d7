-- Model selection: auto, grid and random search by k-fold cross-validation
-- on the training split, every trial recorded, the winner refit. Each
-- trial's NOTICE carries its time, so they are off here (test_search.py
-- checks them).
SET ambient.progress = off;
SELECT algorithm, deployed FROM ambient.train('auto_iris', relation => 'iris', target => 'species', algorithm => 'auto');

-- Every trial is a row: its folds' scores, mean and spread; one was chosen,
-- and it is the model's algorithm.
SELECT trial, algorithm, array_length(fold_scores, 1) AS folds, mean_score > 0.8 AS good,
       status, chosen
  FROM ambient.trials WHERE project = 'auto_iris' ORDER BY trial;
SELECT (SELECT algorithm FROM ambient.trials WHERE project = 'auto_iris' AND chosen)
     = (SELECT algorithm FROM ambient.models WHERE project = 'auto_iris') AS model_is_the_winner;
-- The leaderboard ranks them, best mean first; the winner has rank 1.
SELECT rank = 1 AS ranked_first FROM ambient.leaderboard('auto_iris') WHERE chosen;
SELECT count(*) = (SELECT count(*) FROM ambient.trials WHERE project = 'auto_iris') AS every_trial
  FROM ambient.leaderboard('auto_iris');

-- A grid: every combination, each on 4 stratified folds.
SELECT algorithm FROM ambient.train('grid_iris', relation => 'iris', target => 'species', algorithm => 'decision_tree',
                                    search => 'grid', folds => 4,
                                    search_params => '{"max_depth": [1, 2, 3], "criterion": ["gini", "entropy"]}');
SELECT trial, hyperparams->>'max_depth' AS max_depth, hyperparams->>'criterion' AS criterion,
       array_length(fold_scores, 1) AS folds
  FROM ambient.leaderboard('grid_iris') ORDER BY trial;
SELECT m.hyperparams = t.hyperparams AS refit_with_the_winner
  FROM ambient.models m, ambient.leaderboard('grid_iris') t WHERE m.project = 'grid_iris' AND t.chosen;
-- What was asked is kept with the model, to train again the same way.
SELECT request->>'search' AS search, request->'search_params' AS search_params, request->>'folds' AS folds
  FROM ambient.model_store WHERE project_id = (SELECT id FROM ambient.projects WHERE name = 'grid_iris');

-- Random search draws from lists and ranges, from the seed.
SELECT algorithm FROM ambient.train('random_lines', relation => 'lines', target => 'y', algorithm => 'ridge',
                                    features => ARRAY['a', 'b'], search => 'random', search_iterations => 4,
                                    search_params => '{"alpha": {"log_uniform": [1e-3, 10]}, "fit_intercept": [true]}');
SELECT count(*) AS trials, bool_and((hyperparams->>'alpha')::float8 BETWEEN 1e-3 AND 10) AS in_range
  FROM ambient.trials WHERE project = 'random_lines';

-- A budget: once it is spent, the trials left are skipped and the best so
-- far wins (the first trial always runs).
SELECT algorithm FROM ambient.train('budget_iris', relation => 'iris', target => 'species', algorithm => 'auto',
                                    budget_seconds => 1e-6);
SELECT trial, status, chosen FROM ambient.trials WHERE project = 'budget_iris' ORDER BY trial;

-- Bad searches, each refused before anything is written.
SELECT * FROM try($$SELECT ambient.train('bad_search', relation => 'iris', target => 'species', algorithm => 'decision_tree', search => 'grid', search_params => '{"max_depth": []}')$$);
SELECT * FROM try($$SELECT ambient.train('bad_search', relation => 'iris', target => 'species', algorithm => 'decision_tree', search => 'grid', search_params => '{"max_depth": [0, 2]}')$$);
SELECT * FROM try($$SELECT ambient.train('bad_search', relation => 'iris', target => 'species', algorithm => 'decision_tree', search => 'grid')$$);
SELECT * FROM try($$SELECT ambient.train('bad_search', relation => 'iris', target => 'species', algorithm => 'decision_tree', search => 'bayes', search_params => '{}')$$);
SELECT * FROM try($$SELECT ambient.train('bad_search', relation => 'iris', target => 'species', algorithm => 'auto', search => 'grid', search_params => '{"max_depth": [1]}')$$);
SELECT * FROM try($$SELECT ambient.train('bad_search', relation => 'iris', target => 'species', algorithm => 'auto', hyperparams => '{"max_depth": 3}')$$);
SELECT * FROM try($$SELECT ambient.train('bad_search', relation => 'iris', target => 'species', algorithm => 'auto', folds => 1)$$);
SELECT * FROM try($$SELECT ambient.train('bad_search', relation => 'iris', target => 'species', algorithm => 'auto', folds => 1000)$$);
SELECT * FROM try($$SELECT ambient.train('bad_search', relation => 'iris', target => 'species', algorithm => 'auto', budget_seconds => 0)$$);
SELECT * FROM try($$SELECT ambient.train('bad_search', relation => 'iris', target => 'species', search_params => '{"max_depth": [1]}')$$);
SELECT count(*) AS nothing_left_behind FROM ambient.projects WHERE name = 'bad_search';
