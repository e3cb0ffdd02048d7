-- Roles: training reads the source with the caller's privileges, the catalog
-- is read-only to ordinary roles, and a project belongs to its creator's role.
-- Roles are cluster-wide, so the whole session runs in one transaction that
-- rolls back.
BEGIN;
CREATE ROLE ambient_alice;
CREATE ROLE ambient_bob;
GRANT SELECT ON iris TO ambient_alice;
CREATE TABLE secret_iris AS SELECT * FROM iris;
GRANT USAGE ON SCHEMA public TO ambient_alice, ambient_bob;

SET ROLE ambient_alice;
-- No SELECT on the source: no training, 42501 from Postgres itself.
SELECT * FROM try($$SELECT ambient.train('secret', relation => 'secret_iris', target => 'species')$$);
SELECT * FROM try($$SELECT ambient.train('secret', query => 'SELECT * FROM secret_iris', target => 'species')$$);
-- With SELECT, alice trains; the rows record her, not the extension owner.
SELECT version, deployed FROM ambient.train('alice_iris', relation => 'iris', target => 'species');
SELECT p.owner, p.created_by, m.created_by AS trained_by, d.deployed_by
  FROM ambient.projects p JOIN ambient.model_store m ON m.project_id = p.id
  JOIN ambient.deployment_log d ON d.project_id = p.id WHERE p.name = 'alice_iris';
-- The catalog can be read but not written directly.
SELECT count(*) > 0 AS can_read FROM ambient.models;
SELECT * FROM try($$DELETE FROM ambient.deployment_log$$);
SELECT * FROM try($$UPDATE ambient.model_store SET score = 1$$);
SELECT * FROM try($$INSERT INTO ambient.projects (name, task, target, owner, created_by) VALUES ('p', 'regression', 'y', 'x', 'x')$$);
-- Objects on alice's search_path cannot stand in for the catalog's while the
-- extension writes as its owner.
CREATE TEMP TABLE projects (id bigint, name text, task text, target text);
SELECT version, deployed FROM ambient.train('alice_iris', relation => 'iris', hyperparams => '{"max_depth": 2}');
RESET ROLE;

SET ROLE ambient_bob;
-- Bob may predict with alice's live model ...
SELECT ambient.predict_label('alice_iris', ARRAY[5.1, 3.5, 1.4, 0.2]) AS bob_predicts;
-- ... but not change her project.
SELECT * FROM try($$SELECT ambient.deploy('alice_iris', 'most_recent')$$);
SELECT * FROM try($$SELECT ambient.rollback('alice_iris')$$);
SELECT * FROM try($$SELECT ambient.drop_project('alice_iris', force => true)$$);
SELECT * FROM try($$SELECT ambient.drop_model((SELECT max(model_id) FROM ambient.models WHERE project = 'alice_iris'))$$);
SELECT * FROM try($$SELECT ambient.train('alice_iris', relation => 'iris')$$);
RESET ROLE;

-- Members of alice's role may.
GRANT ambient_alice TO ambient_bob;
SET ROLE ambient_bob;
SELECT ambient.deploy('alice_iris', 'most_recent') IS NOT NULL AS member_deploys;
RESET ROLE;

-- Functions that write run as invoker; none is SECURITY DEFINER.
SELECT count(*) AS security_definer_functions FROM pg_proc
 WHERE pronamespace = 'ambient'::regnamespace AND prosecdef;
ROLLBACK;
