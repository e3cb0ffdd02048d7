-- Prediction: every form gives the same answer for the same row.
SELECT id, species,
       ambient.predict('iris', i.*) AS by_row,
       ambient.predict('iris', ARRAY[sepal_length, sepal_width, petal_length, petal_width]) AS by_array,
       ambient.predict(m.model_id, ARRAY[sepal_length, sepal_width, petal_length, petal_width]) AS pinned,
       ambient.predict_label('iris', i.*) AS label,
       ambient.predict_label('iris', ARRAY[sepal_length, sepal_width, petal_length, petal_width]) AS label_by_array
  FROM iris i, (SELECT model_id FROM ambient.models WHERE project = 'iris' AND live) m
 WHERE id IN (1, 51, 101, 134)
 ORDER BY id;

-- The three forms agree on every row, and the live model scores as its metrics said.
SELECT count(*) FILTER (WHERE ambient.predict('iris', i.*)
                        <> ambient.predict('iris', ARRAY[sepal_length, sepal_width, petal_length, petal_width])) AS row_vs_array,
       count(*) FILTER (WHERE ambient.predict_label('iris', i.*)
                        <> ambient.predict_label(m.model_id, ARRAY[sepal_length, sepal_width, petal_length, petal_width])) AS live_vs_pinned,
       round(avg((ambient.predict_label('iris', i.*) = species)::int), 3) AS accuracy_on_all_rows
  FROM iris i, (SELECT model_id FROM ambient.models WHERE project = 'iris' AND live) m;

-- Probabilities come in class order, sum to 1, and their argmax is the label.
SELECT count(*) AS rows,
       count(*) FILTER (WHERE abs((SELECT sum(p) FROM unnest(ambient.predict_proba('iris', i.*)) p) - 1) < 1e-9) AS sums_to_one,
       count(*) FILTER (WHERE (SELECT label_classes[array_position(pr, (SELECT max(x) FROM unnest(pr) x))]
                                 FROM ambient.model_store WHERE id = (SELECT model_id FROM ambient.models WHERE project = 'iris' AND live))
                              = ambient.predict_label('iris', i.*)) AS argmax_is_label
  FROM iris i, LATERAL (SELECT ambient.predict_proba('iris', i.*) AS pr) q;
SELECT ambient.predict_proba('iris', ARRAY[5.1, 3.5, 1.4, 0.2]) AS setosa_like;

-- Literals of any numeric type work as the array form.
SELECT ambient.predict('iris', ARRAY[5.1, 3.5, 1.4, 0.2]) AS numeric_literals,
       ambient.predict('iris', ARRAY[5, 3, 1, 0]) AS integer_literals,
       ambient.predict_label('iris', '{6.9,3.1,5.4,2.1}'::float8[]) AS text_literal;

-- Row form: columns are matched by name, in any order, of any numeric type.
CREATE TABLE iris_shuffled AS
SELECT id, species, petal_width::numeric AS petal_width, sepal_length,
       (petal_length * 10)::int AS petal_length_mm, petal_length, sepal_width::numeric AS sepal_width
  FROM iris;
SELECT count(*) AS rows,
       count(*) FILTER (WHERE ambient.predict_label('iris', s.*) = ambient.predict_label('iris', i.*)) AS same_as_original
  FROM iris_shuffled s JOIN iris i USING (id);

-- Predict values: numeric labels give the label, booleans 0/1, text the class index.
SELECT ambient.predict('grade', ARRAY[2]) AS grade_for_2, ambient.predict('grade', ARRAY[12]) AS grade_for_12,
       ambient.predict('passed', ARRAY[3]) AS passed_3, ambient.predict('passed', ARRAY[15]) AS passed_15,
       ambient.predict_label('passed', ARRAY[15]) AS passed_label;

-- Regression estimates.
SELECT round(ambient.predict('lines', ARRAY[4, 2])::numeric, 2) AS y_at_4_2,
       round(ambient.predict('lines', l.*)::numeric, 2) AS by_row, round(y::numeric, 2) AS y
  FROM lines l WHERE id = 10;
SELECT * FROM try($$SELECT ambient.predict_proba('lines', ARRAY[1, 2])$$);

-- STRICT: a NULL argument gives NULL, not an error.
SELECT ambient.predict('iris', NULL::float8[]) IS NULL AS null_features,
       ambient.predict(NULL::text, ARRAY[1, 2, 3, 4]) IS NULL AS null_project;

-- Predict is STABLE and PARALLEL SAFE, never IMMUTABLE.
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args, p.provolatile, p.proparallel, p.proisstrict, p.procost
  FROM pg_proc p WHERE p.pronamespace = 'ambient'::regnamespace AND p.proname LIKE 'predict%'
 ORDER BY 1, 2;

-- It runs inside parallel workers: force a Gather and predict under it.
-- Whether a worker starts depends on free worker slots, so the run is
-- retried until one does, and the test asserts that one did, not how many.
BEGIN;
SET LOCAL force_parallel_mode = on;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
EXPLAIN (COSTS OFF) SELECT sum(ambient.predict('iris', i.*)) FROM iris i;
CREATE FUNCTION pg_temp.ran_in_a_worker(query text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE plan json;
BEGIN
  FOR attempt IN 1..20 LOOP
    EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || query INTO plan;
    IF (plan -> 0 -> 'Plan' ->> 'Workers Launched')::int >= 1 THEN RETURN true; END IF;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN false;
END $$;
SELECT pg_temp.ran_in_a_worker('SELECT sum(ambient.predict(''iris'', i.*)) FROM iris i') AS ran_in_a_worker;
SELECT sum(ambient.predict('iris', i.*)) AS in_worker,
       sum(ambient.predict('iris', ARRAY[sepal_length, sepal_width, petal_length, petal_width])) AS array_in_worker
  FROM iris i;
COMMIT;
SELECT sum(ambient.predict('iris', i.*)) AS in_leader FROM iris i;

-- Predict reads the catalog under its statement's snapshot, also in a
-- transaction that has written (pgrx's own reads would take a new snapshot
-- there): a model dropped by an earlier column of the same statement is
-- still there for a later one, and gone for the next statement.
BEGIN;
SELECT model_id AS spare FROM ambient.train('iris', relation => 'iris', deploy => 'never', algorithm => 'decision_tree') \gset
SELECT ambient.predict_label(:spare, ARRAY[5.1, 3.5, 1.4, 0.2]) AS before,
       ambient.drop_model(:spare) AS dropped,
       ambient.predict_label(:spare, ARRAY[5.1, 3.5, 1.4, 0.2]) AS later_in_the_same_statement;
SELECT sqlstate FROM try(format('SELECT ambient.predict_label(%s, ARRAY[5.1, 3.5, 1.4, 0.2])', :spare));
ROLLBACK;
-- The same with no decoded model kept, so the later column reads the
-- artifact itself, under the statement's snapshot too.
BEGIN;
SET LOCAL ambient.model_cache_size = 0;
SELECT model_id AS spare FROM ambient.train('iris', relation => 'iris', deploy => 'never', algorithm => 'decision_tree') \gset
SELECT ambient.drop_model(:spare) AS dropped,
       ambient.predict_label(:spare, ARRAY[5.1, 3.5, 1.4, 0.2]) AS later_in_the_same_statement;
ROLLBACK;
