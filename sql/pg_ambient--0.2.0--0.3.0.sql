-- pg_ambient 0.2.0 -> 0.3.0. Each change says why; a fresh 0.3.0 install
-- and this script give the same catalog (tests/upgrade checks it).
\echo Use "ALTER EXTENSION pg_ambient UPDATE" to load this file. \quit

-- A training definition runs again (a policy's retrain, its changed-rows
-- count) as the role that wrote it, under the search_path it was written
-- under, never as whoever triggers it. 0.2.0 recorded only a name, and a
-- model a policy retrained recorded whoever ran the policy (a superuser,
-- perhaps), so every existing definition is given to its project's owner,
-- the role whose rights govern the project, under the default search_path.
ALTER TABLE ambient.model_store
    ADD COLUMN definition_role regrole,
    ADD COLUMN definition_search_path text;
UPDATE ambient.model_store m
   SET definition_role = p.owner,
       definition_search_path = '"$user", public'
  FROM ambient.projects p
 WHERE p.id = m.project_id AND m.request IS NOT NULL;

-- Live metrics are counted from the attached tables as they are, so the
-- label log (which the triggers could not keep true across a detach, a
-- disabled trigger, replication apply, TRUNCATE or a restore) and the
-- counts folded from it go, and so do the triggers that wrote the log.
DO $$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT relation, trigger_name FROM ambient.attachment_list
              WHERE pg_catalog.to_regclass(relation::pg_catalog.text) IS NOT NULL LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s; DROP TRIGGER IF EXISTS %I ON %s; DROP TRIGGER IF EXISTS %I ON %s',
                                  a.trigger_name || '_inserted', a.relation,
                                  a.trigger_name || '_changed', a.relation,
                                  a.trigger_name || '_deleted', a.relation);
    END LOOP;
END $$;
-- Out of the extension first, which also takes them out of pg_dump's list
-- of configuration tables.
ALTER EXTENSION pg_ambient DROP TABLE ambient.outcome_log;
ALTER EXTENSION pg_ambient DROP SEQUENCE ambient.outcome_log_id_seq;
ALTER EXTENSION pg_ambient DROP TABLE ambient.live_counts;
DROP TABLE ambient.outcome_log, ambient.live_counts;

-- Scheduled jobs run as the project's owner and are shown as pg_cron has
-- them.
DROP VIEW ambient.project_policies;
CREATE FUNCTION ambient."scheduled_job"(
	"project" TEXT
) RETURNS TABLE (
	"job_id" bigint,
	"schedule" TEXT,
	"run_as" TEXT,
	"active" bool
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'scheduled_job_wrapper';

-- A readable project's policy and the pg_cron job that runs it, as pg_cron
-- has the job (NULLs when it has none).
CREATE VIEW ambient.project_policies WITH (security_barrier) AS
SELECT p.project, pol.policy, j.schedule, j.job_id, j.run_as, j.active, pol.set_at, pol.set_by
  FROM ambient.policies pol
  JOIN ambient.readable_projects p ON p.project_id = pol.project_id
  LEFT JOIN LATERAL ambient.scheduled_job(p.project) j ON true;
GRANT SELECT ON ambient.project_policies TO PUBLIC;

-- Attached tables keep accepting writes: DDL that would break an
-- attachment's trigger is refused, and a dropped table's attachment is
-- forgotten. (ALTER EVENT TRIGGER ... DISABLE turns either off.)
CREATE FUNCTION ambient."attached_objects_dropped"(
	"trigger_tables" oid[],
	"trigger_names" TEXT[]
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'attached_objects_dropped_wrapper';
CREATE FUNCTION ambient."check_attached_tables"(
	"relations" oid[],
	"renamed_trigger_tables" oid[],
	"created_triggers" oid[]
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'check_attached_tables_wrapper';
CREATE FUNCTION ambient.guard_attached_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ambient.check_attached_tables(
        ARRAY(SELECT objid FROM pg_catalog.pg_event_trigger_ddl_commands()
               WHERE classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass),
        ARRAY(SELECT t.tgrelid FROM pg_catalog.pg_event_trigger_ddl_commands() c
                JOIN pg_catalog.pg_trigger t ON t.oid OPERATOR(pg_catalog.=) c.objid
               WHERE c.command_tag OPERATOR(pg_catalog.=) 'ALTER TRIGGER'),
        ARRAY(SELECT c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c
               WHERE c.command_tag OPERATOR(pg_catalog.=) 'CREATE TRIGGER'));
END $$;
CREATE FUNCTION ambient.forget_dropped_attachments() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ambient.attached_objects_dropped(
        ARRAY(SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(address_names[1])
                       OPERATOR(pg_catalog.||) '.'
                       OPERATOR(pg_catalog.||) pg_catalog.quote_ident(address_names[2]))::pg_catalog.oid
                FROM pg_catalog.pg_event_trigger_dropped_objects()
               WHERE object_type OPERATOR(pg_catalog.=) 'trigger' ORDER BY objid),
        ARRAY(SELECT address_names[3]
                FROM pg_catalog.pg_event_trigger_dropped_objects()
               WHERE object_type OPERATOR(pg_catalog.=) 'trigger' ORDER BY objid));
END $$;
REVOKE EXECUTE ON FUNCTION ambient.check_attached_tables(oid[], oid[], oid[]),
                          ambient.attached_objects_dropped(oid[], text[]) FROM PUBLIC;
CREATE EVENT TRIGGER ambient_guard_attached_tables ON ddl_command_end
    EXECUTE FUNCTION ambient.guard_attached_tables();
CREATE EVENT TRIGGER ambient_forget_dropped_attachments ON sql_drop
    EXECUTE FUNCTION ambient.forget_dropped_attachments();

-- The default learner is now hist_gbm. A definition that left the
-- algorithm to the default was fitted with gbm, the default until now, and
-- a retrain must fit gbm again (its hyper-parameters are gbm's): the
-- definition names it. 0.3.0 records the algorithm it fits.
UPDATE ambient.model_store
   SET request = pg_catalog.jsonb_set(request, '{algorithm}', '"gbm"')
 WHERE request IS NOT NULL
   AND pg_catalog.jsonb_typeof(request OPERATOR(pg_catalog.->) 'algorithm') OPERATOR(pg_catalog.=) 'null';

-- Successive halving screens a search's candidates on subsamples, and
-- every trial keeps the size of the rows it was cross-validated on; the
-- leaderboard ranks trials on more rows first. Trials from before have
-- none (NULL), and rank as before.
ALTER TABLE ambient.trial_log ADD COLUMN sample_rows bigint;
CREATE OR REPLACE VIEW ambient.trials WITH (security_barrier) AS
SELECT p.project,
       t.model_id,
       m.version,
       t.trial,
       t.algorithm,
       t.hyperparams,
       t.fold_scores,
       t.mean_score,
       t.std_score,
       t.seconds,
       t.status,
       t.chosen,
       t.sample_rows
  FROM ambient.trial_log t
  JOIN ambient.model_store m ON m.id = t.model_id
  JOIN ambient.readable_projects p ON p.project_id = m.project_id;

CREATE OR REPLACE FUNCTION ambient.leaderboard(project text, version integer DEFAULT NULL)
RETURNS TABLE (rank bigint, trial integer, algorithm text, hyperparams jsonb,
               mean_score double precision, std_score double precision,
               fold_scores double precision[], seconds double precision,
               status text, chosen boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.rank() OVER (ORDER BY t.sample_rows DESC NULLS LAST, t.mean_score DESC NULLS LAST),
           t.trial, t.algorithm, t.hyperparams, t.mean_score, t.std_score,
           t.fold_scores, t.seconds, t.status, t.chosen
      FROM ambient.trials t
     WHERE t.project OPERATOR(pg_catalog.=) $1
       AND t.version OPERATOR(pg_catalog.=) COALESCE($2,
             (SELECT pg_catalog.max(u.version) FROM ambient.trials u
               WHERE u.project OPERATOR(pg_catalog.=) $1))
     ORDER BY 1, t.trial
$$;
