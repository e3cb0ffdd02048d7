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

-- Reports.
COMMENT ON FUNCTION ambient.report(text, interval) IS 'One self-contained HTML page about a project: live model, versions, deployments, live accuracy, drift, test-row quality, explanations, the search';
COMMENT ON FUNCTION ambient.report() IS 'An HTML overview of every project the caller may read, linking to each project''s page';
COMMENT ON FUNCTION ambient.report_pages(interval) IS 'The overview (index.html) and every readable project''s page, with the file names the overview links to';
COMMENT ON FUNCTION ambient.report_data(text, interval) IS 'What ambient.report draws for a project, as jsonb, read with the caller''s rights';
COMMENT ON FUNCTION ambient.report_overview_data(interval) IS 'What the overview (ambient.report()) draws, as jsonb, read with the caller''s rights';
