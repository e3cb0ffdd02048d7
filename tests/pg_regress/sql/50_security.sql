-- Roles: training reads the source with the caller's privileges, a project
-- belongs to its creator's role, roles outside it can neither read nor
-- change it, and grants let others predict or read. Roles are cluster-wide,
-- so the whole session runs in one transaction that rolls back.
BEGIN;
CREATE ROLE ambient_alice;
CREATE ROLE ambient_bob;
CREATE ROLE ambient_mallory;
GRANT SELECT ON iris TO ambient_alice;
CREATE TABLE secret_iris AS SELECT * FROM iris;
GRANT USAGE ON SCHEMA public TO ambient_alice, ambient_bob, ambient_mallory;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO ambient_mallory', current_database()); END $$;

SET ROLE ambient_alice;
-- No SELECT on the source: no training, 42501 from Postgres itself.
SELECT * FROM try($$SELECT ambient.train('secret', relation => 'secret_iris', target => 'species', algorithm => 'decision_tree')$$);
SELECT * FROM try($$SELECT ambient.train('secret', query => 'SELECT * FROM secret_iris', target => 'species', algorithm => 'decision_tree')$$);
-- With SELECT, alice trains; the rows record her, not the extension owner.
SELECT version, deployed FROM ambient.train('alice_iris', relation => 'iris', target => 'species', algorithm => 'decision_tree');
SELECT version, deployed FROM ambient.train('alice_iris', relation => 'iris', hyperparams => '{"max_depth": 2}', algorithm => 'decision_tree');
-- ... and searches, whose trials only readers of the project see.
SET ambient.progress = off;
SELECT algorithm FROM ambient.train('alice_auto', relation => 'iris', target => 'species', algorithm => 'auto');
RESET ambient.progress;
SELECT count(*) AS her_trials FROM ambient.trials WHERE project = 'alice_auto';
-- knn and svm artifacts hold training rows verbatim; they live where every
-- artifact does, in model_store, and no view shows artifact bytes.
SELECT algorithm FROM ambient.train('alice_rows', relation => 'iris', target => 'species', algorithm => 'knn');
SELECT algorithm FROM ambient.train('alice_rows', relation => 'iris', algorithm => 'svm');
SELECT count(*) AS artifact_columns_outside_model_store FROM information_schema.columns
 WHERE table_schema = 'ambient' AND column_name = 'artifact' AND table_name <> 'model_store';
SELECT project, owner, live_version FROM ambient.overview;
SELECT project, version, trained_by FROM ambient.models ORDER BY version;
-- The tables themselves are the extension owner's alone, for reading too.
SELECT * FROM try($$SELECT count(*) FROM ambient.model_store$$);
SELECT * FROM try($$SELECT count(*) FROM ambient.snapshots$$);
SELECT * FROM try($$SELECT count(*) FROM ambient.projects$$);
SELECT * FROM try($$DELETE FROM ambient.deployment_log$$);
SELECT * FROM try($$UPDATE ambient.model_store SET score = 1$$);
SELECT * FROM try($$INSERT INTO ambient.projects (name, task, target, owner, created_by) VALUES ('p', 'regression', 'y', 'ambient_alice', 'x')$$);
RESET ROLE;
SELECT min(m.id) AS alice_model FROM ambient.model_store m JOIN ambient.projects p ON p.id = m.project_id
 WHERE p.name = 'alice_iris' \gset

-- Mallory sees nothing of alice's project: not in the views, not through a
-- function of hers in a WHERE clause (the views are security barriers), not
-- by predicting.
SET ROLE ambient_mallory;
SELECT count(*) AS projects FROM ambient.overview;
SELECT count(*) AS models FROM ambient.models;
SELECT count(*) AS deployments FROM ambient.deployments;
SELECT count(*) AS snapshots FROM ambient.model_snapshots;
SELECT count(*) AS trials FROM ambient.trials;
SELECT count(*) AS leaderboard FROM ambient.leaderboard('alice_auto');
SELECT * FROM try($$SELECT ambient.predict_label('alice_rows', ARRAY[5.1, 3.5, 1.4, 0.2])$$);
SELECT * FROM try($$SELECT * FROM ambient.feature_importance('alice_auto')$$);
SELECT * FROM try($$SELECT * FROM ambient.explain('alice_auto', ARRAY[5.1, 3.5, 1.4, 0.2])$$);
CREATE SCHEMA mine;
CREATE FUNCTION mine.peek(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN RAISE NOTICE 'peeked at %', $1; RETURN true; END $$;
SELECT count(*) AS models_seen FROM ambient.models WHERE mine.peek(algorithm || ' ' || hyperparams::text);
SELECT * FROM try($$SELECT ambient.predict_label('alice_iris', ARRAY[5.1, 3.5, 1.4, 0.2])$$);
-- A model id she names is refused as that model, without naming its project.
SELECT sqlstate, replace(message, :'alice_model', '<id>') AS message, hint
  FROM try(format('SELECT ambient.predict_label(%s, ARRAY[5.1, 3.5, 1.4, 0.2])', :alice_model));

-- The hijack that 0.1.0 fell to: an `=` of her own, first on her
-- search_path, that says every name (and text, oid, bigint) is equal to
-- every other, so a check written as SQL would find her the owner.
CREATE FUNCTION mine.always(name, name) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR mine.= (LEFTARG = name, RIGHTARG = name, FUNCTION = mine.always);
CREATE FUNCTION mine.always(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR mine.= (LEFTARG = text, RIGHTARG = text, FUNCTION = mine.always);
CREATE FUNCTION mine.always(oid, oid) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR mine.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = mine.always);
CREATE FUNCTION mine.always(bigint, bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR mine.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = mine.always);
SET search_path = mine, pg_catalog, public;
SELECT 'ambient_mallory'::name = 'ambient_alice'::name AS her_equals_says_so;
SELECT * FROM try($$SELECT ambient.rollback('alice_iris')$$);
SELECT * FROM try($$SELECT ambient.drop_project('alice_iris', force => true)$$);
SELECT * FROM try($$SELECT ambient.deploy('alice_iris', 'best_score')$$);
SELECT * FROM try($$SELECT ambient.grant('alice_iris', 'ambient_mallory', 'read')$$);
SELECT * FROM try($$SELECT ambient.train('alice_iris', query => 'SELECT 1.0::float8 AS sepal_length, ''x''::text AS species', algorithm => 'decision_tree')$$);
SELECT * FROM try($$SELECT ambient.predict_label('alice_iris', ARRAY[5.1, 3.5, 1.4, 0.2])$$);
RESET search_path;
RESET ROLE;
-- Nothing of alice's changed.
SELECT p.name, p.owner, (SELECT count(*) FROM ambient.deployment_log d WHERE d.project_id = p.id) AS deployments,
       (SELECT count(*) FROM ambient.model_store m WHERE m.project_id = p.id) AS models
  FROM ambient.projects p WHERE p.name = 'alice_iris';

-- Bob may neither predict nor change alice's project ...
SET ROLE ambient_bob;
SELECT * FROM try($$SELECT ambient.predict_label('alice_iris', ARRAY[5.1, 3.5, 1.4, 0.2])$$);
SELECT * FROM try($$SELECT ambient.deploy('alice_iris', 'most_recent')$$);
SELECT sqlstate, replace(message, :'alice_model', '<id>') AS message, hint
  FROM try(format('SELECT ambient.drop_model(%s)', :alice_model));
SELECT * FROM try($$SELECT ambient.train('alice_iris', relation => 'iris', algorithm => 'decision_tree')$$);
-- ... nor ask why it predicts what it does.
SELECT * FROM try($$SELECT * FROM ambient.explain('alice_iris', ARRAY[5.1, 3.5, 1.4, 0.2])$$);
SELECT * FROM try($$SELECT * FROM ambient.feature_importance('alice_iris')$$);
SELECT sqlstate, replace(message, :'alice_model', '<id>') AS message, hint
  FROM try(format('SELECT * FROM ambient.feature_importance(%s::bigint)', :alice_model));
RESET ROLE;
-- ... until alice grants him 'predict': he predicts, but still sees nothing.
SET ROLE ambient_alice;
SELECT ambient.grant('alice_iris', 'ambient_bob', 'predict');
SELECT ambient.grant('alice_iris', 'ambient_bob', 'predict');
SELECT project, grantee, privilege, granted_by FROM ambient.grants;
SELECT * FROM try($$SELECT ambient.grant('alice_iris', 'no_such_role')$$);
SELECT * FROM try($$SELECT ambient.grant('alice_iris', 'ambient_bob', 'write')$$);
RESET ROLE;
SET ROLE ambient_bob;
SELECT ambient.predict_label('alice_iris', ARRAY[5.1, 3.5, 1.4, 0.2]) AS bob_predicts;
SELECT count(*) AS projects_bob_sees FROM ambient.overview;
SELECT count(*) AS grants_bob_sees FROM ambient.grants;
SELECT * FROM try($$SELECT ambient.deploy('alice_iris', 'most_recent')$$);
SELECT * FROM try($$SELECT ambient.grant('alice_iris', 'ambient_bob', 'read')$$);
RESET ROLE;
-- 'read' shows him the project; revoking takes both back, in the same
-- transaction (the live-model memo does not outlive a change).
SET ROLE ambient_alice;
SELECT ambient.grant('alice_iris', 'ambient_bob', 'read');
RESET ROLE;
SET ROLE ambient_bob;
SELECT project, owner, live_version FROM ambient.overview;
SELECT count(*) AS models_bob_sees FROM ambient.models;
SELECT version, source_kind, source, row_count FROM ambient.model_snapshots ORDER BY version;
RESET ROLE;
SET ROLE ambient_alice;
SELECT ambient.revoke('alice_iris', 'ambient_bob', 'read');
SELECT ambient.revoke('alice_iris', 'ambient_bob', 'predict');
SELECT ambient.revoke('alice_iris', 'ambient_bob', 'predict');
RESET ROLE;
SET ROLE ambient_bob;
SELECT count(*) AS projects_bob_sees FROM ambient.overview;
SELECT * FROM try($$SELECT ambient.predict_label('alice_iris', ARRAY[5.1, 3.5, 1.4, 0.2])$$);
RESET ROLE;

-- A call site remembers its model for as long as its expression lives,
-- which for a PL/pgSQL loop is the whole transaction: a role change between
-- two rounds of one call site is checked again.
CREATE FUNCTION public.predict_twice_as(later text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE labels text := '';
BEGIN
  FOR round IN 1..2 LOOP
    IF round = 2 THEN EXECUTE format('SET ROLE %I', later); END IF;
    labels := labels || ambient.predict_label('alice_iris', ARRAY[5.1, 3.5, 1.4, 0.2]) || ' ';
  END LOOP;
  RESET ROLE;
  RETURN labels;
END $$;
SELECT * FROM try($$SELECT predict_twice_as('ambient_alice')$$);
SELECT * FROM try($$SELECT predict_twice_as('ambient_mallory')$$);
SELECT current_user;

-- Members of alice's role act as alice.
GRANT ambient_alice TO ambient_bob;
SET ROLE ambient_bob;
SELECT ambient.deploy('alice_iris', 'most_recent') IS NOT NULL AS member_deploys;
SELECT project FROM ambient.overview ORDER BY project;
RESET ROLE;
ROLLBACK;
