//! Scheduled jobs: the `CronStore` trait, the job model (the original PicoClaw's `jobs.json`
//! shape: `schedule.kind` `at` / `every` / `cron`, `payload.message`, `deliver`, `channel`, `to`)
//! and the schedule arithmetic (cron expressions through `croner`; time zones from the system's
//! tz database through `jiff`, so the binary carries no zone tables).
//!
//! Times are milliseconds since the Unix epoch, as in the original.
//!
//! Running a job exactly once, however many gateway instances share the store: every instance
//! asks for [`CronStore::due_jobs`] and calls [`CronStore::claim_run`] with the run time it saw;
//! the claim moves the job to its next run only if nobody moved it first, so exactly one
//! instance gets `true` and runs it.

use crate::StateError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// When a job runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    /// Once, at this time.
    At {
        #[serde(rename = "atMs")]
        at_ms: i64,
    },
    /// Every this many milliseconds.
    Every {
        #[serde(rename = "everyMs")]
        every_ms: i64,
    },
    /// A cron expression (5 fields, or 6 with seconds first), in a time zone (IANA name; UTC when
    /// absent).
    Cron {
        expr: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tz: Option<String>,
    },
}

/// The shortest repeat interval accepted.
pub const MIN_EVERY_MS: i64 = 1_000;

impl Schedule {
    /// Checks the expression, the time zone and the interval; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Schedule::At { .. } => Ok(()),
            Schedule::Every { every_ms } if *every_ms < MIN_EVERY_MS => Err(format!(
                "the interval must be at least {} second(s), not {every_ms} ms",
                MIN_EVERY_MS / 1000
            )),
            Schedule::Every { .. } => Ok(()),
            Schedule::Cron { expr, tz } => {
                parse_cron(expr)?;
                if let Some(tz) = tz {
                    parse_tz(tz)?;
                }
                Ok(())
            }
        }
    }

    /// The first run strictly after `after_ms`; `None` when there is none (a past `at`, an
    /// invalid schedule).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Schedule::At { at_ms } => (*at_ms > after_ms).then_some(*at_ms),
            Schedule::Every { every_ms } => {
                (*every_ms >= MIN_EVERY_MS).then(|| after_ms.saturating_add(*every_ms))
            }
            Schedule::Cron { expr, tz } => {
                let cron = parse_cron(expr).ok()?;
                let tz = match tz {
                    Some(tz) => parse_tz(tz).ok()?,
                    None => Zone(jiff::tz::TimeZone::UTC),
                };
                let after = chrono::DateTime::from_timestamp_millis(after_ms)?.with_timezone(&tz);
                cron.find_next_occurrence(&after, false)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }
        }
    }

    /// The run after the one scheduled at `scheduled_ms`, seen at `now_ms`: intervals keep their
    /// rhythm (and skip runs missed while nothing was running rather than firing them all);
    /// cron expressions take their next time after now; `at` has none.
    pub fn following(&self, scheduled_ms: i64, now_ms: i64) -> Option<i64> {
        match self {
            Schedule::At { .. } => None,
            Schedule::Every { every_ms } if *every_ms >= MIN_EVERY_MS => {
                let behind = now_ms.saturating_sub(scheduled_ms).max(0);
                let steps = behind / every_ms + 1;
                Some(scheduled_ms.saturating_add(steps.saturating_mul(*every_ms)))
            }
            Schedule::Every { .. } => None,
            Schedule::Cron { .. } => self.next_after(now_ms.max(scheduled_ms)),
        }
    }

    /// A short human description (`every 5m`, `at 2026-11-29 08:00 UTC`, `cron "0 9 * * 1-5"
    /// (Europe/Lisbon)`).
    pub fn describe(&self) -> String {
        match self {
            Schedule::At { at_ms } => match chrono::DateTime::from_timestamp_millis(*at_ms) {
                Some(t) => format!("at {}", t.format("%Y-%m-%d %H:%M:%S UTC")),
                None => format!("at {at_ms} ms"),
            },
            Schedule::Every { every_ms } => format!("every {}", human_duration(*every_ms)),
            Schedule::Cron { expr, tz } => match tz {
                Some(tz) => format!("cron \"{expr}\" ({tz})"),
                None => format!("cron \"{expr}\" (UTC)"),
            },
        }
    }
}

fn human_duration(ms: i64) -> String {
    let s = ms / 1000;
    if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(fields == 5 || fields == 6 || expr.trim_start().starts_with('@')) {
        return Err(format!(
            "\"{expr}\" is not a cron expression: it needs 5 fields (minute hour day month \
             weekday) or 6 with seconds first"
        ));
    }
    croner::Cron::from_str(expr.trim())
        .map_err(|e| format!("\"{expr}\" is not a valid cron expression: {e}"))
}

fn parse_tz(tz: &str) -> Result<Zone, String> {
    jiff::tz::TimeZone::get(tz.trim()).map(Zone).map_err(|e| {
        format!(
            "unknown time zone \"{tz}\"; use an IANA name such as Europe/Lisbon or UTC ({e}; \
             time zones come from the system's tz database, package tzdata)"
        )
    })
}

/// A time zone of the system's tz database, as a `chrono::TimeZone` (what `croner` computes
/// in). Daylight-saving gaps and folds come through as chrono's `LocalResult::None` and
/// `Ambiguous`, which croner resolves (a skipped time fires after the change, a repeated one
/// once).
#[derive(Clone, Debug)]
struct Zone(jiff::tz::TimeZone);

/// An offset that remembers its zone (chrono rebuilds the zone from it).
#[derive(Clone, Debug)]
struct ZoneOffset {
    fixed: chrono::FixedOffset,
    zone: jiff::tz::TimeZone,
}

impl chrono::Offset for ZoneOffset {
    fn fix(&self) -> chrono::FixedOffset {
        self.fixed
    }
}

impl std::fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.fixed, f)
    }
}

impl Zone {
    fn offset(&self, offset: jiff::tz::Offset) -> ZoneOffset {
        ZoneOffset {
            // jiff offsets are within ±25:59:59, which chrono accepts; UTC if that ever changed.
            fixed: chrono::FixedOffset::east_opt(offset.seconds())
                .unwrap_or_else(|| chrono::Offset::fix(&chrono::Utc)),
            zone: self.0.clone(),
        }
    }
}

impl chrono::TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Self {
        Zone(offset.zone.clone())
    }

    fn offset_from_local_date(&self, local: &chrono::NaiveDate) -> chrono::LocalResult<ZoneOffset> {
        match local.and_hms_opt(0, 0, 0) {
            Some(midnight) => self.offset_from_local_datetime(&midnight),
            None => chrono::LocalResult::None,
        }
    }

    fn offset_from_local_datetime(
        &self,
        local: &chrono::NaiveDateTime,
    ) -> chrono::LocalResult<ZoneOffset> {
        use chrono::{Datelike, Timelike};
        use jiff::tz::AmbiguousOffset;
        let Ok(civil) = jiff::civil::DateTime::new(
            i16::try_from(local.year()).unwrap_or(i16::MAX),
            local.month() as i8,
            local.day() as i8,
            local.hour() as i8,
            local.minute() as i8,
            local.second() as i8,
            i32::try_from(local.nanosecond().min(999_999_999)).unwrap_or(0),
        ) else {
            return chrono::LocalResult::None;
        };
        match self.0.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                chrono::LocalResult::Single(self.offset(offset))
            }
            AmbiguousOffset::Gap { .. } => chrono::LocalResult::None,
            AmbiguousOffset::Fold { before, after } => {
                chrono::LocalResult::Ambiguous(self.offset(before), self.offset(after))
            }
        }
    }

    fn offset_from_utc_date(&self, utc: &chrono::NaiveDate) -> ZoneOffset {
        match utc.and_hms_opt(0, 0, 0) {
            Some(midnight) => self.offset_from_utc_datetime(&midnight),
            None => self.offset(jiff::tz::Offset::UTC),
        }
    }

    fn offset_from_utc_datetime(&self, utc: &chrono::NaiveDateTime) -> ZoneOffset {
        let seconds = utc.and_utc().timestamp();
        match jiff::Timestamp::from_second(seconds) {
            Ok(ts) => self.offset(self.0.to_offset(ts)),
            Err(_) => self.offset(jiff::tz::Offset::UTC),
        }
    }
}

/// What a job does when it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CronPayload {
    /// `agent_turn` (the original's only kind).
    #[serde(default = "agent_turn")]
    pub kind: String,
    /// The message: for the agent to act on, or (with `deliver`) the reminder text itself.
    pub message: String,
    /// Send `message` as it is instead of asking the agent.
    #[serde(default)]
    pub deliver: bool,
    /// Where the result goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The chat id within the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The conversation that created the job through the agent's `cron` tool
    /// (`channel:chat_id`), which alone sees it there; `None` for jobs from the owner's CLI and
    /// the original's `jobs.json`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ownerChat")]
    pub owner_chat: Option<String>,
    /// The agent (of `agents.list`) whose conversation made the job; it runs the job. `None`:
    /// the default agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

fn agent_turn() -> String {
    "agent_turn".to_owned()
}

impl CronPayload {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            kind: agent_turn(),
            message: message.into(),
            deliver: false,
            channel: None,
            to: None,
            owner_chat: None,
            agent: None,
        }
    }

    /// Records the agent that runs the job (see [`CronPayload::agent`]).
    pub fn for_agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Records the conversation that created the job (see [`CronPayload::owner_chat`]).
    pub fn owned_by(mut self, chat: impl Into<String>) -> Self {
        self.owner_chat = Some(chat.into());
        self
    }

    /// A reminder delivered as it is.
    pub fn delivered(mut self) -> Self {
        self.deliver = true;
        self
    }

    pub fn to(mut self, channel: impl Into<String>, chat_id: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self.to = Some(chat_id.into());
        self
    }
}

/// Where a job stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CronJobState {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "nextRunAtMs"
    )]
    pub next_run_at_ms: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "lastRunAtMs"
    )]
    pub last_run_at_ms: Option<i64>,
    /// `ok` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A scheduled job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CronJob {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub schedule: Schedule,
    pub payload: CronPayload,
    #[serde(default)]
    pub state: CronJobState,
    #[serde(rename = "createdAtMs")]
    pub created_at_ms: i64,
    #[serde(rename = "updatedAtMs")]
    pub updated_at_ms: i64,
    /// One-shot jobs are removed once they ran.
    #[serde(default)]
    pub delete_after_run: bool,
}

impl CronJob {
    /// A new enabled job with a fresh id and its first run computed from `now_ms`. Refuses an
    /// invalid schedule, and an `at` time already past.
    pub fn new(
        name: impl Into<String>,
        schedule: Schedule,
        payload: CronPayload,
        now_ms: i64,
    ) -> Result<Self, StateError> {
        schedule.validate().map_err(StateError::Invalid)?;
        if payload.message.trim().is_empty() {
            return Err(StateError::Invalid("the job has no message".into()));
        }
        let next = schedule.next_after(now_ms);
        if next.is_none() {
            return Err(StateError::Invalid(match &schedule {
                Schedule::At { .. } => "that time is already past".to_owned(),
                other => format!("{} never runs", other.describe()),
            }));
        }
        let delete_after_run = matches!(schedule, Schedule::At { .. });
        Ok(Self {
            id: new_job_id(),
            name: name.into(),
            enabled: true,
            schedule,
            payload,
            state: CronJobState {
                next_run_at_ms: next,
                ..CronJobState::default()
            },
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            delete_after_run,
        })
    }
}

/// The ways to say when a job runs, as `picoclaw cron add` takes them (`--in`, `--at`,
/// `--every`, `--cron`) and the dashboard's form offers them.
pub const SCHEDULE_KINDS: [&str; 4] = ["in", "at", "every", "cron"];

/// A schedule from what a person typed (`picoclaw cron add` and the dashboard share it, so
/// they accept and refuse the same things with the same words): `kind` is one of
/// [`SCHEDULE_KINDS`]; `in` and `every` take a duration (`10m`, `2h`, `1h 30m`), `at` a local
/// time (`YYYY-MM-DD HH:MM`, in the machine's time zone), `cron` an expression in time zone `tz`
/// (an IANA name; UTC when absent). `now_ms` is when `in` counts from. The error says what is
/// wrong and how to write it.
pub fn parse_schedule(
    kind: &str,
    value: &str,
    tz: Option<&str>,
    now_ms: i64,
) -> Result<Schedule, String> {
    match kind {
        "in" => Ok(Schedule::At {
            at_ms: now_ms.saturating_add(duration_ms(value, "--in")?),
        }),
        "at" => {
            let naive = chrono::NaiveDateTime::parse_from_str(value.trim(), "%Y-%m-%d %H:%M")
                .map_err(|e| {
                    format!(
                        "--at '{value}' is not a time; write it as \"YYYY-MM-DD HH:MM\" \
                         (local time): {e}"
                    )
                })?;
            let local = naive
                .and_local_timezone(chrono::Local)
                .earliest()
                .ok_or_else(|| {
                    format!("--at '{value}' does not exist in the local time zone (a clock change)")
                })?;
            Ok(Schedule::At {
                at_ms: local.timestamp_millis(),
            })
        }
        "every" => Ok(Schedule::Every {
            every_ms: duration_ms(value, "--every")?,
        }),
        "cron" => Ok(Schedule::Cron {
            expr: value.to_owned(),
            tz: tz.map(str::to_owned),
        }),
        _ => Err("say when: --in, --at, --every or --cron".to_owned()),
    }
}

fn duration_ms(text: &str, what: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{what} '{text}' is not a duration; write it like 10m, 2h or 1h 30m: {e}")
    })?;
    Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Where a job's result goes, from `CHANNEL:CHAT` (`telegram:123456`).
pub fn parse_target(to: &str) -> Result<(String, String), String> {
    to.split_once(':')
        .filter(|(c, t)| !c.is_empty() && !t.is_empty())
        .map(|(c, t)| (c.to_owned(), t.to_owned()))
        .ok_or_else(|| format!("--to '{to}' must be CHANNEL:CHAT, such as telegram:123456"))
}

/// A job the owner adds (`picoclaw cron add`, the dashboard's Scheduled jobs page).
#[derive(Clone, Debug, Default)]
pub struct NewJob {
    /// The reminder text, or (with `agent`) the task for the agent.
    pub message: String,
    /// Give the message to the agent as a task instead of sending it as it is.
    pub agent: bool,
    /// Where the result goes: `CHANNEL:CHAT`.
    pub to: Option<String>,
    /// A name for listings (default: the start of the message).
    pub name: Option<String>,
}

impl NewJob {
    /// The job, running on `schedule` (from [`parse_schedule`]), first run computed from
    /// `now_ms`. Refuses a bad target, an empty message, an invalid schedule and a past time,
    /// saying which.
    pub fn build(self, schedule: Schedule, now_ms: i64) -> Result<CronJob, String> {
        let message = self.message.trim();
        let mut payload = CronPayload::new(message);
        if !self.agent {
            payload = payload.delivered();
        }
        if let Some(to) = &self.to {
            let (channel, chat) = parse_target(to)?;
            payload = payload.to(channel, chat);
        }
        let name = self
            .name
            .unwrap_or_else(|| message.chars().take(30).collect());
        CronJob::new(name, schedule, payload, now_ms).map_err(|e| match e {
            StateError::Invalid(msg) => msg,
            other => other.to_string(),
        })
    }
}

/// 16 hex digits from the OS random source (the original's id shape).
pub fn new_job_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to the clock, still unique in practice.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Where jobs are kept.
#[async_trait]
pub trait CronStore: Send + Sync {
    /// Stores a job, replacing one with the same id.
    async fn put_job(&self, job: &CronJob) -> Result<(), StateError>;

    async fn get_job(&self, id: &str) -> Result<Option<CronJob>, StateError>;

    /// Every job, oldest first.
    async fn list_jobs(&self) -> Result<Vec<CronJob>, StateError>;

    /// Removes a job; returns whether it existed.
    async fn remove_job(&self, id: &str) -> Result<bool, StateError>;

    /// Enabled jobs whose next run is at or before `now_ms`, earliest first.
    async fn due_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<CronJob>, StateError>;

    /// Claims the run of job `id` scheduled at `scheduled_ms`: its next run becomes `next_ms`
    /// (with `None`, the job is finished and disabled), but only if it still is enabled and
    /// still scheduled at `scheduled_ms`. Exactly one of several concurrent callers gets `true`.
    async fn claim_run(
        &self,
        id: &str,
        scheduled_ms: i64,
        next_ms: Option<i64>,
    ) -> Result<bool, StateError>;

    /// Records how a run ended (`Err` holds the error text). A finished one-shot job marked
    /// `delete_after_run` is removed.
    async fn record_result(
        &self,
        id: &str,
        ran_at_ms: i64,
        result: Result<(), String>,
    ) -> Result<(), StateError>;

    /// Enables (computing the next run from `now_ms`) or disables a job; the updated job, or
    /// `None` when there is no such job.
    async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        now_ms: i64,
    ) -> Result<Option<CronJob>, StateError> {
        let Some(mut job) = self.get_job(id).await? else {
            return Ok(None);
        };
        job.enabled = enabled;
        job.state.next_run_at_ms = if enabled {
            job.schedule.next_after(now_ms)
        } else {
            None
        };
        if enabled && job.state.next_run_at_ms.is_none() {
            return Err(StateError::Invalid(format!(
                "job {id} cannot be enabled: {} has no run left",
                job.schedule.describe()
            )));
        }
        job.updated_at_ms = now_ms;
        self.put_job(&job).await?;
        Ok(Some(job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn the_original_json_shape_round_trips() {
        let text = r#"{"id":"a1b2c3d4e5f60718","name":"standup","enabled":true,
            "schedule":{"kind":"cron","expr":"0 9 * * 1-5","tz":"Europe/Lisbon"},
            "payload":{"kind":"agent_turn","message":"Remind me of standup","deliver":true,
                       "channel":"telegram","to":"12345"},
            "state":{"nextRunAtMs":1764579600000,"lastStatus":"ok"},
            "createdAtMs":1764000000000,"updatedAtMs":1764000000000,"deleteAfterRun":false}"#;
        let job: CronJob = serde_json::from_str(text).unwrap();
        assert_eq!(
            job.schedule,
            Schedule::Cron {
                expr: "0 9 * * 1-5".into(),
                tz: Some("Europe/Lisbon".into())
            }
        );
        assert_eq!(job.payload.to.as_deref(), Some("12345"));
        assert_eq!(job.state.next_run_at_ms, Some(1_764_579_600_000));
        let again: CronJob = serde_json::from_value(serde_json::to_value(&job).unwrap()).unwrap();
        assert_eq!(again, job);
        assert_eq!(job.payload.owner_chat, None, "the original has no owner");
        let mut owned = job.clone();
        owned.payload = owned.payload.owned_by("telegram:12345");
        let value = serde_json::to_value(&owned).unwrap();
        assert_eq!(value["payload"]["ownerChat"], "telegram:12345");
        assert_eq!(serde_json::from_value::<CronJob>(value).unwrap(), owned);
        let at: Schedule = serde_json::from_str(r#"{"kind":"at","atMs":5}"#).unwrap();
        assert_eq!(at, Schedule::At { at_ms: 5 });
        let every: Schedule = serde_json::from_str(r#"{"kind":"every","everyMs":60000}"#).unwrap();
        assert_eq!(every.describe(), "every 1m");
    }

    #[test]
    fn cron_expressions_honour_the_time_zone() {
        let s = Schedule::Cron {
            expr: "0 9 * * *".into(),
            tz: Some("America/New_York".into()),
        };
        // 2026-11-29 12:00 UTC is 07:00 in New York (EST, UTC-5): next is 09:00 EST = 14:00 UTC.
        let next = s.next_after(ms("2026-11-29T12:00:00Z")).unwrap();
        assert_eq!(next, ms("2026-11-29T14:00:00Z"));
        // Summer (EDT, UTC-4).
        let next = s.next_after(ms("2026-07-01T12:00:00Z")).unwrap();
        assert_eq!(next, ms("2026-07-01T13:00:00Z"));
        // UTC by default; strictly after.
        let utc = Schedule::Cron {
            expr: "*/15 * * * *".into(),
            tz: None,
        };
        assert_eq!(
            utc.next_after(ms("2026-11-29T12:15:00Z")),
            Some(ms("2026-11-29T12:30:00Z"))
        );
        // Six fields: seconds first.
        let secs = Schedule::Cron {
            expr: "30 * * * * *".into(),
            tz: None,
        };
        assert_eq!(
            secs.next_after(ms("2026-11-29T12:00:00Z")),
            Some(ms("2026-11-29T12:00:30Z"))
        );
    }

    #[test]
    fn daylight_saving_changes_neither_skip_nor_double_a_run() {
        // Europe/Lisbon springs forward on 2026-03-29 at 01:00 (to 02:00) and falls back on
        // 2026-10-25 at 02:00 (to 01:00).
        let at_0130 = Schedule::Cron {
            expr: "30 1 * * *".into(),
            tz: Some("Europe/Lisbon".into()),
        };
        // 01:30 does not exist on the 29th of March: the run happens once, just after the change.
        let next = at_0130.next_after(ms("2026-03-28T12:00:00Z")).unwrap();
        assert!(
            next >= ms("2026-03-29T00:59:00Z") && next <= ms("2026-03-29T02:30:00Z"),
            "{next}"
        );
        let after = at_0130.next_after(next).unwrap();
        assert_eq!(
            after,
            ms("2026-03-30T00:30:00Z"),
            "then daily at 01:30 WEST"
        );
        // 01:30 happens twice on the 25th of October: one run, at the first.
        let first = at_0130.next_after(ms("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, ms("2026-10-25T00:30:00Z"));
        let second = at_0130.next_after(first).unwrap();
        assert_eq!(
            second,
            ms("2026-10-26T01:30:00Z"),
            "no second run in the repeated hour"
        );
    }

    #[test]
    fn bad_schedules_are_explained() {
        let bad = |s: Schedule| s.validate().unwrap_err();
        assert!(
            bad(Schedule::Cron {
                expr: "0 9 * *".into(),
                tz: None
            })
            .contains("5 fields")
        );
        assert!(
            bad(Schedule::Cron {
                expr: "61 * * * *".into(),
                tz: None
            })
            .contains("not a valid")
        );
        assert!(
            bad(Schedule::Cron {
                expr: "0 9 * * *".into(),
                tz: Some("Mars/Olympus".into())
            })
            .contains("unknown time zone")
        );
        assert!(bad(Schedule::Every { every_ms: 10 }).contains("at least 1 second"));
        let past = CronJob::new(
            "x",
            Schedule::At { at_ms: 1000 },
            CronPayload::new("hi"),
            5000,
        );
        assert!(matches!(past, Err(StateError::Invalid(m)) if m.contains("past")));
        let empty = CronJob::new(
            "x",
            Schedule::At { at_ms: 9000 },
            CronPayload::new(" "),
            5000,
        );
        assert!(matches!(empty, Err(StateError::Invalid(m)) if m.contains("no message")));
    }

    #[test]
    fn intervals_keep_their_rhythm_and_skip_missed_runs() {
        let s = Schedule::Every { every_ms: 60_000 };
        assert_eq!(s.following(1_000_000, 1_000_500), Some(1_060_000));
        // Ten minutes down: the next run is the next slot after now, not ten runs at once.
        assert_eq!(s.following(1_000_000, 1_600_000), Some(1_660_000));
        assert_eq!(Schedule::At { at_ms: 5 }.following(5, 6), None);
    }

    #[test]
    fn schedules_and_jobs_are_read_as_picoclaw_cron_add_reads_them() {
        let now = ms("2026-11-29T12:00:00Z");
        assert_eq!(
            parse_schedule("in", " 1h 30m ", None, now),
            Ok(Schedule::At {
                at_ms: now + 5_400_000
            })
        );
        assert_eq!(
            parse_schedule("every", "1d", Some("Europe/Lisbon"), now),
            Ok(Schedule::Every {
                every_ms: 86_400_000
            })
        );
        assert_eq!(
            parse_schedule("cron", "0 9 * * *", Some("UTC"), now),
            Ok(Schedule::Cron {
                expr: "0 9 * * *".into(),
                tz: Some("UTC".into())
            })
        );
        assert!(
            matches!(parse_schedule("at", "2026-12-01 09:00", None, now),
            Ok(Schedule::At { at_ms }) if at_ms > now)
        );
        let err = |kind: &str, value: &str| parse_schedule(kind, value, None, now).unwrap_err();
        assert!(err("in", "soon").starts_with("--in 'soon' is not a duration; write it like"));
        assert!(err("every", "often").starts_with("--every 'often' is not a duration"));
        assert!(err("at", "tomorrow").starts_with("--at 'tomorrow' is not a time"));
        assert_eq!(err("", ""), "say when: --in, --at, --every or --cron");

        let job = |to: Option<&str>, agent: bool| {
            NewJob {
                message: "  Water the plants ".into(),
                agent,
                to: to.map(str::to_owned),
                name: None,
            }
            .build(Schedule::Every { every_ms: 60_000 }, now)
        };
        let reminder = job(Some("telegram:42"), false).unwrap();
        assert_eq!(reminder.name, "Water the plants");
        assert!(reminder.payload.deliver);
        assert_eq!(reminder.payload.to.as_deref(), Some("42"));
        assert!(!job(None, true).unwrap().payload.deliver);
        assert_eq!(
            job(Some("telegram"), false).unwrap_err(),
            "--to 'telegram' must be CHANNEL:CHAT, such as telegram:123456"
        );
        assert_eq!(
            parse_target(":42"),
            Err("--to ':42' must be CHANNEL:CHAT, such as telegram:123456".into())
        );
    }

    #[test]
    fn new_jobs_get_distinct_ids_and_a_first_run() {
        let now = ms("2026-11-29T12:00:00Z");
        let a = CronJob::new(
            "a",
            Schedule::Every { every_ms: 300_000 },
            CronPayload::new("x"),
            now,
        )
        .unwrap();
        let b = CronJob::new(
            "b",
            Schedule::At { at_ms: now + 10 },
            CronPayload::new("y"),
            now,
        )
        .unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 16);
        assert_eq!(a.state.next_run_at_ms, Some(now + 300_000));
        assert!(!a.delete_after_run && b.delete_after_run);
    }
}
