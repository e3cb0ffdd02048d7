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
    refreshed_by      name,
    -- Every table and view reading the source touches: DDL that drops or
    -- breaks one is refused while the set exists.
    source_relations  regclass[] NOT NULL DEFAULT '{}'
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
-- What a model did on its test rows, for ambient.report.
ALTER TABLE ambient.model_store ADD COLUMN diagnostics jsonb;
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

-- Tags (MLflow's aliases): a name that points at one model of a project,
-- so 'project@tag' can stand for the model in predict and deploy. A tag
-- moves by one UPDATE under the project's lock, and every move is in the
-- audit trail.
CREATE TABLE ambient.model_tags (
    project_id  bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    tag         text NOT NULL,
    model_id    bigint NOT NULL REFERENCES ambient.model_store (id) ON DELETE CASCADE,
    tagged_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    tagged_by   name NOT NULL,
    PRIMARY KEY (project_id, tag)
);
CREATE INDEX ON ambient.model_tags (model_id);
SELECT pg_catalog.pg_extension_config_dump('ambient.model_tags', '');
REVOKE ALL ON ambient.model_tags FROM PUBLIC;

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
       m.artifact_sha256,
       m.parent_model_id,
       ARRAY(SELECT t.tag FROM ambient.model_tags t WHERE t.model_id = m.id ORDER BY t.tag) AS tags,
       m.diagnostics
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
	"training_set" TEXT DEFAULT NULL, /* Option < & str > */
	"snapshot" TEXT DEFAULT 'hash' /* Option < & str > */
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

-- History you can audit (issue 15). Snapshots record where the WAL was at
-- training, and the relations the source read whose owner has the project
-- owner's privileges, so DDL on them is checked against the live models
-- trained from it; a relation source is its own relation (a query source
-- from before 0.3.0 is not known, so not guarded until it is trained
-- again).
ALTER TABLE ambient.snapshots ADD COLUMN wal_lsn pg_lsn,
                              ADD COLUMN source_relations regclass[],
                              ADD COLUMN copy regclass;
-- Copies of training rows (train(..., snapshot => 'copy')), one table per
-- snapshot, owned by the extension and readable under the project's read
-- rules (SELECT granted to its owner and 'read' grantees, kept in step by
-- ambient.grant and ambient.revoke).
CREATE SCHEMA ambient_snapshots;
REVOKE ALL ON SCHEMA ambient_snapshots FROM PUBLIC;
GRANT USAGE ON SCHEMA ambient_snapshots TO PUBLIC;
ALTER TABLE ambient.snapshots ALTER COLUMN wal_lsn SET DEFAULT pg_catalog.pg_current_wal_insert_lsn();
UPDATE ambient.snapshots s
   SET source_relations = ARRAY[c.oid::regclass]
  FROM ambient.projects p, pg_catalog.pg_class c
 WHERE p.id = s.project_id AND s.source_kind = 'relation'
   AND c.oid = pg_catalog.to_regclass(s.source)
   AND pg_catalog.pg_has_role(c.relowner, p.owner, 'USAGE');
-- What each model of a readable project was trained on: the source (table
-- or full query text), row counts, per-column statistics and the data hash.
CREATE OR REPLACE VIEW ambient.model_snapshots WITH (security_barrier) AS
SELECT m.id AS model_id,
       p.project,
       m.version,
       s.source_kind,
       s.source,
       s.row_count,
       s.unlabeled_rows,
       s.column_stats,
       s.data_sha256,
       s.created_at,
       s.created_by,
       s.wal_lsn,
       s.id AS snapshot_id,
       s.copy,
       CASE WHEN s.copy IS NOT NULL THEN pg_catalog.pg_total_relation_size(s.copy) END AS copy_bytes
  FROM ambient.model_store m
  JOIN ambient.readable_projects p ON p.project_id = m.project_id
  JOIN ambient.snapshots s ON s.id = m.snapshot_id;

-- Live models whose sources may change or go: ambient.release(project)
-- accepts the loss for the models live then, so DDL on what they read is
-- no longer refused for them. A model deployed later is guarded again.
CREATE TABLE ambient.source_releases (
    model_id     bigint PRIMARY KEY REFERENCES ambient.model_store (id) ON DELETE CASCADE,
    project_id   bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    released_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    released_by  name NOT NULL,
    reason       text
);
SELECT pg_catalog.pg_extension_config_dump('ambient.source_releases', '');
REVOKE ALL ON ambient.source_releases FROM PUBLIC;

CREATE VIEW ambient.tags WITH (security_barrier) AS
SELECT p.project,
       t.tag,
       t.model_id,
       m.version,
       t.tagged_at,
       t.tagged_by
  FROM ambient.model_tags t
  JOIN ambient.readable_projects p ON p.project_id = t.project_id
  JOIN ambient.model_store m ON m.id = t.model_id;
GRANT SELECT ON ambient.tags TO PUBLIC;

-- A project's models newest first, one row each, as `git log --oneline
-- --graph` shows commits: a retrain is drawn on its parent's line, a model
-- trained by hand starts a line of its own. Each row says who trained it,
-- when and why ('person', 'policy', or 'schedule' for a policy pg_cron
-- ran), how it did, where it is deployed and its tags.
CREATE FUNCTION ambient.log(project text)
RETURNS TABLE (graph text, version integer, model_id bigint, parent_model_id bigint,
               algorithm text, metric text, score double precision, trials bigint,
               trained_by name, trained_at timestamptz, why text, marks text, tags text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record;
    lanes bigint[] := '{}';
    lane integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ambient.readable_projects r WHERE r.project = log.project) THEN
        RAISE EXCEPTION 'project "%" does not exist', log.project
            USING ERRCODE = '42704',
                  HINT = 'SELECT project FROM ambient.overview lists the projects you may read';
    END IF;
    FOR m IN SELECT x.* FROM ambient.models x WHERE x.project = log.project ORDER BY x.version DESC LOOP
        -- The line waiting for this model (a newer model's parent), or a new one.
        lane := array_position(lanes, m.model_id);
        IF lane IS NULL THEN
            lane := array_position(lanes, NULL);
            IF lane IS NULL THEN
                lanes := lanes || NULL::bigint;
                lane := cardinality(lanes);
            END IF;
        END IF;
        graph := '';
        FOR i IN 1 .. cardinality(lanes) LOOP
            graph := graph || CASE WHEN i = lane THEN '* '
                                   WHEN lanes[i] IS NOT NULL THEN '| '
                                   ELSE '  ' END;
        END LOOP;
        graph := rtrim(graph);
        -- Lines that waited for this model end here; its own goes on to
        -- its parent.
        FOR i IN 1 .. cardinality(lanes) LOOP
            IF lanes[i] = m.model_id THEN
                lanes[i] := NULL;
            END IF;
        END LOOP;
        lanes[lane] := m.parent_model_id;
        WHILE cardinality(lanes) > 0 AND lanes[cardinality(lanes)] IS NULL LOOP
            lanes := lanes[1 : cardinality(lanes) - 1];
        END LOOP;

        version := m.version;
        model_id := m.model_id;
        parent_model_id := m.parent_model_id;
        algorithm := m.algorithm;
        metric := m.primary_metric;
        score := m.score;
        trials := (SELECT count(*) FROM ambient.trials t WHERE t.model_id = m.model_id);
        trained_by := m.trained_by;
        trained_at := m.trained_at;
        why := CASE
            WHEN m.parent_model_id IS NULL THEN 'person'
            WHEN EXISTS (SELECT 1 FROM ambient.audit a
                          WHERE a.model_id = m.model_id AND a.action = 'train'
                            AND a.application = 'pg_cron') THEN 'schedule'
            ELSE 'policy' END;
        marks := concat_ws(', ',
            CASE WHEN m.live THEN 'live' END,
            (SELECT CASE WHEN c.mode = 'canary'
                         THEN format('canary %s %%', round((c.traffic * 100)::numeric, 1)::float8)
                         ELSE 'shadow' END
               FROM ambient.challenges c
              WHERE c.project = log.project
                AND c.event_id = (SELECT max(l.event_id) FROM ambient.challenges l
                                   WHERE l.project = log.project)
                AND c.event = 'started' AND c.model_id = m.model_id),
            coalesce(
                (SELECT CASE WHEN d.reason LIKE 'run_policy:%' THEN 'rolled back by policy'
                             ELSE format('rolled back by %s', d.deployed_by) END
                   FROM ambient.deployments d
                  WHERE d.project = log.project AND d.strategy = 'rollback'
                    AND d.previous_model_id = m.model_id
                  ORDER BY d.deployment_id DESC LIMIT 1),
                CASE WHEN NOT m.live AND EXISTS (SELECT 1 FROM ambient.deployments d
                                                  WHERE d.project = log.project
                                                    AND d.model_id = m.model_id)
                     THEN 'was live' END),
            (SELECT CASE a.state WHEN 'awaiting' THEN 'awaiting approval'
                                 ELSE format('%s by %s', a.state, a.decided_by) END
               FROM ambient.approvals a WHERE a.model_id = m.model_id));
        tags := m.tags;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Where a model came from and where it went, as rows of a graph: each row
-- is a node (what it is, its kind), the edge that links it to the model,
-- and a detail. Upstream: the source relation or query, the training and
-- feature sets, the snapshot (rows, data hash, WAL position at training),
-- the parent model and the search's trials. Downstream: deployments (who,
-- when, why), tags, attached tables, monitor and drift runs, the alerts
-- raised while it was live, and approvals. Only what the caller may read.
CREATE FUNCTION ambient.lineage(model_id bigint)
RETURNS TABLE (node text, kind text, edge text, detail text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record;
    s record;
    r record;
BEGIN
    SELECT x.* INTO m FROM ambient.models x WHERE x.model_id = lineage.model_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model % does not exist', lineage.model_id
            USING ERRCODE = '42704',
                  HINT = 'SELECT model_id, project, version FROM ambient.models lists the models you may read';
    END IF;
    SELECT x.* INTO s FROM ambient.model_snapshots x WHERE x.model_id = lineage.model_id;

    RETURN QUERY SELECT format('model %s', m.model_id), 'model', 'is',
        format('project %s, version %s, %s, %s %s', m.project, m.version, m.algorithm,
               m.primary_metric, round(m.score::numeric, 4));
    RETURN QUERY SELECT CASE s.source_kind WHEN 'query' THEN 'query' ELSE s.source END,
        replace(s.source_kind, '_', ' '), 'trained on',
        CASE s.source_kind WHEN 'query' THEN s.source END;
    RETURN QUERY SELECT f.set_name, 'feature set', 'features from',
        format('definition sha256 %s', m.feature_lineage -> 'feature_set_sha256' ->> f.set_name)
      FROM unnest(m.feature_sets) AS f(set_name);
    RETURN QUERY SELECT format('snapshot of model %s', m.model_id), 'snapshot', 'read',
        format('%s rows (%s unlabelled), data sha256 %s, WAL %s, %s by %s', s.row_count,
               s.unlabeled_rows, s.data_sha256, coalesce(s.wal_lsn::text, 'not recorded'),
               s.created_at, s.created_by);
    RETURN QUERY SELECT format('model %s', p.model_id), 'model', 'retrained from',
        format('version %s, %s, %s %s', p.version, p.algorithm, p.primary_metric, round(p.score::numeric, 4))
      FROM ambient.models p WHERE p.model_id = m.parent_model_id;
    RETURN QUERY SELECT format('trial %s', t.trial), 'trial', 'search tried',
        format('%s, mean %s, %s%s', t.algorithm, round(t.mean_score::numeric, 4), t.status,
               CASE WHEN t.chosen THEN ', chosen' ELSE '' END)
      FROM ambient.trials t WHERE t.model_id = m.model_id ORDER BY t.trial;
    RETURN QUERY SELECT format('deployment %s', d.deployment_id), 'deployment',
        CASE WHEN d.model_id = m.model_id THEN
                  CASE d.strategy WHEN 'rollback' THEN 'rolled back to' ELSE 'deployed' END
             ELSE 'replaced by' END,
        format('%s by %s (%s)%s', d.deployed_at, d.deployed_by, d.strategy,
               coalesce(': ' || d.reason, ''))
      FROM ambient.deployments d
     WHERE d.project = m.project AND (d.model_id = m.model_id OR d.previous_model_id = m.model_id)
     ORDER BY d.deployment_id;
    RETURN QUERY SELECT t.tag, 'tag', 'tagged', format('%s by %s', t.tagged_at, t.tagged_by)
      FROM ambient.tags t WHERE t.model_id = m.model_id ORDER BY t.tag;
    RETURN QUERY SELECT a.relation::text, 'attached table', 'predicts into',
        format('column %s, model id in %s', a.prediction_column, a.model_id_column)
      FROM ambient.attachments a WHERE a.project = m.project;
    RETURN QUERY SELECT format('monitor run %s', r2.run_id), 'monitor run', 'monitored by',
        format('%s: %s labelled rows, %s', r2.run_at, r2.labelled_rows, r2.metrics)
      FROM ambient.monitor_runs r2 WHERE r2.model_id = m.model_id ORDER BY r2.run_id;
    RETURN QUERY SELECT format('drift run %s', d.run_id), 'drift run', 'checked by',
        format('%s: %s rows, drifted share %s%s', min(d.run_at), min(d.rows)::bigint,
               round(min(d.drifted_share)::numeric, 3),
               CASE WHEN bool_or(d.dataset_drifted) THEN ', drifted' ELSE '' END)
      FROM ambient.drift_runs d WHERE d.model_id = m.model_id
     GROUP BY d.run_id ORDER BY d.run_id;
    -- Alerts raised while this model was live.
    FOR r IN SELECT d.deployed_at AS since,
                    lead(d.deployed_at) OVER (ORDER BY d.deployment_id) AS until,
                    d.model_id AS live_model
               FROM ambient.deployments d WHERE d.project = m.project LOOP
        CONTINUE WHEN r.live_model <> m.model_id;
        RETURN QUERY SELECT format('alert %s', a.alert_id), 'alert', 'raised while live',
            format('%s %s: %s', a.raised_at, a.kind, a.message)
          FROM ambient.alerts a
         WHERE a.project = m.project AND a.raised_at >= r.since
           AND (r.until IS NULL OR a.raised_at < r.until)
         ORDER BY a.alert_id;
    END LOOP;
    RETURN QUERY SELECT format('approval of model %s', a.model_id), 'approval', a.state,
        format('requested %s%s', a.requested_at,
               coalesce(format(', %s by %s at %s', a.state, a.decided_by, a.decided_at), '')
               || coalesce(': ' || a.reason, ''))
      FROM ambient.approvals a WHERE a.model_id = m.model_id;
END
$$;

-- From a stored prediction back to the model that made it, then that
-- model's lineage: the row of `tbl` (an attached table) whose primary key
-- is `key` is read with the caller's rights, its model id column names
-- the model.
CREATE FUNCTION ambient.lineage_of_prediction(tbl regclass, key anyelement)
RETURNS TABLE (node text, kind text, edge text, detail text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    key_column name;
    prediction text;
    predicted_by bigint;
    found_any boolean := false;
BEGIN
    SELECT att.attname INTO key_column
      FROM pg_index i
      JOIN pg_attribute att ON att.attrelid = i.indrelid AND att.attnum = i.indkey[0]
     WHERE i.indrelid = tbl AND i.indisprimary AND i.indnatts = 1;
    IF key_column IS NULL THEN
        RAISE EXCEPTION 'table % has no single-column primary key', tbl
            USING ERRCODE = '0A000',
                  HINT = 'read the row''s model id column and call ambient.lineage(model_id)';
    END IF;
    FOR a IN SELECT x.* FROM ambient.attachments x WHERE x.relation = tbl ORDER BY x.project LOOP
        EXECUTE format('SELECT t.%I::text, t.%I FROM %s t WHERE t.%I = $1',
                       a.prediction_column, a.model_id_column, tbl, key_column)
           INTO prediction, predicted_by USING key;
        CONTINUE WHEN predicted_by IS NULL;
        found_any := true;
        RETURN QUERY SELECT format('%s %s = %s', tbl, key_column, key), 'prediction', 'predicted by',
            format('project %s predicted %s with model %s', a.project, prediction, predicted_by);
        RETURN QUERY SELECT * FROM ambient.lineage(predicted_by);
    END LOOP;
    IF NOT found_any THEN
        RAISE EXCEPTION 'no stored prediction in % where % = %', tbl, key_column, key
            USING ERRCODE = '42704',
                  HINT = 'the row must exist and hold a prediction of a project attached to the table that you may read';
    END IF;
END
$$;

-- The audit trail: one row per change of state (train, deploy, rollback,
-- tag, approve, reject, drop, grant, revoke, policy changes and runs,
-- attach, detach, feature-set changes), with who made it, from where, in
-- which transaction and why. It is append-only for every role, the
-- extension owner included (the triggers below fire even under
-- session_replication_role = replica), and hash-chained: each entry's
-- sha256 covers its content and the previous entry's hash, so an entry
-- changed or removed below the API (a superuser with triggers off, or a
-- hand-edited data file) shows up in ambient.verify_audit(). Entries are
-- chained when their transaction commits, in commit order; a rolled-back
-- change leaves no entry.
CREATE TABLE ambient.audit_log (
    id            bigserial PRIMARY KEY,
    -- Its place in the chain (1, 2, 3 ...) and the hashes, set as its
    -- transaction commits; NULL until then.
    position      bigint UNIQUE,
    at            timestamptz NOT NULL DEFAULT pg_catalog.now(),
    xid           xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    -- The role that asked for the change (current_user at the call), the
    -- session's login role, the client's address (NULL over a socket) and
    -- application_name ('pg_cron' for its jobs).
    role          name NOT NULL,
    session_role  name NOT NULL DEFAULT SESSION_USER,
    client_addr   inet DEFAULT pg_catalog.inet_client_addr(),
    application   text DEFAULT pg_catalog.current_setting('application_name'),
    action        text NOT NULL,
    -- What the change is about, by name (kept after a drop) and id.
    project       text,
    project_id    bigint,
    feature_set   text,
    feature_set_id bigint,
    model_id      bigint,
    reason        text,
    details       jsonb NOT NULL DEFAULT '{}',
    -- Whose entry it is: the project's or feature set's owner then, so an
    -- owner still reads the entries of what it dropped. Not hashed: a
    -- rename of the role must not break the chain.
    owner         regrole,
    prev_sha256   text,
    entry_sha256  text
);
CREATE INDEX ON ambient.audit_log (project_id, id);
CREATE INDEX ON ambient.audit_log (model_id);
SELECT pg_catalog.pg_extension_config_dump('ambient.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.audit_log_id_seq', '');
REVOKE ALL ON ambient.audit_log FROM PUBLIC;

-- What an entry's hash covers, in one canonical text: the time as exact
-- epoch seconds (not a text that depends on TimeZone), details as jsonb
-- prints it (keys sorted), and the previous entry's hash.
CREATE FUNCTION ambient.audit_entry_sha256(e ambient.audit_log) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.jsonb_build_array(
           e.position, pg_catalog.extract('epoch', e.at)::pg_catalog.text, e.xid::pg_catalog.text,
           e.role, e.session_role, pg_catalog.host(e.client_addr), e.application, e.action, e.project, e.project_id,
           e.feature_set, e.feature_set_id, e.model_id, e.reason, e.details, e.prev_sha256)::pg_catalog.text, 'UTF8')), 'hex')
$$;

-- No UPDATE, DELETE or TRUNCATE, by anyone. The one update allowed is the
-- chaining of an entry of the current transaction, which touches only its
-- position and hashes, and whose hash is computed here.
CREATE FUNCTION ambient.audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.position IS NULL AND NEW.position IS NOT NULL
       AND OLD.xid = pg_current_xact_id_if_assigned()
       AND (NEW.id, NEW.at, NEW.xid, NEW.role, NEW.session_role, NEW.client_addr, NEW.application, NEW.action,
            NEW.project, NEW.project_id, NEW.feature_set, NEW.feature_set_id, NEW.model_id, NEW.reason, NEW.details,
            NEW.owner)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.at, OLD.xid, OLD.role, OLD.session_role, OLD.client_addr, OLD.application, OLD.action,
            OLD.project, OLD.project_id, OLD.feature_set, OLD.feature_set_id, OLD.model_id, OLD.reason, OLD.details,
            OLD.owner) THEN
        NEW.entry_sha256 := ambient.audit_entry_sha256(NEW);
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ambient.audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = '42501',
              HINT = 'no role may change or remove audit entries; ambient.verify_audit() checks them';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON ambient.audit_log
    FOR EACH ROW EXECUTE FUNCTION ambient.audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON ambient.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION ambient.audit_log_append_only();

-- Committing audit entries take turns on this table's lock. It has no
-- rows (nothing vacuums it), and only the extension owner may lock it.
CREATE TABLE ambient.audit_chain_lock ();
REVOKE ALL ON ambient.audit_chain_lock FROM PUBLIC;

-- Chains an entry as its transaction commits (a deferred constraint
-- trigger runs then, as the extension owner). The lock makes committing
-- entries take turns, held from here to the commit (longer only in a
-- transaction that runs SET CONSTRAINTS ALL IMMEDIATE or PREPARE
-- TRANSACTION after an audited change); the previous entry is read as
-- committed now (ambient.audit_chain_head, under the latest snapshot), so
-- a REPEATABLE READ transaction chains after entries committed since it
-- began. An entry that comes chained (a restore) is kept as it is.
CREATE FUNCTION ambient.chain_audit_entry() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    head record;
BEGIN
    IF NEW.position IS NOT NULL THEN
        RETURN NULL;
    END IF;
    LOCK TABLE ambient.audit_chain_lock IN EXCLUSIVE MODE;
    SELECT * INTO head FROM ambient.audit_chain_head();
    UPDATE ambient.audit_log
       SET position = coalesce(head.position, 0) + 1,
           prev_sha256 = coalesce(head.sha256, repeat('0', 64))
     WHERE id = NEW.id;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER audit_log_chain AFTER INSERT ON ambient.audit_log
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ambient.chain_audit_entry();
-- Only the catalog's own triggers run these.
REVOKE EXECUTE ON FUNCTION ambient.chain_audit_entry(), ambient.audit_log_append_only() FROM PUBLIC;
ALTER TABLE ambient.audit_log ENABLE ALWAYS TRIGGER audit_log_no_update,
                              ENABLE ALWAYS TRIGGER audit_log_no_truncate,
                              ENABLE ALWAYS TRIGGER audit_log_chain;

-- Checks the whole chain: every entry's hash, every link, no gap. Returns
-- the number of chained entries, whether all is well, the first bad
-- position and what is wrong with it, and the newest entry's hash (keep
-- it elsewhere: removing the newest entries leaves a shorter valid chain,
-- which only a kept head shows). Entries of the caller's own open
-- transaction are not chained yet and not counted.
CREATE FUNCTION ambient.verify_audit(OUT entries bigint, OUT valid boolean, OUT first_bad_position bigint,
                                     OUT problem text, OUT head_sha256 text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    e ambient.audit_log;
    previous text := repeat('0', 64);
BEGIN
    entries := 0;
    valid := true;
    FOR e IN SELECT * FROM ambient.audit_log WHERE position IS NOT NULL ORDER BY position LOOP
        entries := entries + 1;
        IF e.position <> entries THEN
            problem := format('entry %s is missing', entries);
        ELSIF e.prev_sha256 IS DISTINCT FROM previous THEN
            problem := format('entry %s does not link to entry %s', e.position, e.position - 1);
        ELSIF e.entry_sha256 IS DISTINCT FROM ambient.audit_entry_sha256(e) THEN
            problem := format('entry %s was changed after it was written', e.position);
        END IF;
        IF problem IS NOT NULL THEN
            valid := false;
            first_bad_position := entries;
            head_sha256 := NULL;
            RETURN;
        END IF;
        previous := e.entry_sha256;
    END LOOP;
    IF EXISTS (SELECT 1 FROM ambient.audit_log
                WHERE position IS NULL AND xid IS DISTINCT FROM pg_current_xact_id_if_assigned()) THEN
        valid := false;
        problem := 'an entry of a committed transaction is not chained';
        RETURN;
    END IF;
    head_sha256 := CASE WHEN entries > 0 THEN previous END;
END
$$;

-- The audit trail of what the current role may read: entries of readable
-- projects and feature sets, and of those its roles owned when the entry
-- was written (dropped ones included).
CREATE VIEW ambient.audit WITH (security_barrier) AS
SELECT a.position,
       a.at,
       a.action,
       a.project,
       a.feature_set,
       a.model_id,
       a.role,
       a.session_role,
       a.client_addr,
       a.application,
       a.reason,
       a.details,
       a.xid,
       a.entry_sha256
  FROM ambient.audit_log a
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles o
                WHERE o.oid = a.owner AND pg_catalog.pg_has_role(o.oid, 'USAGE'))
    OR a.project_id IN (SELECT r.project_id FROM ambient.readable_projects r)
    OR a.feature_set_id IN (SELECT f.id FROM ambient.readable_feature_sets f);
GRANT SELECT ON ambient.audit TO PUBLIC;

-- The audit chain's head as committed now, for the chaining trigger only.
CREATE FUNCTION ambient."audit_chain_head"() RETURNS TABLE (
	"position" bigint,  /* i64 */
	"sha256" TEXT  /* String */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_chain_head_wrapper';
REVOKE EXECUTE ON FUNCTION ambient.audit_chain_head() FROM PUBLIC;

-- Tags, diff and the source guard's release.
CREATE FUNCTION ambient."tag"(
	"model_id" bigint, /* i64 */
	"name" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'tag_wrapper';
CREATE FUNCTION ambient."untag"(
	"model_id" bigint, /* i64 */
	"name" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'untag_wrapper';
CREATE FUNCTION ambient."diff"(
	"model_a" bigint, /* i64 */
	"model_b" bigint /* i64 */
) RETURNS TABLE (
	"aspect" TEXT,  /* String */
	"key" TEXT,  /* String */
	"a" TEXT,  /* Option < String > */
	"b" TEXT  /* Option < String > */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'diff_wrapper';
CREATE FUNCTION ambient."release"(
	"project" TEXT, /* & str */
	"reason" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS bigint[] /* Vec < i64 > */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'release_wrapper';

-- A live model's or a feature set's source cannot be dropped from under it.
CREATE FUNCTION ambient."sources_dropped"(
	"relations" oid[], /* Vec < Option < pg_sys :: Oid > > */
	"names" TEXT[] /* Vec < Option < String > > */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sources_dropped_wrapper';
CREATE FUNCTION ambient.guard_dropped_sources() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ambient.sources_dropped(
        ARRAY(SELECT objid FROM pg_catalog.pg_event_trigger_dropped_objects()
               WHERE object_type IN ('table', 'view', 'materialized view', 'foreign table')
               ORDER BY objid),
        ARRAY(SELECT object_identity FROM pg_catalog.pg_event_trigger_dropped_objects()
               WHERE object_type IN ('table', 'view', 'materialized view', 'foreign table')
               ORDER BY objid));
END $$;
REVOKE EXECUTE ON FUNCTION ambient.sources_dropped(oid[], text[]) FROM PUBLIC;
CREATE EVENT TRIGGER ambient_guard_dropped_sources ON sql_drop
    EXECUTE FUNCTION ambient.guard_dropped_sources();

-- Train again as the author and compare the artifact.
CREATE FUNCTION ambient."reproduce"(
	"model_id" bigint /* i64 */
) RETURNS TABLE (
	"identical" bool,  /* bool */
	"original_sha256" TEXT,  /* String */
	"reproduced_sha256" TEXT,  /* String */
	"data_identical" bool,  /* bool */
	"read_from" TEXT,  /* String */
	"reason" TEXT  /* String */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'reproduce_wrapper';

-- What psql's \dn+, \df+, \dv+ and \dt+ show for the extension: every
-- schema, function, view and table says what it is for. Run after every
-- function exists (a fresh install's last step, and the upgrade's).

COMMENT ON SCHEMA ambient IS 'pg_ambient: train, deploy, predict, monitor and audit models as ordinary SQL';
COMMENT ON SCHEMA ambient_features IS 'pg_ambient: each feature set''s bitemporal history, written only by the extension';
COMMENT ON SCHEMA ambient_training IS 'pg_ambient: point-in-time training sets, as views';
COMMENT ON SCHEMA ambient_snapshots IS 'pg_ambient: copies of training rows (train(..., snapshot => ''copy'')), readable under each project''s read rules';

-- Training, prediction, explanation.
COMMENT ON FUNCTION ambient.train(text, regclass, text, text, text, text, jsonb, text[], double precision, bigint, text, boolean, jsonb, text, jsonb, integer, integer, double precision, text, text) IS
    'Trains a model of a project from a relation, a query or a training set, scores it on held-out rows, stores it with its snapshot, and deploys it if asked (default: if it beats the live model on the same rows)';
COMMENT ON FUNCTION ambient.algorithms() IS 'Every algorithm, the tasks it does and its hyper-parameters with their defaults';
COMMENT ON FUNCTION ambient.leaderboard(text, integer) IS 'The trials of a project''s latest search (or of version N), best first';
COMMENT ON FUNCTION ambient.predict(text, double precision[]) IS 'The live model''s prediction (class index or value) for features in the input contract''s order';
COMMENT ON FUNCTION ambient.predict(bigint, double precision[]) IS 'Model N''s prediction for features in its order';
COMMENT ON FUNCTION ambient.predict(text, record) IS 'The live model''s prediction for a row, whose columns are matched to features by name';
COMMENT ON FUNCTION ambient.predict(text, record, text) IS 'The prediction of the model a key gets (a canary''s challenger for its share of keys)';
COMMENT ON FUNCTION ambient.predict(name, anyelement, record) IS 'The live model''s prediction for an entity, its features looked up from its feature sets as of now (with a row''s own features)';
COMMENT ON FUNCTION ambient.predict_label(text, double precision[]) IS 'The live model''s predicted label for features in the input contract''s order';
COMMENT ON FUNCTION ambient.predict_label(bigint, double precision[]) IS 'Model N''s predicted label for features in its order';
COMMENT ON FUNCTION ambient.predict_label(text, record) IS 'The live model''s predicted label for a row';
COMMENT ON FUNCTION ambient.predict_label(text, record, text) IS 'The predicted label of the model a key gets';
COMMENT ON FUNCTION ambient.predict_label(name, anyelement, record) IS 'The live model''s predicted label for an entity, its features looked up from its feature sets';
COMMENT ON FUNCTION ambient.predict_proba(text, double precision[]) IS 'The live model''s class probabilities, in class order';
COMMENT ON FUNCTION ambient.predict_proba(bigint, double precision[]) IS 'Model N''s class probabilities, in class order';
COMMENT ON FUNCTION ambient.predict_proba(text, record) IS 'The live model''s class probabilities for a row';
COMMENT ON FUNCTION ambient.predict_proba(name, anyelement, record) IS 'The live model''s class probabilities for an entity, its features looked up from its feature sets';
COMMENT ON FUNCTION ambient.route(text, text) IS 'The id of the model a key gets: the live model, or a canary''s challenger for its share of keys';
COMMENT ON FUNCTION ambient.explain(text, double precision[]) IS 'Each feature''s contribution to the live model''s prediction';
COMMENT ON FUNCTION ambient.explain(bigint, double precision[]) IS 'Each feature''s contribution to model N''s prediction';
COMMENT ON FUNCTION ambient.explain(text, record) IS 'Each feature''s contribution to the live model''s prediction for a row';
COMMENT ON FUNCTION ambient.feature_importance(text) IS 'The live model''s feature importance (permutation on its test rows, and the model''s own)';
COMMENT ON FUNCTION ambient.feature_importance(bigint) IS 'Model N''s feature importance';

-- Deployment and rights.
COMMENT ON FUNCTION ambient.deploy(text, bigint, text, boolean, double precision) IS 'Makes model N the live model (with traffic: starts a canary serving that share of keys)';
COMMENT ON FUNCTION ambient.deploy(text, text, text, boolean) IS 'Deploys the model with the best score, the newest, or the one a tag names (''project@tag'')';
COMMENT ON FUNCTION ambient.rollback(text, text, boolean) IS 'Returns to the model live before the current deployment; repeated calls walk further back';
COMMENT ON FUNCTION ambient.drop_model(bigint) IS 'Drops a model that was never deployed, with its snapshot and its copy of rows';
COMMENT ON FUNCTION ambient.drop_project(text, boolean) IS 'Drops a project (with force: its models and history); its audit entries stay';
COMMENT ON FUNCTION ambient."grant"(text, text, text) IS 'Lets a role predict with (''predict'') or also read (''read'') a project or feature set';
COMMENT ON FUNCTION ambient.revoke(text, text, text) IS 'Takes back what ambient.grant gave';

-- Ambient operations.
COMMENT ON FUNCTION ambient.attach(text, regclass, text) IS 'Makes every row written to a table carry the live model''s prediction and its id, in the writing transaction';
COMMENT ON FUNCTION ambient.detach(text, regclass) IS 'Stops predicting into a table';
COMMENT ON FUNCTION ambient.predict_trigger() IS 'The trigger of attached tables: predicts each new row with the table owner''s rights';
COMMENT ON FUNCTION ambient.monitor(text, text, interval) IS 'Live metrics per model over the attached tables'' labelled rows, recorded in ambient.monitor_runs';
COMMENT ON FUNCTION ambient.drift(text, regclass, text, text, interval) IS 'Drift of recent rows against the live model''s training snapshot (PSI, KS, JS), recorded in ambient.drift_runs';
COMMENT ON FUNCTION ambient.set_policy(text, jsonb) IS 'Sets what run_policy watches and does for a project; returns it with every default filled in';
COMMENT ON FUNCTION ambient.run_policy(text) IS 'Monitors, measures drift, decides and acts (alert, retrain, deploy if better, await approval, roll back) under the project''s policy';
COMMENT ON FUNCTION ambient.approve(bigint, text) IS 'Deploys a model a policy retrained and that awaits approval';
COMMENT ON FUNCTION ambient.reject(bigint, text) IS 'Sets aside a model that awaits approval';
COMMENT ON FUNCTION ambient.schedule(text, text) IS 'Runs the project''s policy from pg_cron, as the project''s owner';
COMMENT ON FUNCTION ambient.unschedule(text) IS 'Stops running the project''s policy from pg_cron';
COMMENT ON FUNCTION ambient.scheduled_job(text) IS 'The pg_cron job behind a readable project''s schedule, as pg_cron has it';
COMMENT ON FUNCTION ambient.shadow(text, bigint) IS 'Starts a shadow trial: the model predicts beside the live one on attached tables, without being served';
COMMENT ON FUNCTION ambient.compare(text) IS 'The champion and the challenger of the running trial, scored on the same labelled rows';
COMMENT ON FUNCTION ambient.promote(text, text) IS 'Ends the running trial by making its challenger the live model';
COMMENT ON FUNCTION ambient.end_trial(text, text) IS 'Ends the running trial; the live model serves every key again';
COMMENT ON FUNCTION ambient.check_attached_tables(oid[], oid[], oid[]) IS 'For the DDL guard only: refuses DDL that would break an attached table, a feature set''s source or a live model''s source';
COMMENT ON FUNCTION ambient.attached_objects_dropped(oid[], text[]) IS 'For the DDL guard only: forgets attachments whose table or trigger was dropped';
COMMENT ON FUNCTION ambient.guard_attached_tables() IS 'Event trigger (ddl_command_end): the DDL guard';
COMMENT ON FUNCTION ambient.forget_dropped_attachments() IS 'Event trigger (sql_drop): forgets dropped attachments';
COMMENT ON FUNCTION ambient.sources_dropped(oid[], text[]) IS 'For the source guard only: refuses dropping a relation a live model or a feature set reads';
COMMENT ON FUNCTION ambient.guard_dropped_sources() IS 'Event trigger (sql_drop): the source guard';

-- The feature store.
COMMENT ON FUNCTION ambient.create_feature_set(text, text, text[], text, text[], interval, text) IS 'Makes a feature set over a table, view or query, with bitemporal history';
COMMENT ON FUNCTION ambient.refresh_feature_set(text) IS 'Records what changed in a feature set''s source since the last refresh, read as the set''s owner';
COMMENT ON FUNCTION ambient.drop_feature_set(text) IS 'Drops a feature set and its history (refused while a live model or a training set reads it)';
COMMENT ON FUNCTION ambient.create_training_set(text, text, text[], text, timestamp with time zone) IS 'Makes a point-in-time training set: a spine joined to feature sets as of each row''s event time';
COMMENT ON FUNCTION ambient.drop_training_set(text) IS 'Drops a training set';
COMMENT ON FUNCTION ambient.features_for(text[], anyelement) IS 'The feature values served for an entity now';
COMMENT ON FUNCTION ambient.feature_set_freshness() IS 'Per readable feature set, read now: entities, newest event and ingest times, share older than the TTL';

-- History and audit.
COMMENT ON FUNCTION ambient.log(text) IS 'A project''s models newest first, as git log --oneline --graph: who trained each, why, its marks and tags';
COMMENT ON FUNCTION ambient.diff(bigint, bigint) IS 'What changed between two models: hyper-parameters, features, preprocessing, metrics on the same rows, data, source and code';
COMMENT ON FUNCTION ambient.tag(bigint, text) IS 'Points a tag at a model (moving it from another); ''project@tag'' then names the model in predict and deploy';
COMMENT ON FUNCTION ambient.untag(bigint, text) IS 'Removes a tag from a model';
COMMENT ON FUNCTION ambient.lineage(bigint) IS 'A model''s lineage as (node, kind, edge, detail) rows: source, feature sets, snapshot, parent, trials, deployments, tags, attached tables, runs, alerts, approvals';
COMMENT ON FUNCTION ambient.lineage_of_prediction(regclass, anyelement) IS 'From a stored prediction (an attached table''s row by primary key) to its model and that model''s lineage';
COMMENT ON FUNCTION ambient.reproduce(bigint) IS 'Trains a model again as its author, from its copy of rows or its source, and says whether the artifact is byte-identical and why not';
COMMENT ON FUNCTION ambient.release(text, text) IS 'Accepts that the sources of the project''s live model may change or go: DDL on them is no longer refused for it';
COMMENT ON FUNCTION ambient.verify_audit() IS 'Checks the audit trail''s hash chain: every entry''s hash, every link, no gap; returns the newest entry''s hash to keep elsewhere';
COMMENT ON FUNCTION ambient.audit_entry_sha256(ambient.audit_log) IS 'The sha256 an audit entry''s chain link covers: its content and the previous entry''s hash';
COMMENT ON FUNCTION ambient.audit_log_append_only() IS 'Trigger: refuses UPDATE, DELETE and TRUNCATE of the audit trail, but the chaining of the current transaction''s entries';
COMMENT ON FUNCTION ambient.chain_audit_entry() IS 'Constraint trigger, deferred to commit: chains an audit entry after the newest committed one';
COMMENT ON FUNCTION ambient.audit_chain_head() IS 'For the chaining trigger only: the audit chain''s newest entry as committed now';

-- Tables (the extension owner's alone: roles read the views).
COMMENT ON TABLE ambient.projects IS 'One row per project: task, target, owning role, input contract';
COMMENT ON TABLE ambient.project_grants IS 'Who else may use a project: ''predict'' or ''read''';
COMMENT ON TABLE ambient.snapshots IS 'What each model was trained on: source, row counts, column statistics, data sha256, WAL position, relations read, copy of rows';
COMMENT ON TABLE ambient.model_store IS 'Immutable model rows: algorithm, hyper-parameters, features, preprocessing, metrics, the training request, the artifact and its sha256';
COMMENT ON TABLE ambient.deployment_log IS 'Append-only deployments; a project''s newest row names its live model';
COMMENT ON TABLE ambient.trial_log IS 'Every candidate a search tried for a model';
COMMENT ON TABLE ambient.attachment_list IS 'Tables attached to a project';
COMMENT ON TABLE ambient.monitor_log IS 'Live metrics per monitor run and model';
COMMENT ON TABLE ambient.drift_log IS 'Drift per drift run and column';
COMMENT ON TABLE ambient.policies IS 'Each project''s policy';
COMMENT ON TABLE ambient.policy_log IS 'Every run_policy run, failed ones too';
COMMENT ON TABLE ambient.alert_log IS 'Alerts, each also sent as NOTIFY ambient_alerts';
COMMENT ON TABLE ambient.approval_log IS 'Models waiting for, or given, a person''s decision';
COMMENT ON TABLE ambient.schedule_list IS 'The pg_cron job that runs each project''s policy';
COMMENT ON TABLE ambient.challenge_log IS 'Canary and shadow trials, every event';
COMMENT ON TABLE ambient.shadow_log IS 'A shadow challenger''s predictions while its trial runs';
COMMENT ON TABLE ambient.feature_set_store IS 'Feature sets: source, keys, event time, features and types, TTL, owner, definition hash';
COMMENT ON TABLE ambient.feature_set_grants IS 'Who else may use a feature set';
COMMENT ON TABLE ambient.training_set_store IS 'Training sets: spine, keys, features, as-of time, definition hash';
COMMENT ON TABLE ambient.model_tags IS 'Tags: a name per project pointing at one model';
COMMENT ON TABLE ambient.source_releases IS 'Live models whose sources the source guard no longer keeps (ambient.release)';
COMMENT ON TABLE ambient.audit_chain_lock IS 'No rows: committing audit entries take turns on its lock';
COMMENT ON TABLE ambient.audit_log IS 'Every change of state, append-only for every role and hash-chained (ambient.verify_audit)';

-- Views (what roles read).
COMMENT ON VIEW ambient.live_deployments IS 'Each project''s newest deployment row: its live model';
COMMENT ON VIEW ambient.readable_projects IS 'The projects the current role may read';
COMMENT ON VIEW ambient.models IS 'Models of readable projects, without their bytes: metrics, features, tags, lineage';
COMMENT ON VIEW ambient.deployments IS 'The deployment log of readable projects';
COMMENT ON VIEW ambient.overview IS 'One row per readable project with its owner and live model';
COMMENT ON VIEW ambient.model_snapshots IS 'What each model of a readable project was trained on, and its copy of rows if any';
COMMENT ON VIEW ambient.grants IS 'The grants on the projects the current role owns';
COMMENT ON VIEW ambient.trials IS 'The trials behind readable projects'' models';
COMMENT ON VIEW ambient.attachments IS 'Where readable projects are attached';
COMMENT ON VIEW ambient.monitor_runs IS 'Live metrics of readable projects'' models, per monitor run';
COMMENT ON VIEW ambient.drift_runs IS 'Drift runs of readable projects, a row per run and column';
COMMENT ON VIEW ambient.policy_runs IS 'Policy runs of readable projects';
COMMENT ON VIEW ambient.project_policies IS 'A readable project''s policy and its pg_cron job';
COMMENT ON VIEW ambient.alerts IS 'Alerts of readable projects';
COMMENT ON VIEW ambient.approvals IS 'Approvals of readable projects';
COMMENT ON VIEW ambient.challenges IS 'Canary and shadow trials of readable projects, every event';
COMMENT ON VIEW ambient.shadow_predictions IS 'Shadow challengers'' predictions, for readable projects';
COMMENT ON VIEW ambient.readable_feature_sets IS 'The feature sets the current role may read';
COMMENT ON VIEW ambient.feature_set_users IS 'The projects whose live model reads each feature set';
COMMENT ON VIEW ambient.feature_sets IS 'Readable feature sets';
COMMENT ON VIEW ambient.features IS 'One row per feature of a readable set, with its statistics as of the last refresh';
COMMENT ON VIEW ambient.feature_freshness IS 'How fresh each readable feature set is, read now';
COMMENT ON VIEW ambient.training_sets IS 'The training sets the current role owns';
COMMENT ON VIEW ambient.tags IS 'Tags of readable projects';
COMMENT ON VIEW ambient.audit IS 'The audit trail of what the current role may read, in chain order by position';

-- Reports (ambient.report): projects show their input contract's types,
-- and drift runs keep each column's binned distribution.
CREATE OR REPLACE VIEW ambient.readable_projects WITH (security_barrier) AS
SELECT p.id AS project_id,
       p.name AS project,
       p.task,
       p.target,
       p.owner,
       p.created_at,
       p.created_by,
       p.features,
       p.feature_types
  FROM ambient.projects p
 WHERE pg_catalog.pg_has_role(p.owner, 'USAGE')
    OR EXISTS (SELECT 1 FROM ambient.project_grants g
                WHERE g.project_id = p.id AND g.privilege = 'read'
                  AND pg_catalog.pg_has_role(g.grantee, 'USAGE'));

CREATE OR REPLACE VIEW ambient.drift_runs WITH (security_barrier) AS
SELECT d.id AS run_id,
       p.project,
       d.model_id,
       m.version,
       d.run_at,
       d.run_by,
       d.source,
       d.dataset_drifted,
       d.drifted_share,
       c.feature,
       c.kind,
       c.rows,
       c.psi,
       c.ks,
       c.ks_p_value,
       c.js,
       c.status,
       c.distribution
  FROM ambient.drift_log d
  JOIN ambient.readable_projects p ON p.project_id = d.project_id
  LEFT JOIN ambient.model_store m ON m.id = d.model_id
 CROSS JOIN LATERAL pg_catalog.jsonb_to_recordset(d.columns)
       AS c(feature text, kind text, rows bigint, psi double precision, ks double precision,
            ks_p_value double precision, js double precision, status text, distribution jsonb);

CREATE FUNCTION ambient."report"() RETURNS TEXT /* String */
STRICT STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'report_overview_wrapper';
CREATE FUNCTION ambient."report"(
	"project" TEXT, /* & str */
	"since" interval DEFAULT '30 days' /* Interval */
) RETURNS TEXT /* String */
STRICT STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'report_project_wrapper';
CREATE FUNCTION ambient."report_pages"(
	"since" interval DEFAULT '30 days' /* Interval */
) RETURNS TABLE (
	"path" TEXT,  /* String */
	"project" TEXT,  /* Option < String > */
	"html" TEXT  /* String */
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'report_pages_wrapper';

-- What ambient.report draws for one project, as one jsonb document, read
-- through the views with the caller's rights: NULL when the caller may not
-- read the project. `since` bounds the time series and the timeline.
CREATE FUNCTION ambient.report_data(project text, since interval DEFAULT '30 days')
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
WITH p AS (SELECT * FROM ambient.readable_projects r WHERE r.project = $1),
     o AS (SELECT * FROM ambient.overview v WHERE v.project = $1),
     start AS (SELECT now() - $2 AS at),
     live_deployment AS (SELECT d.* FROM ambient.deployments d WHERE d.project = $1
                          ORDER BY d.deployment_id DESC LIMIT 1),
     live_model AS (SELECT m.* FROM ambient.models m JOIN o ON m.model_id = o.live_model_id),
     latest_drift AS (SELECT d.run_id FROM ambient.drift_runs d WHERE d.project = $1
                       ORDER BY d.run_id DESC LIMIT 1),
     -- The newest 400 drift runs (20,000 feature points) and 1,000 monitor
     -- runs of the period at most, the newest 500 versions and 500 events
     -- of each kind, so a page stays small whatever the logs keep.
     -- Whole runs only: as many as 20,000 points allow at the latest
     -- run's number of features.
     drift_ids AS (SELECT DISTINCT d.run_id FROM ambient.drift_runs d
                    WHERE d.project = $1 AND d.run_at >= (SELECT at FROM start)
                    ORDER BY d.run_id DESC
                    LIMIT (SELECT LEAST(400, 20000 / GREATEST(count(*), 1)) FROM ambient.drift_runs l
                            WHERE l.run_id = (SELECT run_id FROM latest_drift))),
     monitor_ids AS (SELECT r.run_id FROM ambient.monitor_runs r
                      WHERE r.project = $1 AND r.run_at >= (SELECT at FROM start)
                      ORDER BY r.run_id DESC LIMIT 1000)
SELECT jsonb_build_object(
  'project', p.project, 'task', p.task, 'target', p.target, 'owner', p.owner::text,
  'features', to_jsonb(p.features), 'feature_types', to_jsonb(p.feature_types),
  'created_at', p.created_at, 'generated_at', now(), 'since', (SELECT at FROM start),
  'live', (SELECT jsonb_build_object(
             'model_id', o.live_model_id, 'version', o.live_version, 'algorithm', o.algorithm,
             'metric', o.primary_metric, 'score', o.score, 'deployed_at', o.deployed_at,
             'deployed_by', o.deployed_by, 'strategy', d.strategy, 'reason', d.reason,
             'train_rows', m.train_rows, 'test_rows', m.test_rows, 'trained_at', m.trained_at,
             'trained_by', m.trained_by, 'tags', to_jsonb(m.tags),
             'feature_sets', to_jsonb(m.feature_sets), 'diagnostics', m.diagnostics,
             'source', (SELECT s.source FROM ambient.model_snapshots s WHERE s.model_id = o.live_model_id))
             FROM o JOIN live_model m ON true LEFT JOIN live_deployment d ON true),
  'versions', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                 'model_id', m.model_id, 'version', m.version, 'algorithm', m.algorithm,
                 'metric', m.primary_metric, 'score', m.score, 'trained_at', m.trained_at,
                 'trained_by', m.trained_by, 'parent', m.parent_model_id, 'live', m.live,
                 'tags', to_jsonb(m.tags),
                 'deployed', m.model_id IN (SELECT d.model_id FROM ambient.deployments d WHERE d.project = $1))
                 ORDER BY m.version), '[]')
                 FROM (SELECT * FROM ambient.models v WHERE v.project = $1
                        ORDER BY v.version DESC LIMIT 500) m),
  'deployments', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                    'at', d.deployed_at, 'by', d.deployed_by, 'version', d.version,
                    'strategy', d.strategy, 'reason', d.reason) ORDER BY d.deployment_id), '[]')
                    FROM (SELECT * FROM ambient.deployments x WHERE x.project = $1
                             AND x.deployed_at >= (SELECT at FROM start)
                           ORDER BY x.deployment_id DESC LIMIT 500) d),
  'challenges', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                   'at', c.at, 'by', c.by, 'version', c.version, 'mode', c.mode,
                   'traffic', c.traffic, 'event', c.event, 'reason', c.reason) ORDER BY c.event_id), '[]')
                   FROM (SELECT * FROM ambient.challenges x WHERE x.project = $1
                            AND x.at >= (SELECT at FROM start)
                          ORDER BY x.event_id DESC LIMIT 500) c),
  'approvals', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                  'model_id', a.model_id, 'version', a.version, 'score', a.score, 'state', a.state,
                  'requested_at', a.requested_at, 'decided_at', a.decided_at,
                  'decided_by', a.decided_by, 'reason', a.reason) ORDER BY a.requested_at), '[]')
                  FROM (SELECT * FROM ambient.approvals x WHERE x.project = $1
                           AND (x.state = 'awaiting' OR x.requested_at >= (SELECT at FROM start)
                                OR x.decided_at >= (SELECT at FROM start))
                         ORDER BY x.requested_at DESC LIMIT 500) a),
  'policy_runs', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                    'at', r.started_at, 'by', r.run_by, 'status', r.status, 'action', r.action,
                    'reason', r.reason) ORDER BY r.run_id), '[]')
                    FROM (SELECT * FROM ambient.policy_runs x WHERE x.project = $1
                             AND x.status <> 'nothing to do' AND x.started_at >= (SELECT at FROM start)
                           ORDER BY x.run_id DESC LIMIT 500) r),
  'quiet_policy_runs', (SELECT count(*) FROM ambient.policy_runs r WHERE r.project = $1
                         AND r.status = 'nothing to do' AND r.started_at >= (SELECT at FROM start)),
  'alerts', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'at', a.raised_at, 'kind', a.kind, 'message', a.message,
               'open', a.raised_at > COALESCE((SELECT d.deployed_at FROM live_deployment d), '-infinity'))
               ORDER BY a.alert_id), '[]')
               FROM (SELECT * FROM ambient.alerts x WHERE x.project = $1
                        AND x.raised_at >= (SELECT at FROM start)
                      ORDER BY x.alert_id DESC LIMIT 500) a),
  'policy', (SELECT jsonb_build_object('policy', pp.policy, 'schedule', pp.schedule, 'active', pp.active,
                                       'cron_timezone', current_setting('cron.timezone', true))
               FROM ambient.project_policies pp WHERE pp.project = $1),
  'monitor', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                'at', r.run_at, 'version', r.version, 'metrics', r.metrics)
                ORDER BY r.run_id), '[]')
                FROM ambient.monitor_runs r WHERE r.project = $1 AND r.run_id IN (SELECT run_id FROM monitor_ids)),
  'drift', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
              'at', d.run_at, 'feature', d.feature, 'psi', d.psi, 'ks_p_value', d.ks_p_value,
              'js', d.js) ORDER BY d.run_id, d.feature), '[]')
              FROM ambient.drift_runs d WHERE d.project = $1 AND d.run_id IN (SELECT run_id FROM drift_ids)),
  'latest_drift', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                     'at', d.run_at, 'feature', d.feature, 'rows', d.rows,
                     'psi', d.psi, 'js', d.js, 'status', d.status,
                     'dataset_drifted', d.dataset_drifted, 'drifted_share', d.drifted_share,
                     'distribution', d.distribution) ORDER BY d.feature), '[]')
                     FROM ambient.drift_runs d WHERE d.run_id = (SELECT l.run_id FROM latest_drift l)),
  'importance', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                   'feature', i.feature, 'method', i.method, 'importance', i.importance)), '[]')
                   FROM live_model m CROSS JOIN LATERAL ambient.feature_importance(m.model_id) i),
  'leaderboard', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                    'rank', l.rank, 'trial', l.trial, 'algorithm', l.algorithm,
                    'hyperparams', l.hyperparams, 'mean_score', l.mean_score,
                    'std_score', l.std_score, 'seconds', l.seconds, 'status', l.status,
                    'chosen', l.chosen) ORDER BY l.rank, l.trial), '[]')
                    FROM (SELECT * FROM ambient.leaderboard($1) x ORDER BY x.rank, x.trial LIMIT 200) l),
  'leaderboard_version', (SELECT max(t.version) FROM ambient.trials t WHERE t.project = $1),
  -- Freshness reads every readable set's history: only for a live model
  -- that reads feature sets (an InitPlan in a CASE runs only if reached).
  'feature_sets', CASE WHEN (SELECT pg_catalog.cardinality(m.feature_sets) FROM live_model m) > 0
                  THEN (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                     'feature_set', f.feature_set, 'ttl', f.ttl::text, 'entities', f.entities,
                     'newest_event_time', f.newest_event_time, 'newest_ingested_at', f.newest_ingested_at,
                     'stale_share', f.stale_share) ORDER BY f.feature_set), '[]')
                     FROM ambient.feature_freshness f
                    WHERE f.feature_set = ANY (SELECT unnest(m.feature_sets) FROM live_model m))
                  ELSE '[]' END
)
FROM p
$$;

-- What the overview (ambient.report()) draws: one entry per project the
-- caller may read.
CREATE FUNCTION ambient.report_overview_data(since interval DEFAULT '30 days')
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT jsonb_build_object(
  'generated_at', now(), 'since', now() - $1,
  'cron_timezone', current_setting('cron.timezone', true),
  'projects', COALESCE(jsonb_agg(jsonb_build_object(
    'project', o.project, 'id', (SELECT r.project_id FROM ambient.readable_projects r WHERE r.project = o.project),
    'task', o.task, 'owner', o.owner::text, 'version', o.live_version,
    'algorithm', o.algorithm, 'metric', o.primary_metric, 'score', o.score, 'models', o.models,
    'live_metric', (SELECT COALESCE(jsonb_agg(jsonb_build_object('metrics', r.metrics)
                                              ORDER BY r.run_id), '[]')
                      FROM (SELECT * FROM ambient.monitor_runs x
                             WHERE x.project = o.project AND x.model_id = o.live_model_id
                               AND x.run_at >= now() - $1
                             ORDER BY x.run_id DESC LIMIT 100) r),
    'drift', (SELECT jsonb_build_object('at', d.run_at, 'dataset_drifted', d.dataset_drifted,
                                        'drifted_share', d.drifted_share)
                FROM ambient.drift_runs d WHERE d.project = o.project
               ORDER BY d.run_id DESC LIMIT 1),
    'open_alerts', (SELECT count(*) FROM ambient.alerts a WHERE a.project = o.project
                     AND a.raised_at > COALESCE(o.deployed_at, '-infinity')),
    'pending_approvals', (SELECT count(*) FROM ambient.approvals a
                           WHERE a.project = o.project AND a.state = 'awaiting'),
    'schedule', (SELECT jsonb_build_object('schedule', pp.schedule, 'active', pp.active)
                   FROM ambient.project_policies pp WHERE pp.project = o.project))
    ORDER BY o.project), '[]'))
  FROM ambient.overview o
$$;

COMMENT ON FUNCTION ambient.report(text, interval) IS 'One self-contained HTML page about a project: live model, versions, deployments, live accuracy, drift, test-row quality, explanations, the search';
COMMENT ON FUNCTION ambient.report() IS 'An HTML overview of every project the caller may read, linking to each project''s page';
COMMENT ON FUNCTION ambient.report_pages(interval) IS 'The overview (index.html) and every readable project''s page, with the file names the overview links to';
COMMENT ON FUNCTION ambient.report_data(text, interval) IS 'What ambient.report draws for a project, as jsonb, read with the caller''s rights';
COMMENT ON FUNCTION ambient.report_overview_data(interval) IS 'What the overview (ambient.report()) draws, as jsonb, read with the caller''s rights';
