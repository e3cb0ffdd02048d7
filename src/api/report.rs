//! `ambient.report`: a project's page, and the overview of every project
//! the caller may read, as self-contained HTML (see `crate::report`).
//! Everything a page shows is read by `ambient.report_data` and
//! `ambient.report_overview_data`, SQL functions over the readable views,
//! run as the caller: a page shows only what its reader may read.

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::JsonB;

use super::check_project_name;
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::report::{self, OverviewData, ProjectData};

/// One self-contained HTML page about `project`: its live model, versions,
/// deployments, live accuracy, drift, test-row quality, explanations and
/// the search that chose it, over the period `since` (see docs/report.md).
#[pg_extern(stable, parallel_restricted, name = "report")]
fn report_project(project: &str, since: default!(Interval, "'30 days'")) -> String {
    project_page(project, since).or_raise()
}

/// The overview: one row per project the caller may read, each linking to
/// its page as `ambient.report_pages` names it.
#[pg_extern(stable, parallel_restricted, name = "report")]
fn report_overview() -> String {
    default_since()
        .and_then(overview)
        .map(|(html, _)| html)
        .or_raise()
}

/// The overview (`index.html`) and every readable project's page, with the
/// file names the overview links to: what `make report` writes.
#[pg_extern(stable, parallel_restricted)]
fn report_pages(
    since: default!(Interval, "'30 days'"),
) -> TableIterator<
    'static,
    (
        name!(path, String),
        name!(project, Option<String>),
        name!(html, String),
    ),
> {
    let pages = || -> AmbientResult<Vec<(String, Option<String>, String)>> {
        let (index, data) = overview(since)?;
        let mut pages = vec![("index.html".to_string(), None, index)];
        for p in &data.projects {
            pgrx::check_for_interrupts!();
            pages.push((
                report::page_name(&p.project, p.id),
                Some(p.project.clone()),
                project_page(&p.project, since)?,
            ));
        }
        Ok(pages)
    };
    TableIterator::new(pages().or_raise())
}

/// 30 days, as `report_pages` and `report(project)` default to.
fn default_since() -> AmbientResult<Interval> {
    Interval::new(0, 30, 0).map_err(|e| AmbientError::invalid(format!("30 days: {e}")))
}

fn project_page(project: &str, since: Interval) -> AmbientResult<String> {
    check_project_name(project)?;
    // ambient.report_data reads through the views, so it is NULL for a
    // project this role may not read, and for one that does not exist: the
    // same answer, so a report cannot tell a stranger which names exist.
    let data = Spi::get_one_with_args::<JsonB>(
        "SELECT ambient.report_data($1, $2)",
        &[project.into(), since.into()],
    )?
    .ok_or_else(|| {
        AmbientError::privilege(format!(
            "permission denied for project \"{project}\", or it does not exist"
        ))
        .hint("its owner can grant reading: SELECT ambient.grant('project', 'role', 'read')")
    })?;
    let data: ProjectData = serde_json::from_value(data.0)
        .map_err(|e| AmbientError::invalid(format!("report data of \"{project}\": {e}")))?;
    Ok(report::project_page(&data))
}

fn overview(since: Interval) -> AmbientResult<(String, OverviewData)> {
    let data = Spi::get_one_with_args::<JsonB>(
        "SELECT ambient.report_overview_data($1)",
        &[since.into()],
    )?
    .ok_or_else(|| AmbientError::invalid("the overview read nothing"))?;
    let data: OverviewData = serde_json::from_value(data.0)
        .map_err(|e| AmbientError::invalid(format!("overview data: {e}")))?;
    Ok((report::overview_page(&data), data))
}

extension_sql!(
    r#"
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
"#,
    name = "report_data",
    requires = ["project_policies", api::explain::feature_importance_pinned],
);
