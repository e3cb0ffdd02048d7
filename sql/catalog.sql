-- The pg_ambient catalog. Models are immutable rows; deployments are an
-- append-only log whose newest row per project names the live model. Only
-- the extension's own functions read and write these tables (they switch to
-- the extension owner and check the caller's rights in Rust); roles see the
-- projects they may read through the views at the end.

CREATE TABLE ambient.projects (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    task        text NOT NULL CHECK (task IN ('classification', 'regression')),
    target      text NOT NULL,
    -- Roles with this role's privileges may train, deploy, roll back, drop
    -- and grant. A role, not a name: a dump restores it by name.
    owner       regrole NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by  name NOT NULL,
    -- The input contract: the live model's feature names, in the order the
    -- array forms of predict take them, and their types. Fixed by the first
    -- train; only a deploy with new_contract => true changes it.
    features       text[] NOT NULL,
    feature_types  text[] NOT NULL
);

-- What a model was trained on.
CREATE TABLE ambient.snapshots (
    id              bigserial PRIMARY KEY,
    project_id      bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    source_kind     text NOT NULL CHECK (source_kind IN ('relation', 'query', 'training_set')),
    -- The schema-qualified relation, the full query text, or the training
    -- set's name.
    source          text NOT NULL,
    -- Labeled rows read; rows whose label was NULL are counted apart.
    row_count       bigint NOT NULL,
    unlabeled_rows  bigint NOT NULL,
    -- Per column: count, nulls, min, max, mean, std, quantiles (numeric)
    -- or class frequencies (labels).
    column_stats    jsonb NOT NULL,
    -- sha256 of the rows in canonical (sorted) order.
    data_sha256     text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by      name NOT NULL,
    -- Where the WAL was when the rows were read (NULL before 0.3.0, and
    -- on a standby, which trains nothing).
    wal_lsn         pg_lsn DEFAULT pg_catalog.pg_current_wal_insert_lsn(),
    -- The tables and views reading the source touched: DDL on them is
    -- checked against the live models trained from it. NULL for a query
    -- source before 0.3.0.
    source_relations regclass[],
    -- The copy of the rows (train(..., snapshot => 'copy')), a table in
    -- schema ambient_snapshots; NULL when only the hash is kept.
    copy            regclass
);
CREATE INDEX ON ambient.snapshots (project_id);

CREATE TABLE ambient.model_store (
    id                 bigserial PRIMARY KEY,
    project_id         bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    version            integer NOT NULL,
    algorithm          text NOT NULL,
    -- Every hyper-parameter, defaults filled in.
    hyperparams        jsonb NOT NULL,
    features           text[] NOT NULL,
    feature_types      text[] NOT NULL,
    label_classes      text[],
    metrics            jsonb NOT NULL,
    primary_metric     text NOT NULL,
    -- The primary metric's value, as a number so it orders numerically.
    score              double precision NOT NULL,
    test_size          double precision NOT NULL,
    seed               bigint NOT NULL,
    train_rows         bigint NOT NULL,
    test_rows          bigint NOT NULL,
    training_seconds   double precision NOT NULL,
    extension_version  text NOT NULL,
    snapshot_id        bigint NOT NULL REFERENCES ambient.snapshots (id),
    artifact           bytea NOT NULL,
    artifact_sha256    text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by         name NOT NULL,
    -- What each input column becomes (imputation, scaling, encoding), as
    -- the model applies it at predict time. Last, where 0.2.0's upgrade
    -- adds it.
    preprocessing      jsonb NOT NULL,
    -- Permutation importance per input column on the test split: how much
    -- the primary metric falls when the column is shuffled. NULL for models
    -- trained before 0.2.0.
    importance         jsonb,
    -- What train was asked, so the model can be trained again on new data:
    -- algorithm (or 'auto'), hyper-parameters, search, folds, budget,
    -- preprocessing, features, test size and seed. NULL before 0.2.0.
    request            jsonb,
    -- The model a policy retrained this one from; NULL for a model a
    -- person trained.
    parent_model_id    bigint REFERENCES ambient.model_store (id) ON DELETE SET NULL,
    UNIQUE (project_id, version),
    -- Who the training definition (request and snapshot source) runs as
    -- when a policy trains it again, and the search_path its names were
    -- written under: the role that trained it, never whoever triggers the
    -- retrain. NULL for models from before 0.2.0, which keep no request.
    definition_role         regrole,
    definition_search_path  text,
    -- For a model trained from a training set: the set, the feature sets
    -- with their definition hashes, which feature came from which set, and
    -- the newest ingest time it saw. NULL otherwise.
    feature_lineage         jsonb,
    -- What it did on its test rows, for ambient.report: a confusion matrix
    -- and a calibration table, or residuals; and one typical row (medians
    -- and most common values) explained. NULL before 0.3.0.
    diagnostics             jsonb
);

CREATE TABLE ambient.deployment_log (
    id                 bigserial PRIMARY KEY,
    project_id         bigint NOT NULL REFERENCES ambient.projects (id) ON DELETE CASCADE,
    model_id           bigint NOT NULL REFERENCES ambient.model_store (id),
    -- The model that was live before this row.
    previous_model_id  bigint REFERENCES ambient.model_store (id),
    -- The deployment this one was stacked on; rollback returns to it, so
    -- repeated rollbacks walk back C -> B -> A.
    parent_id          bigint REFERENCES ambient.deployment_log (id),
    strategy           text NOT NULL CHECK (strategy IN
                         ('if_better', 'always', 'manual', 'best_score', 'most_recent', 'rollback')),
    reason             text,
    deployed_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    deployed_by        name NOT NULL
);
CREATE INDEX ON ambient.deployment_log (project_id, id DESC);

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
    -- The training rows the trial was cross-validated on: a subsample
    -- while successive halving screens candidates. NULL before 0.3.0.
    sample_rows  bigint,
    PRIMARY KEY (model_id, trial)
);

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

-- One row per monitor() run and model: live metrics over the labelled rows,
-- so accuracy can be followed over time. This log, drift_log, policy_log
-- and alert_log keep the newest ambient.log_rows_per_project rows of each
-- project.
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
-- without it being served; kept while its trial runs, deleted when it ends.
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

-- pg_dump keeps models and their history (the sequences too, so ids go on
-- where they left off after a restore).
SELECT pg_catalog.pg_extension_config_dump('ambient.projects', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.projects_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.snapshots_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.model_store', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.model_store_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.deployment_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.deployment_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.project_grants', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.trial_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.attachment_list', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.attachment_list_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.monitor_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.monitor_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.drift_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.drift_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.policies', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.policy_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.policy_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.alert_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.alert_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.approval_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.schedule_list', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.challenge_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.challenge_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.shadow_log', '');
SELECT pg_catalog.pg_extension_config_dump('ambient.shadow_log_id_seq', '');


-- Nobody but the extension owner reads the tables: models hold training
-- values (tree thresholds), snapshots hold query texts and column
-- statistics. Roles read the views below, which show only what they may.
REVOKE ALL ON ambient.projects, ambient.snapshots, ambient.model_store, ambient.deployment_log,
              ambient.project_grants, ambient.trial_log, ambient.attachment_list,
              ambient.monitor_log,
              ambient.drift_log, ambient.policies, ambient.policy_log, ambient.alert_log,
              ambient.approval_log, ambient.schedule_list, ambient.challenge_log,
              ambient.shadow_log FROM PUBLIC;

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
       p.features,
       p.feature_types
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
       s.created_by,
       s.wal_lsn,
       s.id AS snapshot_id,
       s.copy,
       CASE WHEN s.copy IS NOT NULL THEN pg_catalog.pg_total_relation_size(s.copy) END AS copy_bytes
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
       t.chosen,
       t.sample_rows
  FROM ambient.trial_log t
  JOIN ambient.model_store m ON m.id = t.model_id
  JOIN ambient.readable_projects p ON p.project_id = m.project_id;

-- A search's trials, best mean first: the project's latest search, or the
-- one behind model version `version`. Trials on more rows rank first: a
-- candidate successive halving screened out on a subsample ranks below
-- those that went on.
CREATE FUNCTION ambient.leaderboard(project text, version integer DEFAULT NULL)
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
       c.status,
       c.distribution
  FROM ambient.drift_log d
  JOIN ambient.readable_projects p ON p.project_id = d.project_id
  LEFT JOIN ambient.model_store m ON m.id = d.model_id
 CROSS JOIN LATERAL pg_catalog.jsonb_to_recordset(d.columns)
       AS c(feature text, kind text, rows bigint, psi double precision, ks double precision,
            ks_p_value double precision, js double precision, status text, distribution jsonb);

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

GRANT USAGE ON SCHEMA ambient TO PUBLIC;
GRANT SELECT ON ambient.readable_projects, ambient.models, ambient.deployments, ambient.overview,
                ambient.model_snapshots, ambient.grants, ambient.trials, ambient.attachments,
                ambient.monitor_runs, ambient.drift_runs, ambient.policy_runs, ambient.alerts,
                ambient.approvals, ambient.challenges,
                ambient.shadow_predictions TO PUBLIC;

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
-- Copies of training rows (train(..., snapshot => 'copy')), one table per
-- snapshot, owned by the extension and readable under the project's read
-- rules (SELECT granted to its owner and 'read' grantees, kept in step by
-- ambient.grant and ambient.revoke).
CREATE SCHEMA ambient_snapshots;
REVOKE ALL ON SCHEMA ambient_snapshots FROM PUBLIC;
GRANT USAGE ON SCHEMA ambient_snapshots TO PUBLIC;

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
