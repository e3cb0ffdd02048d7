-- pg_ambient 0.1.0 -> 0.2.0. Each change says why; a fresh 0.2.0 install
-- and this script give the same catalog (tests/upgrade checks it).
\echo Use "ALTER EXTENSION pg_ambient UPDATE" to load this file. \quit

-- The views change: they filter by what the caller may read. They read
-- projects.owner, which changes type below, so they go first and are made
-- again at the end.
DROP VIEW ambient.overview, ambient.deployments, ambient.models;

-- Owners become roles (regrole) instead of names: ownership is decided in
-- Rust from role oids, and a dump restores the owner by name. A project
-- whose owning role no longer exists goes to the bootstrap superuser (oid
-- 10), so only superusers may change it, as before.
ALTER TABLE ambient.projects
    ALTER COLUMN owner TYPE regrole
    USING COALESCE(pg_catalog.to_regrole(pg_catalog.quote_ident(owner::pg_catalog.text)),
                   10::pg_catalog.oid::pg_catalog.regrole);

-- Each project gets an input contract: the features of its live model (or
-- of its newest model, if none is live), in order. A deploy can no longer
-- silently change what a position in predict's array means.
ALTER TABLE ambient.projects
    ADD COLUMN features text[] NOT NULL DEFAULT '{}',
    ADD COLUMN feature_types text[] NOT NULL DEFAULT '{}';
UPDATE ambient.projects p
   SET features = m.features, feature_types = m.feature_types
  FROM ambient.model_store m
 WHERE m.id = COALESCE(
         (SELECT d.model_id FROM ambient.deployment_log d
           WHERE d.project_id = p.id ORDER BY d.id DESC LIMIT 1),
         (SELECT n.id FROM ambient.model_store n
           WHERE n.project_id = p.id ORDER BY n.version DESC LIMIT 1));
ALTER TABLE ambient.projects ALTER COLUMN features DROP DEFAULT,
                             ALTER COLUMN feature_types DROP DEFAULT;

-- Who else may use a project: 'predict' lets a role predict with it, 'read'
-- also lets it see the project's models, snapshots and history.
CREATE TABLE ambient.project_grants (
    project_id  bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    grantee     regrole NOT NULL,
    privilege   text NOT NULL CHECK (privilege IN ('predict', 'read')),
    granted_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    granted_by  name NOT NULL,
    PRIMARY KEY (project_id, grantee, privilege)
);

SELECT pg_catalog.pg_extension_config_dump('ambient.project_grants', '');

-- Each model says what preprocessing does to its input columns. 0.1.0's
-- models take their numbers as they are, and a NULL is an error.
ALTER TABLE ambient.model_store ADD COLUMN preprocessing jsonb;
UPDATE ambient.model_store m
   SET preprocessing = (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                 'column', f, 'kind', 'numeric', 'impute', 'error', 'scale', NULL)
                                 ORDER BY o)
                          FROM pg_catalog.unnest(m.features) WITH ORDINALITY AS u (f, o));
ALTER TABLE ambient.model_store ALTER COLUMN preprocessing SET NOT NULL;
ALTER TABLE ambient.model_store ADD COLUMN importance jsonb;
ALTER TABLE ambient.model_store ADD COLUMN request jsonb;

-- Every candidate a search tried for a model: its hyper-parameters, its
-- score on each cross-validation fold, their mean and spread, how long it
-- took, and whether it won.
CREATE TABLE ambient.trial_log (
    model_id     bigint NOT NULL REFERENCES ambient.model_store (id) ON DELETE CASCADE,
    trial        integer NOT NULL,
    algorithm    text NOT NULL,
    hyperparams  jsonb NOT NULL,
    fold_scores  double precision[] NOT NULL,
    -- NULL when the trial did not finish (failed, or skipped for the budget).
    mean_score   double precision,
    std_score    double precision,
    seconds      double precision NOT NULL,
    status       text NOT NULL,
    chosen       boolean NOT NULL,
    PRIMARY KEY (model_id, trial)
);

SELECT pg_catalog.pg_extension_config_dump('ambient.trial_log', '');

-- train, deploy and rollback take new_contract: a model with other features
-- than the contract goes live only when the caller says so. train's
-- algorithm defaults to NULL: the task's default algorithm.
DROP FUNCTION ambient."train"(text, regclass, text, text, text, text, jsonb, text[], double precision, bigint, text);
DROP FUNCTION ambient."deploy"(text, bigint, text);
DROP FUNCTION ambient."deploy"(text, text, text);
DROP FUNCTION ambient."rollback"(text, text);
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
	"budget_seconds" double precision DEFAULT NULL /* Option < f64 > */
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
CREATE FUNCTION ambient."deploy"(
	"project" TEXT,
	"model_id" bigint,
	"reason" TEXT DEFAULT NULL,
	"new_contract" bool DEFAULT false,
	"traffic" double precision DEFAULT NULL
) RETURNS bigint
VOLATILE PARALLEL UNSAFE 
LANGUAGE c
AS 'MODULE_PATHNAME', 'deploy_model_wrapper';
CREATE FUNCTION ambient."deploy"(
	"project" TEXT, /* & str */
	"strategy" TEXT, /* & str */
	"reason" TEXT DEFAULT NULL, /* Option < & str > */
	"new_contract" bool DEFAULT false /* bool */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'deploy_strategy_wrapper';
CREATE FUNCTION ambient."rollback"(
	"project" TEXT, /* & str */
	"reason" TEXT DEFAULT NULL, /* Option < & str > */
	"new_contract" bool DEFAULT false /* bool */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rollback_wrapper';

-- ambient.grant and ambient.revoke write the table above.
CREATE FUNCTION ambient."grant"(
	"project" TEXT, /* & str */
	"role" TEXT, /* & str */
	"privilege" TEXT DEFAULT 'predict' /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'grant_project_wrapper';
CREATE FUNCTION ambient."revoke"(
	"project" TEXT, /* & str */
	"role" TEXT, /* & str */
	"privilege" TEXT DEFAULT 'predict' /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'revoke_project_wrapper';

-- Nobody but the extension owner reads the tables: models hold training
-- values (tree thresholds), snapshots hold query texts and column
-- statistics. Roles read the views below, which show only what they may.
REVOKE ALL ON ambient.projects, ambient.snapshots, ambient.model_store, ambient.deployment_log,
              ambient.project_grants, ambient.trial_log FROM PUBLIC;

-- The live model of each project: its newest deployment row. Everything
-- that asks what is live reads this view, so the rule is written once.
CREATE VIEW ambient.live_deployments AS
SELECT p.id AS project_id,
       d.id AS deployment_id,
       d.model_id,
       d.parent_id,
       d.deployed_at,
       d.deployed_by
  FROM ambient.projects p
 CROSS JOIN LATERAL (
        SELECT * FROM ambient.deployment_log d
         WHERE d.project_id = p.id
         ORDER BY d.id DESC LIMIT 1) d;

-- The projects the current role may read: it has the privileges of the
-- owning role, or of a role granted 'read'. Every view below starts from
-- this one, so the rule is written once. security_barrier keeps a caller's
-- own functions in a WHERE clause from seeing rows before this filter.
CREATE VIEW ambient.readable_projects WITH (security_barrier) AS
SELECT p.id AS project_id,
       p.name AS project,
       p.task,
       p.target,
       p.owner,
       p.created_at,
       p.created_by,
       p.features
  FROM ambient.projects p
 WHERE pg_catalog.pg_has_role(p.owner, 'USAGE')
    OR EXISTS (SELECT 1 FROM ambient.project_grants g
                WHERE g.project_id = p.id AND g.privilege = 'read'
                  AND pg_catalog.pg_has_role(g.grantee, 'USAGE'));

CREATE VIEW ambient.models WITH (security_barrier) AS
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
       pg_catalog.octet_length(m.artifact) AS artifact_bytes
  FROM ambient.model_store m
  JOIN ambient.readable_projects p ON p.project_id = m.project_id
  LEFT JOIN ambient.live_deployments live ON live.project_id = m.project_id;

CREATE VIEW ambient.deployments WITH (security_barrier) AS
SELECT d.id AS deployment_id,
       p.project,
       d.model_id,
       m.version,
       m.algorithm,
       d.previous_model_id,
       d.strategy,
       d.reason,
       d.deployed_at,
       d.deployed_by
  FROM ambient.deployment_log d
  JOIN ambient.readable_projects p ON p.project_id = d.project_id
  JOIN ambient.model_store m ON m.id = d.model_id;

CREATE VIEW ambient.overview WITH (security_barrier) AS
SELECT p.project,
       p.task,
       p.target,
       p.owner,
       live.model_id AS live_model_id,
       m.version AS live_version,
       m.algorithm,
       m.primary_metric,
       m.score,
       live.deployed_at,
       live.deployed_by,
       (SELECT pg_catalog.count(*) FROM ambient.model_store c WHERE c.project_id = p.project_id) AS models,
       p.features
  FROM ambient.readable_projects p
  LEFT JOIN ambient.live_deployments live ON live.project_id = p.project_id
  LEFT JOIN ambient.model_store m ON m.id = live.model_id;

-- What each model of a readable project was trained on: the source (table
-- or full query text), row counts, per-column statistics and the data hash.
CREATE VIEW ambient.model_snapshots WITH (security_barrier) AS
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
       s.created_by
  FROM ambient.model_store m
  JOIN ambient.readable_projects p ON p.project_id = m.project_id
  JOIN ambient.snapshots s ON s.id = m.snapshot_id;

-- Who may use the projects the current role owns.
CREATE VIEW ambient.grants WITH (security_barrier) AS
SELECT p.name AS project,
       g.grantee,
       g.privilege,
       g.granted_at,
       g.granted_by
  FROM ambient.project_grants g
  JOIN ambient.projects p ON p.id = g.project_id
 WHERE pg_catalog.pg_has_role(p.owner, 'USAGE');

-- Every algorithm, its tasks and hyper-parameters.
CREATE FUNCTION ambient."algorithms"() RETURNS TABLE (
	"algorithm" TEXT,  /* String */
	"task" TEXT,  /* String */
	"is_default" bool,  /* bool */
	"parameter" TEXT,  /* Option < String > */
	"type" TEXT,  /* Option < String > */
	"range" TEXT,  /* Option < String > */
	"default" jsonb,  /* Option < JsonB > */
	"description" TEXT  /* String */
)
STABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'algorithms_wrapper';

-- Why a model predicts what it does.
CREATE FUNCTION ambient.explain(project text, features float8[])
    RETURNS TABLE (feature text, contribution float8, explains text)
    STRICT STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'explain_array_wrapper';
CREATE FUNCTION ambient.explain(model_id bigint, features float8[])
    RETURNS TABLE (feature text, contribution float8, explains text)
    STRICT STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'explain_pinned_wrapper';
CREATE FUNCTION ambient.explain(project text, "row" record)
    RETURNS TABLE (feature text, contribution float8, explains text)
    STRICT STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'explain_row_wrapper';
CREATE FUNCTION ambient."feature_importance"(
	"project" TEXT /* & str */
) RETURNS TABLE (
	"feature" TEXT,  /* String */
	"method" TEXT,  /* String */
	"importance" double precision  /* f64 */
)
STRICT STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'feature_importance_live_wrapper';
CREATE FUNCTION ambient."feature_importance"(
	"model_id" bigint /* i64 */
) RETURNS TABLE (
	"feature" TEXT,  /* String */
	"method" TEXT,  /* String */
	"importance" double precision  /* f64 */
)
STRICT STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'feature_importance_pinned_wrapper';

-- Every trial of the searches behind readable projects' models.
CREATE VIEW ambient.trials WITH (security_barrier) AS
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
       t.chosen
  FROM ambient.trial_log t
  JOIN ambient.model_store m ON m.id = t.model_id
  JOIN ambient.readable_projects p ON p.project_id = m.project_id;

-- A search's trials, best mean first: the project's latest search, or the
-- one behind model version `version`.
CREATE FUNCTION ambient.leaderboard(project text, version integer DEFAULT NULL)
RETURNS TABLE (rank bigint, trial integer, algorithm text, hyperparams jsonb,
               mean_score double precision, std_score double precision,
               fold_scores double precision[], seconds double precision,
               status text, chosen boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.rank() OVER (ORDER BY t.mean_score DESC NULLS LAST),
           t.trial, t.algorithm, t.hyperparams, t.mean_score, t.std_score,
           t.fold_scores, t.seconds, t.status, t.chosen
      FROM ambient.trials t
     WHERE t.project OPERATOR(pg_catalog.=) $1
       AND t.version OPERATOR(pg_catalog.=) COALESCE($2,
             (SELECT pg_catalog.max(u.version) FROM ambient.trials u
               WHERE u.project OPERATOR(pg_catalog.=) $1))
     ORDER BY 1, t.trial
$$;

GRANT USAGE ON SCHEMA ambient TO PUBLIC;
GRANT SELECT ON ambient.readable_projects, ambient.models, ambient.deployments, ambient.overview,
                ambient.model_snapshots, ambient.grants, ambient.trials TO PUBLIC;

-- predict's COST is measured (src/api/predict.rs says how), so the planner
-- evaluates it after cheaper filters.
ALTER FUNCTION ambient.predict(text, float8[]) COST 20;
ALTER FUNCTION ambient.predict(bigint, float8[]) COST 20;
ALTER FUNCTION ambient.predict(text, record) COST 40;
ALTER FUNCTION ambient.predict_label(text, float8[]) COST 20;
ALTER FUNCTION ambient.predict_label(bigint, float8[]) COST 20;
ALTER FUNCTION ambient.predict_label(text, record) COST 40;
ALTER FUNCTION ambient.predict_proba(text, float8[]) COST 20;
ALTER FUNCTION ambient.predict_proba(bigint, float8[]) COST 20;
ALTER FUNCTION ambient.predict_proba(text, record) COST 40;

-- Ambient operations: tables attached to a project get a prediction in
-- each new row, and the labels written to them later feed live metrics.
-- Tables attached to a project: a trigger writes the live model's
-- prediction, and the id of the model that made it, into each new row.
CREATE TABLE ambient.attachment_list (
    id                 bigserial PRIMARY KEY,
    project_id         bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    relation           regclass NOT NULL,
    prediction_column  text NOT NULL,
    model_id_column    text NOT NULL,
    -- The project's target column in this table, if it has one: its values
    -- (labels that arrive later) are what live metrics compare with.
    label_column       text,
    trigger_name       text NOT NULL,
    attached_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    attached_by        name NOT NULL,
    UNIQUE (project_id, relation)
);

-- Labels as they arrive in attached tables, written by the trigger in the
-- labelling transaction: what to add to a model's live counts, and what to
-- take back when a label or prediction that was counted changes. monitor()
-- folds the rows into live_counts and deletes them, so no row is counted
-- twice and no attached table is scanned again. The trigger writes a row
-- per labelled row, so the table has no foreign key or secondary index to
-- maintain (drop_project deletes a project's rows itself); the counts are
-- sums, so the order rows are folded in does not matter.
CREATE TABLE ambient.outcome_log (
    id                  bigserial PRIMARY KEY,
    project_id          bigint NOT NULL,
    retract_model_id    bigint,
    retract_prediction  text,
    retract_label       text,
    add_model_id        bigint,
    add_prediction      text,
    add_label           text,
    logged_at           timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Each model's live counts so far: for a classifier, labelled rows per
-- (predicted, actual) class; for a regressor, the sums its metrics need.
CREATE TABLE ambient.live_counts (
    project_id  bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    model_id    bigint NOT NULL,
    counts      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (project_id, model_id)
);

-- One row per monitor() run and model: live metrics over the labelled rows,
-- so accuracy can be followed over time.
CREATE TABLE ambient.monitor_log (
    id             bigserial PRIMARY KEY,
    project_id     bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    model_id       bigint NOT NULL,
    run_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    run_by         name NOT NULL,
    -- 'all labelled rows', or the time column and window a run looked at.
    scope          text NOT NULL,
    labelled_rows  bigint NOT NULL,
    metrics        jsonb NOT NULL
);
CREATE INDEX ON ambient.monitor_log (project_id, id);

SELECT pg_catalog.pg_extension_config_dump('ambient.attachment_list', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.attachment_list_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.outcome_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.outcome_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.live_counts', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.monitor_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.monitor_log_id_seq', '');
REVOKE ALL ON ambient.attachment_list, ambient.outcome_log, ambient.live_counts, ambient.monitor_log
    FROM PUBLIC;

-- Where readable projects are attached.
CREATE VIEW ambient.attachments WITH (security_barrier) AS
SELECT p.project,
       a.relation,
       a.prediction_column,
       a.model_id_column,
       a.label_column,
       a.trigger_name,
       a.attached_at,
       a.attached_by
  FROM ambient.attachment_list a
  JOIN ambient.readable_projects p ON p.project_id = a.project_id;

-- Live metrics of readable projects' models, one row per monitor() run and
-- model.
CREATE VIEW ambient.monitor_runs WITH (security_barrier) AS
SELECT r.id AS run_id,
       p.project,
       r.model_id,
       m.version,
       r.run_at,
       r.run_by,
       r.scope,
       r.labelled_rows,
       r.metrics
  FROM ambient.monitor_log r
  JOIN ambient.readable_projects p ON p.project_id = r.project_id
  LEFT JOIN ambient.model_store m ON m.id = r.model_id;

GRANT SELECT ON ambient.attachments, ambient.monitor_runs TO PUBLIC;

-- Drift, policies, alerts, approvals and schedules.

-- Each drift() run: whose snapshot was the reference, what recent rows
-- were compared, and per column the measures and the verdict.
CREATE TABLE ambient.drift_log (
    id               bigserial PRIMARY KEY,
    project_id       bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    model_id         bigint NOT NULL,
    run_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    run_by           name NOT NULL,
    -- The attached tables, a relation or the full query text, and the window.
    source           text NOT NULL,
    rows             bigint NOT NULL,
    drifted_share    double precision NOT NULL,
    dataset_drifted  boolean NOT NULL,
    -- Per column: feature, kind, rows, psi, ks, ks_p_value, js, status.
    columns          jsonb NOT NULL
);
CREATE INDEX ON ambient.drift_log (project_id, id);

-- What run_policy watches and does for a project (every field, defaults
-- filled in).
CREATE TABLE ambient.policies (
    project_id  bigint PRIMARY KEY REFERENCES ambient.projects (id) ON DELETE CASCADE,
    policy      jsonb NOT NULL,
    set_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by      name NOT NULL
);

-- Every run_policy run, including one that failed: what it saw, what it
-- decided and why, and what it did.
CREATE TABLE ambient.policy_log (
    id           bigserial PRIMARY KEY,
    project_id   bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    run_by       name NOT NULL,
    status       text NOT NULL CHECK (status IN ('nothing to do', 'acted', 'failed')),
    action       text,
    reason       text NOT NULL,
    -- The model a retrain made, if any.
    model_id     bigint,
    details      jsonb NOT NULL
);
CREATE INDEX ON ambient.policy_log (project_id, id);

-- Alerts: each is also sent as NOTIFY ambient_alerts when its transaction
-- commits.
CREATE TABLE ambient.alert_log (
    id          bigserial PRIMARY KEY,
    project_id  bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    raised_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    kind        text NOT NULL,
    message     text NOT NULL,
    details     jsonb NOT NULL
);
CREATE INDEX ON ambient.alert_log (project_id, id);

-- Models a policy trained that wait for a person: approve() deploys one,
-- reject() sets it aside; both are kept here with who and why.
CREATE TABLE ambient.approval_log (
    model_id      bigint PRIMARY KEY REFERENCES ambient.model_store (id) ON DELETE CASCADE,
    project_id    bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    requested_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    state         text NOT NULL CHECK (state IN ('awaiting', 'approved', 'rejected')),
    decided_at    timestamptz,
    decided_by    name,
    reason        text
);

-- The pg_cron job that runs a project's policy.
CREATE TABLE ambient.schedule_list (
    project_id    bigint PRIMARY KEY REFERENCES ambient.projects (id) ON DELETE CASCADE,
    job_id        bigint NOT NULL,
    cron          text NOT NULL,
    scheduled_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    scheduled_by  name NOT NULL
);

SELECT pg_catalog.pg_extension_config_dump('ambient.drift_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.drift_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.policies', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.policy_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.policy_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.alert_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.alert_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.approval_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.schedule_list', '');
REVOKE ALL ON ambient.drift_log, ambient.policies, ambient.policy_log, ambient.alert_log,
              ambient.approval_log, ambient.schedule_list
    FROM PUBLIC;

-- Drift runs of readable projects, a row per run and column.
CREATE VIEW ambient.drift_runs WITH (security_barrier) AS
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
       c.status
  FROM ambient.drift_log d
  JOIN ambient.readable_projects p ON p.project_id = d.project_id
  LEFT JOIN ambient.model_store m ON m.id = d.model_id
 CROSS JOIN LATERAL pg_catalog.jsonb_to_recordset(d.columns)
       AS c(feature text, kind text, rows bigint, psi double precision, ks double precision,
            ks_p_value double precision, js double precision, status text);

CREATE VIEW ambient.policy_runs WITH (security_barrier) AS
SELECT r.id AS run_id, p.project, r.started_at, r.finished_at, r.run_by, r.status, r.action,
       r.reason, r.model_id, r.details
  FROM ambient.policy_log r
  JOIN ambient.readable_projects p ON p.project_id = r.project_id;

CREATE VIEW ambient.alerts WITH (security_barrier) AS
SELECT a.id AS alert_id, p.project, a.raised_at, a.kind, a.message, a.details
  FROM ambient.alert_log a
  JOIN ambient.readable_projects p ON p.project_id = a.project_id;

CREATE VIEW ambient.approvals WITH (security_barrier) AS
SELECT a.model_id, p.project, m.version, m.score, a.state, a.requested_at, a.decided_at,
       a.decided_by, a.reason
  FROM ambient.approval_log a
  JOIN ambient.readable_projects p ON p.project_id = a.project_id
  JOIN ambient.model_store m ON m.id = a.model_id;

CREATE VIEW ambient.project_policies WITH (security_barrier) AS
SELECT p.project, pol.policy, s.cron AS schedule, pol.set_at, pol.set_by
  FROM ambient.policies pol
  JOIN ambient.readable_projects p ON p.project_id = pol.project_id
  LEFT JOIN ambient.schedule_list s ON s.project_id = pol.project_id;

GRANT SELECT ON ambient.drift_runs, ambient.policy_runs, ambient.alerts, ambient.approvals,
                ambient.project_policies TO PUBLIC;

-- A retrained model names the model it was retrained from.
ALTER TABLE ambient.model_store
    ADD COLUMN parent_model_id bigint REFERENCES ambient.model_store (id) ON DELETE SET NULL;

-- Canary and shadow trials.

-- Canary and shadow trials: a challenger served to a stable fraction of
-- keys, or predicting beside the live model without being served.
-- Append-only: a project's newest row says whether a trial runs.
CREATE TABLE ambient.challenge_log (
    id          bigserial PRIMARY KEY,
    project_id  bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    model_id    bigint NOT NULL REFERENCES ambient.model_store (id) ON DELETE CASCADE,
    mode        text NOT NULL CHECK (mode IN ('canary', 'shadow')),
    -- The share of keys a canary serves.
    traffic     double precision,
    event       text NOT NULL CHECK (event IN ('started', 'promoted', 'ended')),
    at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    by          name NOT NULL,
    reason      text
);
CREATE INDEX ON ambient.challenge_log (project_id, id);

-- What a shadow challenger predicted for each row of an attached table,
-- without it being served.
CREATE TABLE ambient.shadow_log (
    id            bigserial PRIMARY KEY,
    project_id    bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    model_id      bigint NOT NULL,
    relation      regclass NOT NULL,
    row_key       text,
    prediction    text,
    predicted_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ON ambient.shadow_log (project_id, id);

SELECT pg_catalog.pg_extension_config_dump('ambient.challenge_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.challenge_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.shadow_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.shadow_log_id_seq', '');
REVOKE ALL ON ambient.challenge_log, ambient.shadow_log FROM PUBLIC;

-- Canary and shadow trials of readable projects, every event.
CREATE VIEW ambient.challenges WITH (security_barrier) AS
SELECT c.id AS event_id, p.project, c.model_id, m.version, c.mode, c.traffic, c.event,
       c.at, c.by, c.reason
  FROM ambient.challenge_log c
  JOIN ambient.readable_projects p ON p.project_id = c.project_id
  JOIN ambient.model_store m ON m.id = c.model_id;

CREATE VIEW ambient.shadow_predictions WITH (security_barrier) AS
SELECT s.id, p.project, s.model_id, s.relation, s.row_key, s.prediction, s.predicted_at
  FROM ambient.shadow_log s
  JOIN ambient.readable_projects p ON p.project_id = s.project_id;

GRANT SELECT ON ambient.challenges, ambient.shadow_predictions TO PUBLIC;

CREATE FUNCTION ambient.predict_trigger() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ambient_predict_trigger';
CREATE FUNCTION ambient."attach"(
	"project" TEXT,
	"table" regclass,
	"prediction_column" TEXT DEFAULT 'prediction'
) RETURNS TABLE (
	"prediction_column" TEXT,
	"model_id_column" TEXT,
	"label_column" TEXT
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'attach_wrapper';
CREATE FUNCTION ambient."detach"(
	"project" TEXT,
	"table" regclass
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'detach_wrapper';
CREATE FUNCTION ambient."monitor"(
	"project" TEXT,
	"time_column" TEXT DEFAULT NULL,
	"window" interval DEFAULT NULL
) RETURNS TABLE (
	"model_id" bigint,
	"version" INT,
	"labelled_rows" bigint,
	"metrics" jsonb
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'monitor_wrapper';
CREATE FUNCTION ambient."drift"(
	"project" TEXT,
	"relation" regclass DEFAULT NULL,
	"query" TEXT DEFAULT NULL,
	"time_column" TEXT DEFAULT NULL,
	"window" interval DEFAULT NULL
) RETURNS TABLE (
	"feature" TEXT, 
	"kind" TEXT, 
	"rows" bigint, 
	"psi" double precision, 
	"ks" double precision, 
	"ks_p_value" double precision, 
	"js" double precision, 
	"status" TEXT 
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'drift_wrapper';
CREATE FUNCTION ambient."set_policy"(
	"project" TEXT,
	"policy" jsonb
) RETURNS jsonb
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'set_policy_wrapper';
CREATE FUNCTION ambient."run_policy"(
	"project" TEXT
) RETURNS TABLE (
	"status" TEXT, 
	"action" TEXT, 
	"reason" TEXT, 
	"model_id" bigint 
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'run_policy_wrapper';
CREATE FUNCTION ambient."approve"(
	"model_id" bigint,
	"reason" TEXT DEFAULT NULL
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'approve_wrapper';
CREATE FUNCTION ambient."reject"(
	"model_id" bigint,
	"reason" TEXT DEFAULT NULL
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'reject_wrapper';
CREATE FUNCTION ambient."schedule"(
	"project" TEXT,
	"cron" TEXT
) RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'schedule_wrapper';
CREATE FUNCTION ambient."unschedule"(
	"project" TEXT
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'unschedule_wrapper';
CREATE FUNCTION ambient."shadow"(
	"project" TEXT,
	"model_id" bigint
) RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'shadow_wrapper';
CREATE FUNCTION ambient."promote"(
	"project" TEXT,
	"reason" TEXT DEFAULT NULL
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'promote_wrapper';
CREATE FUNCTION ambient."end_trial"(
	"project" TEXT,
	"reason" TEXT DEFAULT NULL
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'end_trial_wrapper';
CREATE FUNCTION ambient."compare"(
	"project" TEXT
) RETURNS TABLE (
	"role" TEXT, 
	"model_id" bigint, 
	"version" INT, 
	"labelled_rows" bigint, 
	"metrics" jsonb 
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'compare_wrapper';
CREATE FUNCTION ambient.predict(project text, "row" record, key text) RETURNS float8
    STRICT STABLE PARALLEL SAFE COST 40 LANGUAGE c AS 'MODULE_PATHNAME', 'predict_row_keyed_wrapper';
CREATE FUNCTION ambient.predict_label(project text, "row" record, key text) RETURNS text
    STRICT STABLE PARALLEL SAFE COST 40 LANGUAGE c AS 'MODULE_PATHNAME', 'predict_label_row_keyed_wrapper';
CREATE FUNCTION ambient.route(project text, key text) RETURNS bigint
    STRICT STABLE PARALLEL SAFE COST 20 LANGUAGE c AS 'MODULE_PATHNAME', 'route_wrapper';
