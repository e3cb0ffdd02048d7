-- History: tags, log, diff, lineage, the audit trail and the source guard.
-- Timestamps, WAL positions and hashes that change run to run are left out.
SET ambient.progress = off;
CREATE TABLE blooms AS SELECT * FROM iris;
ALTER TABLE blooms ADD PRIMARY KEY (id);
SELECT version FROM ambient.train('hist', relation => 'blooms', target => 'species',
                                  algorithm => 'logistic_regression');
SELECT version FROM ambient.train('hist', relation => 'blooms', algorithm => 'decision_tree',
                                  hyperparams => '{"max_depth": 2}', deploy => 'never');
SELECT model_id AS v1 FROM ambient.models WHERE project = 'hist' AND version = 1 \gset
SELECT model_id AS v2 FROM ambient.models WHERE project = 'hist' AND version = 2 \gset

-- Tags: set, move, and use in predict and deploy.
SELECT ambient.tag(:v2, 'candidate');
SELECT ambient.tag(:v2, 'candidate');
SELECT ambient.tag(:v1, 'champion');
SELECT project, tag, version FROM ambient.tags WHERE project = 'hist' ORDER BY tag;
SELECT ambient.predict_label('hist@candidate', ARRAY[6.3, 2.5, 5.0, 1.9]) AS candidate,
       ambient.predict_label('hist@champion', ARRAY[6.3, 2.5, 5.0, 1.9]) AS champion;
SELECT * FROM try($$SELECT ambient.predict('hist@nobody', ARRAY[1.0, 2.0, 3.0, 4.0])$$);
SELECT * FROM try(format('SELECT ambient.tag(%s, %L)', :v1, '1bad tag'));
SELECT * FROM try(format('SELECT ambient.tag(%s, %L)', :v1, repeat('x', 64)));
SELECT * FROM try($$SELECT ambient.tag(999999, 'x')$$);
SELECT * FROM try($$SELECT ambient.deploy('hist', 'other@candidate')$$);
SELECT ambient.deploy('hist', 'hist@candidate', reason => 'the tree reads better') = :v2 AS deployed_tagged;
SELECT ambient.rollback('hist', reason => 'back to the champion') = :v1 AS rolled_back;
-- Moving a tag: the tag now names v2, and the move is audited.
SELECT ambient.tag(:v2, 'champion');
SELECT version FROM ambient.tags WHERE project = 'hist' AND tag = 'champion';
SELECT ambient.untag(:v1, 'champion');
SELECT ambient.untag(:v2, 'candidate');

-- The log: newest first, with marks and tags.
SELECT graph, version, algorithm, why, marks, tags FROM ambient.log('hist');
SELECT * FROM try($$SELECT * FROM ambient.log('no_such_project')$$);

-- Diff: what changed between the two versions.
SELECT aspect, key, a, b FROM ambient.diff(:v1, :v2)
 WHERE aspect IN ('model', 'hyperparameter', 'feature', 'source')
   AND key NOT IN ('trained_at', 'id', 'artifact_sha256');
SELECT count(*) FILTER (WHERE key LIKE '% (same % test rows)') > 0 AS same_rows_compared,
       count(*) FILTER (WHERE key LIKE '% (as recorded)') > 0 AS recorded_shown
  FROM ambient.diff(:v1, :v2) WHERE aspect = 'metric';
SELECT * FROM try($$SELECT * FROM ambient.diff(999998, 999999)$$);

-- Lineage, from the model and from a stored prediction.
SELECT node, kind, edge FROM ambient.lineage(:v1) WHERE kind <> 'deployment';
SELECT count(*) AS deployments FROM ambient.lineage(:v1) WHERE kind = 'deployment';
CREATE TABLE scored (id int PRIMARY KEY, sepal_length float8, sepal_width float8,
                     petal_length float8, petal_width float8);
SELECT prediction_column FROM ambient.attach('hist', 'scored');
INSERT INTO scored VALUES (7, 6.3, 2.5, 5.0, 1.9);
SELECT node, kind, edge FROM ambient.lineage_of_prediction('scored', 7) LIMIT 3;
SELECT * FROM try($$SELECT * FROM ambient.lineage_of_prediction('scored', 8)$$);
SELECT * FROM try($$SELECT * FROM ambient.lineage(999999)$$);

-- The audit trail of this project, in chain order.
SELECT action, model_id IS NOT NULL AS has_model, role, reason
  FROM ambient.audit WHERE project = 'hist' ORDER BY position;
SELECT valid, problem FROM ambient.verify_audit();
-- Append-only, for the extension owner too.
SELECT * FROM try($$UPDATE ambient.audit_log SET reason = 'edited' WHERE project = 'hist'$$);
SELECT * FROM try($$DELETE FROM ambient.audit_log WHERE project = 'hist'$$);
SELECT * FROM try($$TRUNCATE ambient.audit_log$$);

-- The source guard: what the live model reads cannot change under it.
SELECT * FROM try($$ALTER TABLE blooms RENAME TO old_blooms$$);
SELECT * FROM try($$ALTER TABLE blooms ALTER COLUMN petal_width TYPE numeric$$);
SELECT * FROM try($$ALTER TABLE blooms DROP COLUMN petal_width$$);
SELECT * FROM try($$DROP TABLE blooms CASCADE$$);
-- A change that keeps what it reads is fine.
ALTER TABLE blooms ADD COLUMN note text;
ALTER TABLE blooms DROP COLUMN note;
-- Release accepts the loss for the model live now.
SELECT array_length(ambient.release('hist', 'moving to a new table'), 1) AS released;
ALTER TABLE blooms RENAME TO old_blooms;
SELECT action, reason FROM ambient.audit WHERE project = 'hist' ORDER BY position DESC LIMIT 1;

-- Every schema, function, table and view of the extension says what it is
-- for, in \df+ and \d+.
SELECT pg_describe_object(d.classid, d.objid, 0) AS undocumented
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_ambient'
 WHERE d.deptype = 'e'
   AND d.classid IN ('pg_proc'::regclass, 'pg_namespace'::regclass, 'pg_class'::regclass)
   AND (d.classid <> 'pg_class'::regclass
        OR (SELECT relkind FROM pg_class WHERE oid = d.objid) IN ('r', 'v'))
   AND obj_description(d.objid, d.classid::regclass::text) IS NULL
 ORDER BY 1;
SELECT obj_description('ambient.log(text)'::regprocedure, 'pg_proc') AS log_says;
