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

-- Feature store (0.3.0). A feature set's history lives in a table of its
-- own in schema ambient_features, owned by the extension: one row per
-- version of an entity's features at an event time (valid time), with
-- when the database learned it (ingested_at) and when a correction or a
-- retraction replaced it (superseded_at), so what was known at any moment
-- can be rebuilt. Training sets are views in schema ambient_training, owned
-- by the extension and readable by the role that made them, that read
-- with the reader's rights.
CREATE SCHEMA ambient_features;
CREATE SCHEMA ambient_training;
REVOKE ALL ON SCHEMA ambient_features, ambient_training FROM PUBLIC;
GRANT USAGE ON SCHEMA ambient_features, ambient_training TO PUBLIC;

CREATE TABLE ambient.feature_set_store (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    source_kind       text NOT NULL CHECK (source_kind IN ('table', 'view', 'query')),
    -- The schema-qualified relation as given, or the full query text.
    source            text NOT NULL,
    -- The table or view itself, which follows renames; NULL for a query.
    source_relation   regclass,
    entity            text[] NOT NULL,
    event_time        text NOT NULL,
    features          text[] NOT NULL,
    -- format_type of the entity columns, event time and features.
    entity_types      text[] NOT NULL,
    event_time_type   text NOT NULL,
    feature_types     text[] NOT NULL,
    ttl               interval,
    description       text,
    history           regclass NOT NULL,
    -- Roles with this role's privileges may refresh, drop and grant it. A
    -- view or query source is read as this role, under this search_path.
    owner             regrole NOT NULL,
    source_search_path text NOT NULL,
    -- sha256 over the definition (source, entity, event time, features and
    -- their types, TTL): what a model's lineage records.
    definition_sha256 text NOT NULL,
    -- Per feature, over the current versions: rows, nulls, distinct values,
    -- min, max, mean, std (numbers), as of the last refresh.
    feature_stats     jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by        name NOT NULL,
    refreshed_at      timestamptz,
    refreshed_by      name
);

-- Who else may use a feature set: 'read' reads its history (a SELECT grant
-- on the history table, so Postgres checks it), 'predict' serves its values
-- to a model at predict time without reading them.
CREATE TABLE ambient.feature_set_grants (
    feature_set_id  bigint NOT NULL REFERENCES ambient.feature_set_store (id) ON DELETE CASCADE,
    grantee         regrole NOT NULL,
    privilege       text NOT NULL CHECK (privilege IN ('predict', 'read')),
    granted_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    granted_by      name NOT NULL,
    PRIMARY KEY (feature_set_id, grantee, privilege)
);

-- A spine joined point-in-time to feature sets, as a view.
CREATE TABLE ambient.training_set_store (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    -- The spine as given: a schema-qualified relation or the query text.
    spine             text NOT NULL,
    -- The spine's columns that key the feature sets, and its event time.
    entity            text[] NOT NULL,
    entity_types      text[] NOT NULL,
    event_time        text NOT NULL,
    label             text,
    -- The spine's other columns, passed through (row features).
    passed            text[] NOT NULL,
    -- One object per feature: {"set", "feature"}; the view's column is
    -- the feature's name.
    features          jsonb NOT NULL,
    as_of_ingest      timestamptz,
    -- The SELECT the view is made of.
    query             text NOT NULL,
    view              regclass NOT NULL,
    owner             regrole NOT NULL,
    definition_sha256 text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by        name NOT NULL
);

-- A model trained from a training set: the set, the feature sets with
-- their definition hashes, and the newest ingest time it saw.
ALTER TABLE ambient.model_store ADD COLUMN feature_lineage jsonb;
ALTER TABLE ambient.snapshots DROP CONSTRAINT snapshots_source_kind_check;
ALTER TABLE ambient.snapshots ADD CONSTRAINT snapshots_source_kind_check
    CHECK (source_kind IN ('relation', 'query', 'training_set'));

SELECT pg_catalog.pg_extension_config_dump('ambient.feature_set_store', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.feature_set_store_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.feature_set_grants', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.training_set_store', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.training_set_store_id_seq', '');
REVOKE ALL ON ambient.feature_set_store, ambient.feature_set_grants, ambient.training_set_store
    FROM PUBLIC;

-- The feature sets the current role may read: it has the privileges of the
-- owning role, or of a role granted 'read'.
CREATE VIEW ambient.readable_feature_sets WITH (security_barrier) AS
SELECT f.*
  FROM ambient.feature_set_store f
 WHERE pg_catalog.pg_has_role(f.owner, 'USAGE')
    OR EXISTS (SELECT 1 FROM ambient.feature_set_grants g
                WHERE g.feature_set_id = f.id AND g.privilege = 'read'
                  AND pg_catalog.pg_has_role(g.grantee, 'USAGE'));

-- The projects whose live model reads each feature set.
CREATE VIEW ambient.feature_set_users AS
SELECT s.set_name AS feature_set, p.name AS project, m.id AS model_id
  FROM ambient.live_deployments live
  JOIN ambient.model_store m ON m.id = live.model_id
  JOIN ambient.projects p ON p.id = live.project_id
 CROSS JOIN LATERAL pg_catalog.jsonb_array_elements_text(m.feature_lineage -> 'feature_sets') s(set_name);

CREATE VIEW ambient.feature_sets WITH (security_barrier) AS
SELECT f.name AS feature_set,
       f.owner,
       f.description,
       f.source_kind,
       f.source,
       f.entity,
       f.event_time,
       f.features,
       f.ttl,
       f.history,
       ARRAY(SELECT u.project FROM ambient.feature_set_users u
              WHERE u.feature_set = f.name
                AND u.project IN (SELECT r.project FROM ambient.readable_projects r)
              ORDER BY u.project) AS live_projects,
       f.definition_sha256,
       f.created_at,
       f.created_by,
       f.refreshed_at
  FROM ambient.readable_feature_sets f;

-- One row per feature of a readable set, with its statistics as of the
-- set's last refresh.
CREATE VIEW ambient.features WITH (security_barrier) AS
SELECT f.name AS feature_set,
       x.feature,
       x.type::pg_catalog.regtype::pg_catalog.text AS type,
       f.entity,
       f.event_time,
       f.ttl,
       f.owner,
       f.description,
       (f.feature_stats -> x.feature ->> 'rows')::bigint AS rows,
       (f.feature_stats -> x.feature ->> 'nulls')::bigint AS nulls,
       (f.feature_stats -> x.feature ->> 'distinct')::bigint AS distinct_values,
       f.feature_stats -> x.feature ->> 'min' AS min,
       f.feature_stats -> x.feature ->> 'max' AS max,
       (f.feature_stats -> x.feature ->> 'mean')::double precision AS mean,
       (f.feature_stats -> x.feature ->> 'std')::double precision AS std
  FROM ambient.readable_feature_sets f
 CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(f.features), pg_catalog.unnest(f.feature_types)) AS x(feature, type);

-- How fresh each readable feature set is, read now from its history with
-- the caller's rights: the newest event and ingest times, how many
-- entities it has, and the share whose latest value is older than the TTL.
CREATE FUNCTION ambient.feature_set_freshness()
RETURNS TABLE (feature_set text, ttl interval, entities bigint,
               newest_event_time timestamptz, newest_ingested_at timestamptz,
               stale_entities bigint, stale_share double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT r.feature_set, r.ttl, r.history, r.entity, r.event_time
               FROM ambient.feature_sets r ORDER BY r.feature_set LOOP
        feature_set := f.feature_set;
        ttl := f.ttl;
        EXECUTE format(
            'SELECT count(*), max(l.t)::timestamptz, max(l.i),
                    count(*) FILTER (WHERE $1 IS NOT NULL AND l.t::timestamptz < now() - $1)
               FROM (SELECT max(h.%I) AS t, max(h.ingested_at) AS i
                       FROM %s h WHERE h.superseded_at IS NULL GROUP BY %s) l',
            f.event_time, f.history,
            (SELECT string_agg(format('h.%I', e), ', ') FROM unnest(f.entity) e))
          INTO entities, newest_event_time, newest_ingested_at, stale_entities
          USING f.ttl;
        stale_share := CASE WHEN entities > 0 THEN stale_entities::double precision / entities END;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE VIEW ambient.feature_freshness AS
SELECT * FROM ambient.feature_set_freshness();

CREATE VIEW ambient.training_sets WITH (security_barrier) AS
SELECT t.name AS training_set,
       t.view,
       t.spine,
       t.entity,
       t.event_time,
       t.label,
       t.passed AS row_features,
       ARRAY(SELECT (x ->> 'set') || '.' || (x ->> 'feature')
               FROM pg_catalog.jsonb_array_elements(t.features) x) AS features,
       t.as_of_ingest,
       t.owner,
       t.definition_sha256,
       t.created_at,
       t.created_by
  FROM ambient.training_set_store t
 WHERE pg_catalog.pg_has_role(t.owner, 'USAGE');

GRANT SELECT ON ambient.feature_sets, ambient.features, ambient.feature_freshness,
                ambient.training_sets TO PUBLIC;

-- Models name the training set and feature sets they were trained from.
CREATE OR REPLACE VIEW ambient.models WITH (security_barrier) AS
SELECT m.id AS model_id,
       p.project,
       m.version,
       m.algorithm,
       m.primary_metric,
       m.score,
       (m.id = live.model_id) AS live,
       m.train_rows,
       m.test_rows,
       m.metrics,
       m.hyperparams,
       m.features,
       m.preprocessing,
       m.created_at AS trained_at,
       m.created_by AS trained_by,
       pg_catalog.octet_length(m.artifact) AS artifact_bytes,
       m.feature_lineage ->> 'training_set' AS training_set,
       ARRAY(SELECT pg_catalog.jsonb_array_elements_text(m.feature_lineage -> 'feature_sets')) AS feature_sets,
       m.feature_lineage,
       m.artifact_sha256
  FROM ambient.model_store m
  JOIN ambient.readable_projects p ON p.project_id = m.project_id
  LEFT JOIN ambient.live_deployments live ON live.project_id = m.project_id;

-- train reads a training set (training_set => 'name').
DROP FUNCTION ambient.train(text, regclass, text, text, text, text, jsonb, text[], double precision,
                            bigint, text, bool, jsonb, text, jsonb, int, int, double precision);
CREATE FUNCTION ambient."train"(
	"project" TEXT, /* Option < & str > */
	"relation" regclass DEFAULT NULL, /* Option < PgRelation > */
	"query" TEXT DEFAULT NULL, /* Option < & str > */
	"target" TEXT DEFAULT NULL, /* Option < & str > */
	"task" TEXT DEFAULT NULL, /* Option < & str > */
	"algorithm" TEXT DEFAULT NULL, /* Option < & str > */
	"hyperparams" jsonb DEFAULT '{}', /* Option < JsonB > */
	"features" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < Option < String > > > */
	"test_size" double precision DEFAULT 0.25, /* Option < f64 > */
	"seed" bigint DEFAULT 42, /* Option < i64 > */
	"deploy" TEXT DEFAULT 'if_better', /* Option < & str > */
	"new_contract" bool DEFAULT false, /* bool */
	"preprocess" jsonb DEFAULT '{}', /* Option < JsonB > */
	"search" TEXT DEFAULT NULL, /* Option < & str > */
	"search_params" jsonb DEFAULT NULL, /* Option < JsonB > */
	"search_iterations" INT DEFAULT 10, /* Option < i32 > */
	"folds" INT DEFAULT 5, /* Option < i32 > */
	"budget_seconds" double precision DEFAULT NULL, /* Option < f64 > */
	"training_set" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"model_id" bigint,  /* i64 */
	"version" INT,  /* i32 */
	"algorithm" TEXT,  /* String */
	"metrics" jsonb,  /* JsonB */
	"deployed" bool  /* bool */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'train_wrapper';

-- The feature store's functions.
CREATE FUNCTION ambient."create_feature_set"(
	"name" TEXT, /* Option < & str > */
	"source" TEXT, /* Option < & str > */
	"entity" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"event_time" TEXT, /* Option < & str > */
	"features" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < Option < String > > > */
	"ttl" interval DEFAULT NULL, /* Option < pgrx :: datum :: Interval > */
	"description" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"feature_set" TEXT,  /* String */
	"source_kind" TEXT,  /* String */
	"history" TEXT,  /* String */
	"features" TEXT[],  /* Vec < String > */
	"recorded" bigint  /* i64 */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_feature_set_wrapper';

CREATE FUNCTION ambient."refresh_feature_set"(
	"name" TEXT /* & str */
) RETURNS TABLE (
	"recorded" bigint,  /* i64 */
	"superseded" bigint,  /* i64 */
	"skipped" bigint  /* i64 */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'refresh_feature_set_wrapper';

CREATE FUNCTION ambient."drop_feature_set"(
	"name" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_feature_set_wrapper';

CREATE FUNCTION ambient."create_training_set"(
	"name" TEXT, /* Option < & str > */
	"spine" TEXT, /* Option < & str > */
	"features" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"label" TEXT DEFAULT NULL, /* Option < & str > */
	"as_of_ingest" timestamp with time zone DEFAULT NULL /* Option < pgrx :: datum :: TimestampWithTimeZone > */
) RETURNS TABLE (
	"training_set" TEXT,  /* String */
	"view" TEXT,  /* String */
	"entity" TEXT[],  /* Vec < String > */
	"event_time" TEXT,  /* String */
	"columns" TEXT[]  /* Vec < String > */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_training_set_wrapper';

CREATE FUNCTION ambient."drop_training_set"(
	"name" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_training_set_wrapper';

CREATE FUNCTION ambient.features_for(features text[], entity anyelement)
RETURNS TABLE (feature_set text, feature text, value text)
    STRICT STABLE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'features_for_wrapper';

-- Predicting by entity: the live model's features looked up from its
-- feature sets. The project is a name so that predict('p', t) keeps
-- meaning the row form.
CREATE FUNCTION ambient.predict(project name, entity anyelement, "row" record DEFAULT NULL) RETURNS float8
    STABLE PARALLEL RESTRICTED COST 1000 LANGUAGE c AS 'MODULE_PATHNAME', 'predict_by_entity_wrapper';

CREATE FUNCTION ambient.predict_label(project name, entity anyelement, "row" record DEFAULT NULL) RETURNS text
    STABLE PARALLEL RESTRICTED COST 1000 LANGUAGE c AS 'MODULE_PATHNAME', 'predict_label_by_entity_wrapper';

CREATE FUNCTION ambient.predict_proba(project name, entity anyelement, "row" record DEFAULT NULL) RETURNS float8[]
    STABLE PARALLEL RESTRICTED COST 1000 LANGUAGE c AS 'MODULE_PATHNAME', 'predict_proba_by_entity_wrapper';
