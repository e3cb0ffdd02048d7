//! `ambient.report`'s pages: pure Rust, no pgrx, like `ml`. `api::report`
//! reads what a page shows (`ambient.report_data`, with the caller's
//! rights) as JSON; this module turns it into one self-contained HTML page
//! with inline SVG charts (`charts`, drawn by plotters) in a compile-time
//! template (`page`, maud, which escapes every catalog string).

mod charts;
mod page;

use serde::{Deserialize, Deserializer};

pub use page::{overview_page, project_page};

/// Okabe and Ito's palette, safe for colour-blind readers, in their order
/// (black last, for reference lines).
pub const PALETTE: [(u8, u8, u8); 8] = [
    (0xE6, 0x9F, 0x00), // orange
    (0x56, 0xB4, 0xE9), // sky blue
    (0x00, 0x9E, 0x73), // bluish green
    (0xD5, 0x5E, 0x00), // vermillion
    (0x00, 0x72, 0xB2), // blue
    (0xCC, 0x79, 0xA7), // reddish purple
    (0xF0, 0xE4, 0x42), // yellow
    (0x00, 0x00, 0x00), // black
];

/// A number as Postgres's jsonb writes it: NaN and infinities come as
/// strings.
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(optional_number(d)?.unwrap_or(f64::NAN))
}

fn optional_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Value(f64),
        Text(String),
    }
    Ok(match Option::<Number>::deserialize(d)? {
        None => None,
        Some(Number::Value(v)) => Some(v),
        Some(Number::Text(t)) => Some(t.parse().unwrap_or(f64::NAN)),
    })
}

/// Seconds since 1970 of a timestamp as jsonb writes it (RFC 3339).
pub fn epoch(at: &str) -> Option<f64> {
    let t: jiff::Timestamp = at.parse().ok()?;
    Some(t.as_millisecond() as f64 / 1000.0)
}

/// A timestamp to the minute, as the page shows it ("2026-12-05 07:30 UTC").
pub fn minute(at: &str) -> String {
    match at.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => at.to_string(),
    }
}

/// A number for people: four significant digits, no exponent for the
/// usual ranges.
pub fn short(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "–".into()
        } else {
            v.to_string()
        };
    }
    let magnitude = v.abs();
    if magnitude == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e6).contains(&magnitude) {
        let text = format!("{v:.3e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{mantissa}e{exponent}");
    }
    let digits = (3 - magnitude.log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[derive(Debug, Deserialize)]
pub struct ProjectData {
    pub project: String,
    pub task: String,
    pub target: String,
    pub owner: String,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub feature_types: Vec<String>,
    pub generated_at: String,
    pub since: String,
    pub live: Option<Live>,
    #[serde(default)]
    pub versions: Vec<Version>,
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    #[serde(default)]
    pub challenges: Vec<Challenge>,
    #[serde(default)]
    pub approvals: Vec<Approval>,
    #[serde(default)]
    pub policy_runs: Vec<PolicyRun>,
    #[serde(default)]
    pub quiet_policy_runs: i64,
    #[serde(default)]
    pub alerts: Vec<Alert>,
    pub policy: Option<PolicyData>,
    #[serde(default)]
    pub monitor: Vec<MonitorRun>,
    #[serde(default)]
    pub drift: Vec<DriftPoint>,
    #[serde(default)]
    pub latest_drift: Vec<LatestDrift>,
    #[serde(default)]
    pub importance: Vec<Importance>,
    #[serde(default)]
    pub leaderboard: Vec<Trial>,
    pub leaderboard_version: Option<i64>,
    #[serde(default)]
    pub feature_sets: Vec<Freshness>,
}

#[derive(Debug, Deserialize)]
pub struct Live {
    pub model_id: i64,
    pub version: i64,
    pub algorithm: String,
    pub metric: String,
    #[serde(deserialize_with = "number")]
    pub score: f64,
    pub deployed_at: String,
    pub deployed_by: String,
    pub strategy: Option<String>,
    pub reason: Option<String>,
    pub train_rows: i64,
    pub test_rows: i64,
    pub trained_at: String,
    pub trained_by: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub feature_sets: Vec<String>,
    /// `ml::diagnostics::Diagnostics` as stored; NULL before 0.3.0.
    pub diagnostics: Option<serde_json::Value>,
    pub source: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Version {
    pub model_id: i64,
    pub version: i64,
    pub algorithm: String,
    pub metric: String,
    #[serde(deserialize_with = "number")]
    pub score: f64,
    pub trained_at: String,
    pub trained_by: String,
    pub parent: Option<i64>,
    pub live: Option<bool>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub deployed: bool,
}

#[derive(Debug, Deserialize)]
pub struct Deployment {
    pub at: String,
    pub by: String,
    pub version: i64,
    pub strategy: String,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Challenge {
    pub at: String,
    pub by: String,
    pub version: i64,
    pub mode: String,
    #[serde(default, deserialize_with = "optional_number")]
    pub traffic: Option<f64>,
    pub event: String,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Approval {
    pub model_id: i64,
    pub version: i64,
    #[serde(deserialize_with = "number")]
    pub score: f64,
    pub state: String,
    pub requested_at: String,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PolicyRun {
    pub at: String,
    pub by: String,
    pub status: String,
    pub action: Option<String>,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
pub struct Alert {
    pub at: String,
    pub kind: String,
    pub message: String,
    pub open: bool,
}

#[derive(Debug, Deserialize)]
pub struct PolicyData {
    pub policy: serde_json::Value,
    pub schedule: Option<String>,
    pub active: Option<bool>,
    pub cron_timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct MonitorRun {
    pub at: String,
    pub version: Option<i64>,
    pub metrics: serde_json::Value,
}

#[derive(Debug, Deserialize)]
pub struct DriftPoint {
    pub at: String,
    pub feature: String,
    #[serde(default, deserialize_with = "optional_number")]
    pub psi: Option<f64>,
    #[serde(default, deserialize_with = "optional_number")]
    pub ks_p_value: Option<f64>,
    #[serde(default, deserialize_with = "optional_number")]
    pub js: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct LatestDrift {
    pub at: String,
    pub feature: String,
    pub rows: Option<i64>,
    #[serde(default, deserialize_with = "optional_number")]
    pub psi: Option<f64>,
    #[serde(default, deserialize_with = "optional_number")]
    pub js: Option<f64>,
    pub status: Option<String>,
    pub dataset_drifted: bool,
    #[serde(deserialize_with = "number")]
    pub drifted_share: f64,
    /// `ml::drift::BinShare`s; NULL for runs before 0.3.0.
    pub distribution: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct Importance {
    pub feature: String,
    pub method: String,
    #[serde(deserialize_with = "number")]
    pub importance: f64,
}

#[derive(Debug, Deserialize)]
pub struct Trial {
    pub rank: i64,
    pub trial: i64,
    pub algorithm: String,
    pub hyperparams: serde_json::Value,
    #[serde(default, deserialize_with = "optional_number")]
    pub mean_score: Option<f64>,
    #[serde(default, deserialize_with = "optional_number")]
    pub std_score: Option<f64>,
    #[serde(deserialize_with = "number")]
    pub seconds: f64,
    pub status: String,
    pub chosen: bool,
}

#[derive(Debug, Deserialize)]
pub struct Freshness {
    pub feature_set: String,
    pub ttl: Option<String>,
    pub entities: Option<i64>,
    pub newest_event_time: Option<String>,
    pub newest_ingested_at: Option<String>,
    #[serde(default, deserialize_with = "optional_number")]
    pub stale_share: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct OverviewData {
    pub generated_at: String,
    pub since: String,
    pub cron_timezone: Option<String>,
    #[serde(default)]
    pub projects: Vec<OverviewProject>,
}

#[derive(Debug, Deserialize)]
pub struct OverviewProject {
    pub project: String,
    pub id: i64,
    pub task: String,
    pub owner: String,
    pub version: Option<i64>,
    pub algorithm: Option<String>,
    pub metric: Option<String>,
    #[serde(default, deserialize_with = "optional_number")]
    pub score: Option<f64>,
    pub models: i64,
    #[serde(default)]
    pub live_metric: Vec<LiveMetric>,
    pub drift: Option<DriftStatus>,
    pub open_alerts: i64,
    pub pending_approvals: i64,
    pub schedule: Option<Schedule>,
}

#[derive(Debug, Deserialize)]
pub struct LiveMetric {
    pub metrics: serde_json::Value,
}

#[derive(Debug, Deserialize)]
pub struct DriftStatus {
    pub at: String,
    pub dataset_drifted: bool,
    #[serde(deserialize_with = "number")]
    pub drifted_share: f64,
}

#[derive(Debug, Deserialize)]
pub struct Schedule {
    pub schedule: Option<String>,
    pub active: Option<bool>,
}

/// The next time a pg_cron `schedule` runs after `now` (RFC 3339), in
/// `timezone` (pg_cron's `cron.timezone`, GMT when unset), as the page
/// shows it; `None` for a schedule croner does not read (pg_cron's
/// "30 seconds" form) or an unknown zone.
pub fn next_run(schedule: &str, now: &str, timezone: Option<&str>) -> Option<String> {
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .build()
        .parse(schedule)
        .ok()?;
    let zone = jiff::tz::TimeZone::get(timezone.unwrap_or("GMT")).ok()?;
    let now: jiff::Timestamp = now.parse().ok()?;
    let next = cron.find_next_occurrence(&now.to_zoned(zone), false).ok()?;
    Some(next.timestamp().strftime("%Y-%m-%d %H:%M UTC").to_string())
}

/// The value of `metric` in a metrics object, if it is a number.
pub fn metric_of(metrics: &serde_json::Value, metric: &str) -> Option<f64> {
    metrics.get(metric).and_then(serde_json::Value::as_f64)
}

/// Whether larger values of `metric` are better.
pub fn higher_is_better(metric: &str) -> bool {
    !matches!(metric, "rmse" | "mae" | "log_loss" | "mse")
}

/// Names Windows keeps for devices, whatever the extension.
const RESERVED: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// A file name for the page of project `id`, unique and safe on every file
/// system, case-insensitive ones included: the name itself when it has only
/// lower-case letters, digits, '_' and '-' (and is neither "index" nor a
/// device name), else those of its characters with '~' and the project's
/// id, which no plain name contains.
pub fn page_name(project: &str, id: i64) -> String {
    let plain = !project.is_empty()
        && project.len() <= 100
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && project != "index"
        && !RESERVED.contains(&project);
    if plain {
        format!("{project}.html")
    } else {
        let kept: String = project
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .take(60)
            .collect();
        format!("{kept}~{id}.html")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(short(0.912345), "0.9123");
        assert_eq!(short(12.5), "12.5");
        assert_eq!(short(1234.5678), "1235");
        assert_eq!(short(2.0), "2");
        assert_eq!(short(0.0), "0");
        assert_eq!(short(1e-7), "1e-7");
        assert_eq!(short(-2.5e7), "-2.5e7");
        assert_eq!(short(f64::NAN), "–");
    }

    #[test]
    fn timestamps_read_as_postgres_writes_them() {
        assert_eq!(epoch("1970-01-01T00:01:00+00:00"), Some(60.0));
        assert_eq!(epoch("2026-12-05T08:00:00.5+01:00"), Some(1_796_454_000.5));
        assert_eq!(
            minute("2026-12-05T08:00:00.5+01:00"),
            "2026-12-05 07:00 UTC"
        );
        assert_eq!(epoch("soon"), None);
    }

    #[test]
    fn the_next_run_follows_the_schedule_in_pg_crons_zone() {
        let now = "2026-12-05T07:10:00+00:00";
        assert_eq!(
            next_run("0 3 * * *", now, None).as_deref(),
            Some("2026-12-06 03:00 UTC")
        );
        assert_eq!(
            next_run("*/15 * * * *", now, Some("UTC")).as_deref(),
            Some("2026-12-05 07:15 UTC")
        );
        // 03:00 in Berlin (UTC+1 in December) is 02:00 UTC.
        assert_eq!(
            next_run("0 3 * * *", now, Some("Europe/Berlin")).as_deref(),
            Some("2026-12-06 02:00 UTC")
        );
        assert_eq!(next_run("30 seconds", now, None), None);
        assert_eq!(next_run("0 3 * * *", now, Some("Mars/Olympus")), None);
    }

    #[test]
    fn page_names_are_unique_and_safe() {
        assert_eq!(page_name("churn", 1), "churn.html");
        assert_eq!(page_name("fraud/prod", 2), "fraudprod~2.html");
        assert_eq!(page_name("index", 3), "index~3.html");
        assert_eq!(page_name("<script>", 4), "script~4.html");
        assert_eq!(page_name("", 5), "~5.html");
        // Case-insensitive file systems, and Windows' device names.
        assert_eq!(page_name("Churn", 6), "Churn~6.html");
        assert_eq!(page_name("con", 7), "con~7.html");
    }
}
