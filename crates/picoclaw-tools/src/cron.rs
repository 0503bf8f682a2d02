//! `cron(action, message, at_seconds, every_seconds, cron_expr, job_id, deliver)`, with the
//! original PicoClaw's names and meaning, plus `tz` for cron expressions: schedule reminders and
//! tasks, list, remove, enable and disable them. Jobs go to the [`CronStore`]; the gateway runs
//! them and delivers to the conversation the job was created in.
//!
//! What the model may do with it is bounded:
//! - a turn started by a cron job or the heartbeat (or a sub-agent of one) cannot add jobs, so a
//!   job cannot breed jobs that survive restarts and spend tokens;
//! - a chat holds at most `tools.cron.max_jobs` jobs (default 20);
//! - the tool lists, removes, enables and disables only the jobs of the chat it is called from
//!   (`channel:chat_id`); the owner's `picoclaw cron` sees and manages every job.

use crate::args::parse;
use crate::{Tool, ToolContext, ToolOutput, TurnOrigin};
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use picoclaw_state::{CronJob, CronPayload, CronStore, Schedule, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Limits of the `cron` tool: `tools.cron` in config.json.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CronConfig {
    /// Jobs one chat may have (`tools.cron.max_jobs`).
    pub max_jobs: usize,
}

impl Default for CronConfig {
    fn default() -> Self {
        Self {
            max_jobs: Self::DEFAULT_MAX_JOBS,
        }
    }
}

impl CronConfig {
    pub const DEFAULT_MAX_JOBS: usize = 20;

    /// Reads `tools.cron` (the original PicoClaw's section; its other keys are not picoclaw's
    /// business and are left alone): `max_jobs`, a whole number. A wrong type is an error
    /// naming the key.
    pub fn from_json(cron: &Value) -> Result<Self, String> {
        let mut config = Self::default();
        match cron.get("max_jobs") {
            None | Some(Value::Null) => {}
            Some(v) => {
                let n = v.as_u64().ok_or_else(|| {
                    format!(
                        "tools.cron.max_jobs must be a whole number (the jobs one chat may have; \
                         default {}), not {v}",
                        Self::DEFAULT_MAX_JOBS
                    )
                })?;
                config.max_jobs = usize::try_from(n).unwrap_or(usize::MAX);
            }
        }
        Ok(config)
    }

    pub fn max_jobs(mut self, n: usize) -> Self {
        self.max_jobs = n;
        self
    }
}

/// Scheduling for the agent.
#[derive(Clone)]
pub struct CronTool {
    store: Arc<dyn CronStore>,
    config: CronConfig,
    /// Adds run one at a time (sub-agents of one chat run side by side), so counting a chat's
    /// jobs and adding one cannot interleave past the limit.
    adding: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for CronTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronTool")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CronTool {
    pub fn new(store: Arc<dyn CronStore>) -> Self {
        Self {
            store,
            config: CronConfig::default(),
            adding: Arc::default(),
        }
    }

    pub fn with_config(mut self, config: CronConfig) -> Self {
        self.config = config;
        self
    }
}

#[derive(Deserialize)]
struct Args {
    action: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    at_seconds: Option<f64>,
    #[serde(default)]
    every_seconds: Option<f64>,
    #[serde(default)]
    cron_expr: Option<String>,
    #[serde(default)]
    tz: Option<String>,
    #[serde(default)]
    job_id: Option<String>,
    #[serde(default)]
    deliver: Option<bool>,
}

/// `name (id: …, schedule, next …)` for listings.
pub fn describe_job(job: &CronJob) -> String {
    let next = job
        .state
        .next_run_at_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "-".into());
    format!(
        "{} (id: {}, {}, next: {}{}{})",
        job.name,
        job.id,
        job.schedule.describe(),
        next,
        if job.enabled { "" } else { ", disabled" },
        if job.payload.deliver {
            ", reminder"
        } else {
            ", agent task"
        },
    )
}

/// The chat a tool call comes from, as jobs record it: `channel:chat_id`, or the session for a
/// caller without a chat (an embedder's agent).
fn chat_of(ctx: &ToolContext) -> String {
    match (&ctx.channel, &ctx.chat_id) {
        (Some(c), Some(t)) => format!("{c}:{t}"),
        _ => format!("session:{}", ctx.session_key),
    }
}

/// The chat a job belongs to: the one that created it, or, for a job without that record (made
/// with the owner's CLI, or imported from the original's jobs.json), the chat it reports to.
pub fn job_chat(job: &CronJob) -> Option<String> {
    job.payload
        .owner_chat
        .clone()
        .or_else(|| match (&job.payload.channel, &job.payload.to) {
            (Some(c), Some(t)) => Some(format!("{c}:{t}")),
            _ => None,
        })
}

#[async_trait]
impl Tool for CronTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "cron",
            "Schedule reminders or tasks: at_seconds (once, from now), every_seconds (repeat), \
             or cron_expr (+ tz). deliver=false makes the message a task for you.",
            json!({
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["add", "list", "remove", "enable", "disable"]},
                    "message": {"type": "string", "description": "Reminder text or task"},
                    "at_seconds": {"type": "integer"},
                    "every_seconds": {"type": "integer", "description": "At least 60"},
                    "cron_expr": {"type": "string", "description": "min hour day month weekday"},
                    "tz": {"type": "string", "description": "e.g. Europe/Lisbon; default UTC"},
                    "job_id": {"type": "string"},
                    "deliver": {"type": "boolean", "description": "Default true"}
                },
                "required": ["action"]
            }),
        )
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: Args = match parse("cron", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let chat = chat_of(ctx);
        match args.action.as_str() {
            "add" => self.add(ctx, &chat, args).await,
            "list" => match self.jobs_of(&chat).await {
                Ok(jobs) if jobs.is_empty() => ToolOutput::ok("No scheduled jobs in this chat."),
                Ok(jobs) => {
                    let mut out = format!("{} scheduled job(s):\n", jobs.len());
                    for job in &jobs {
                        out.push_str("- ");
                        out.push_str(&describe_job(job));
                        out.push('\n');
                    }
                    ToolOutput::ok(out)
                }
                Err(e) => ToolOutput::error(format!("cron: {e}")),
            },
            "remove" => {
                let Some(id) = args.job_id.filter(|i| !i.trim().is_empty()) else {
                    return ToolOutput::error(
                        "cron: job_id is required for remove (see action list)",
                    );
                };
                let id = id.trim();
                match self.own_job(&chat, id).await {
                    Ok(true) => {}
                    Ok(false) => return no_such_job(id),
                    Err(e) => return ToolOutput::error(format!("cron: {e}")),
                }
                match self.store.remove_job(id).await {
                    Ok(true) => ToolOutput::ok(format!("Removed job {id}.")),
                    Ok(false) => no_such_job(id),
                    Err(e) => ToolOutput::error(format!("cron: {e}")),
                }
            }
            action @ ("enable" | "disable") => {
                let Some(id) = args.job_id.filter(|i| !i.trim().is_empty()) else {
                    return ToolOutput::error(format!("cron: job_id is required for {action}"));
                };
                let id = id.trim();
                match self.own_job(&chat, id).await {
                    Ok(true) => {}
                    Ok(false) => return no_such_job(id),
                    Err(e) => return ToolOutput::error(format!("cron: {e}")),
                }
                let on = action == "enable";
                match self.store.set_enabled(id, on, now_ms()).await {
                    Ok(Some(job)) => ToolOutput::ok(format!("{} {action}d.", describe_job(&job))),
                    Ok(None) => no_such_job(id),
                    Err(e) => ToolOutput::error(format!("cron: {e}")),
                }
            }
            other => ToolOutput::error(format!(
                "cron: unknown action '{other}'; use add, list, remove, enable or disable"
            )),
        }
    }
}

fn no_such_job(id: &str) -> ToolOutput {
    ToolOutput::error(format!("cron: no job {id} in this chat (see action list)"))
}

impl CronTool {
    /// The jobs of `chat`, oldest first.
    async fn jobs_of(&self, chat: &str) -> Result<Vec<CronJob>, picoclaw_state::StateError> {
        let mut jobs = self.store.list_jobs().await?;
        jobs.retain(|job| job_chat(job).as_deref() == Some(chat));
        Ok(jobs)
    }

    /// Whether job `id` exists and belongs to `chat`.
    async fn own_job(&self, chat: &str, id: &str) -> Result<bool, picoclaw_state::StateError> {
        Ok(self
            .store
            .get_job(id)
            .await?
            .is_some_and(|job| job_chat(&job).as_deref() == Some(chat)))
    }

    async fn add(&self, ctx: &ToolContext, chat: &str, args: Args) -> ToolOutput {
        if ctx.origin.is_scheduled() {
            let what = match ctx.origin {
                TurnOrigin::Heartbeat => "the heartbeat",
                _ => "a scheduled job",
            };
            return ToolOutput::error(format!(
                "cron: this turn was started by {what}, and scheduled turns cannot add jobs (a job \
                 may not create more jobs). Say in your answer what should be scheduled; the user \
                 can ask for it in their chat."
            ));
        }
        let Some(message) = args.message.filter(|m| !m.trim().is_empty()) else {
            return ToolOutput::error("cron: message is required for add");
        };
        let now = now_ms();
        // As the original: at_seconds wins over every_seconds over cron_expr; zeros mean unset.
        let schedule = if let Some(at) = args.at_seconds.filter(|s| *s > 0.0) {
            Schedule::At {
                at_ms: now + (at * 1000.0) as i64,
            }
        } else if let Some(every) = args.every_seconds.filter(|s| *s > 0.0) {
            if every < 60.0 {
                return ToolOutput::error("cron: every_seconds must be at least 60");
            }
            Schedule::Every {
                every_ms: (every * 1000.0) as i64,
            }
        } else if let Some(expr) = args.cron_expr.filter(|e| !e.trim().is_empty()) {
            Schedule::Cron {
                expr: expr.trim().to_owned(),
                tz: args.tz.filter(|t| !t.trim().is_empty()),
            }
        } else {
            return ToolOutput::error(
                "cron: one of at_seconds, every_seconds or cron_expr is required",
            );
        };
        let mut payload = CronPayload::new(message.trim()).owned_by(chat);
        // Made by another agent than the default (`agent:<id>:...`): that agent runs it.
        if let Some(rest) = ctx.session_key.as_str().strip_prefix("agent:")
            && let Some((agent, _)) = rest.split_once(':')
        {
            payload = payload.for_agent(agent);
        }
        if args.deliver.unwrap_or(true) {
            payload = payload.delivered();
        }
        // The CLI, the API and the dashboard answer in place; a job made there has no chat to
        // go back to.
        let target = match (&ctx.channel, &ctx.chat_id) {
            (Some(c), Some(t)) if !crate::answers_in_place(c) => {
                payload = payload.to(c.clone(), t.clone());
                Some(format!("{c}:{t}"))
            }
            _ => None,
        };
        let name: String = message.trim().chars().take(30).collect();
        let job = match CronJob::new(name, schedule, payload, now) {
            Ok(j) => j,
            Err(e) => return ToolOutput::error(format!("cron: {e}")),
        };
        let _one_at_a_time = self.adding.lock().await;
        let held = match self.jobs_of(chat).await {
            Ok(jobs) => jobs.len(),
            Err(e) => return ToolOutput::error(format!("cron: {e}")),
        };
        let max = self.config.max_jobs;
        if held >= max {
            return ToolOutput::error(format!(
                "cron: this chat already has {held} scheduled job(s) and the limit is {max} \
                 (tools.cron.max_jobs in config.json); remove one first (action list, then \
                 remove), or ask the owner to raise tools.cron.max_jobs"
            ));
        }
        if let Err(e) = self.store.put_job(&job).await {
            return ToolOutput::error(format!("cron: {e}"));
        }
        let mut out = format!("Scheduled: {}", describe_job(&job));
        match target {
            Some(t) => out.push_str(&format!(". It will be sent to {t}.")),
            None => out.push_str(
                ". This conversation has no chat to send to: the gateway runs the job but only \
                 logs its result.",
            ),
        }
        ToolOutput::ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoclaw_api::SessionKey;
    use picoclaw_state::InMemoryStore;

    fn tool() -> (Arc<InMemoryStore>, CronTool) {
        let store = Arc::new(InMemoryStore::new());
        (store.clone(), CronTool::new(store))
    }

    fn chat() -> ToolContext {
        ToolContext::new(SessionKey::new("telegram:42")).with_chat("telegram", "42")
    }

    fn in_chat(channel: &str, chat: &str) -> ToolContext {
        ToolContext::new(SessionKey::new(format!("{channel}:{chat}"))).with_chat(channel, chat)
    }

    fn hourly(message: &str) -> Value {
        json!({"action": "add", "message": message, "every_seconds": 3600})
    }

    /// The ids in a listing, in order.
    fn listed_ids(out: &ToolOutput) -> Vec<String> {
        out.content
            .lines()
            .filter_map(|l| l.split("(id: ").nth(1))
            .filter_map(|rest| rest.split(',').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn max_jobs_is_read_from_tools_cron() {
        assert_eq!(CronConfig::default().max_jobs, 20);
        let read = |v: Value| CronConfig::from_json(&v);
        assert_eq!(read(json!({})).unwrap().max_jobs, 20);
        assert_eq!(read(Value::Null).unwrap().max_jobs, 20);
        // The original's own keys in the section change nothing here.
        assert_eq!(
            read(json!({"exec_timeout_minutes": 5})).unwrap().max_jobs,
            20
        );
        assert_eq!(read(json!({"max_jobs": 5})).unwrap().max_jobs, 5);
        assert_eq!(read(json!({"max_jobs": 0})).unwrap().max_jobs, 0);
        for bad in [json!("5"), json!(-1), json!(2.5), json!(true)] {
            let err = read(json!({ "max_jobs": bad })).unwrap_err();
            assert!(err.contains("tools.cron.max_jobs"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn cron_and_heartbeat_turns_cannot_add_jobs() {
        let (store, t) = tool();
        for origin in [TurnOrigin::Cron, TurnOrigin::Heartbeat] {
            for args in [
                hourly("Schedule yet another run"),
                json!({"action": "add", "message": "x", "at_seconds": 60}),
                json!({"action": "add", "message": "x", "cron_expr": "* * * * *"}),
                json!({"action": "add"}),
            ] {
                let out = t.call(&chat().with_origin(origin), args.clone()).await;
                assert!(
                    out.is_error && out.content.contains("scheduled turns cannot add jobs"),
                    "{origin:?} {args}: {out:?}"
                );
            }
        }
        assert!(store.list_jobs().await.unwrap().is_empty(), "nothing added");
        // The user's own turn in the same chat adds; a scheduled turn still lists and removes.
        let out = t.call(&chat(), hourly("Drink water")).await;
        assert!(!out.is_error, "{out:?}");
        let id = store.list_jobs().await.unwrap()[0].id.clone();
        let scheduled = chat().with_origin(TurnOrigin::Cron);
        let listed = t.call(&scheduled, json!({"action": "list"})).await;
        assert_eq!(listed_ids(&listed), std::slice::from_ref(&id));
        let out = t
            .call(&scheduled, json!({"action": "remove", "job_id": id}))
            .await;
        assert!(!out.is_error, "{out:?}");
        assert!(TurnOrigin::Cron.is_scheduled() && TurnOrigin::Heartbeat.is_scheduled());
        assert!(!TurnOrigin::Conversation.is_scheduled());
    }

    #[tokio::test]
    async fn a_chat_holds_at_most_max_jobs() {
        let store = Arc::new(InMemoryStore::new());
        let t = CronTool::new(store.clone()).with_config(CronConfig::default().max_jobs(3));
        for i in 0..3 {
            let out = t.call(&chat(), hourly(&format!("job {i}"))).await;
            assert!(!out.is_error, "{out:?}");
        }
        let out = t.call(&chat(), hourly("one too many")).await;
        assert!(out.is_error, "{out:?}");
        assert!(
            out.content.contains("limit is 3") && out.content.contains("tools.cron.max_jobs"),
            "{out:?}"
        );
        assert_eq!(store.list_jobs().await.unwrap().len(), 3);
        // Another chat has a limit of its own.
        let out = t
            .call(&in_chat("telegram", "7"), hourly("someone else's"))
            .await;
        assert!(!out.is_error, "{out:?}");
        // Room again once one is removed.
        let listed = t.call(&chat(), json!({"action": "list"})).await;
        let first = listed_ids(&listed)[0].clone();
        let out = t
            .call(&chat(), json!({"action": "remove", "job_id": first}))
            .await;
        assert!(!out.is_error, "{out:?}");
        let out = t.call(&chat(), hourly("fits again")).await;
        assert!(!out.is_error, "{out:?}");
        assert_eq!(store.list_jobs().await.unwrap().len(), 4);

        // The default: 20.
        let (store, t) = tool();
        let me = in_chat("discord", "9");
        for i in 0..20 {
            let out = t.call(&me, hourly(&format!("job {i}"))).await;
            assert!(!out.is_error, "{i}: {out:?}");
        }
        let out = t.call(&me, hourly("the 21st")).await;
        assert!(
            out.is_error && out.content.contains("limit is 20"),
            "{out:?}"
        );
        assert_eq!(store.list_jobs().await.unwrap().len(), 20);
    }

    #[tokio::test]
    async fn a_job_made_in_another_agents_conversation_records_that_agent() {
        let (store, t) = tool();
        let work = ToolContext::new(SessionKey::new("agent:work:telegram:-500"))
            .with_chat("telegram", "-500");
        let made = listed_ids(&t.call(&work, hourly("work's")).await)[0].clone();
        let job = store.get_job(&made).await.unwrap().unwrap();
        assert_eq!(job.payload.agent.as_deref(), Some("work"));
        // The default agent's conversations keep no agent: it runs them.
        let home = in_chat("telegram", "1");
        let made = listed_ids(&t.call(&home, hourly("home's")).await)[0].clone();
        assert_eq!(
            store.get_job(&made).await.unwrap().unwrap().payload.agent,
            None
        );
    }

    #[tokio::test]
    async fn the_tool_lists_and_removes_only_the_current_chats_jobs() {
        let (store, t) = tool();
        let alice = in_chat("telegram", "1");
        let bob = in_chat("telegram", "2");
        let cli = ToolContext::new(SessionKey::new("cli:default")).with_chat("cli", "cli:default");
        let api = ToolContext::new(SessionKey::new("api:x")).with_chat("api", "api:x");
        let id_of = |out: &ToolOutput| listed_ids(out)[0].clone();
        let a = id_of(&t.call(&alice, hourly("alice's")).await);
        let b = id_of(&t.call(&bob, hourly("bob's")).await);
        let c = id_of(&t.call(&cli, hourly("from the terminal")).await);
        // Jobs without an owner record (the owner's CLI, the original's jobs.json) belong to the
        // chat they report to; one that reports nowhere belongs to no chat.
        let legacy = CronJob::new(
            "legacy",
            Schedule::Every {
                every_ms: 3_600_000,
            },
            CronPayload::new("old").to("telegram", "1"),
            now_ms(),
        )
        .unwrap();
        let nowhere = CronJob::new(
            "nowhere",
            Schedule::Every {
                every_ms: 3_600_000,
            },
            CronPayload::new("owner's"),
            now_ms(),
        )
        .unwrap();
        store.put_job(&legacy).await.unwrap();
        store.put_job(&nowhere).await.unwrap();

        let list = |ctx: ToolContext| {
            let t = t.clone();
            async move {
                let mut ids = listed_ids(&t.call(&ctx, json!({"action": "list"})).await);
                ids.sort();
                ids
            }
        };
        let mut want_alice = vec![a.clone(), legacy.id.clone()];
        want_alice.sort();
        assert_eq!(list(alice.clone()).await, want_alice);
        assert_eq!(list(bob.clone()).await, std::slice::from_ref(&b));
        assert_eq!(list(cli.clone()).await, std::slice::from_ref(&c));
        assert!(list(api.clone()).await.is_empty());
        let out = t.call(&api, json!({"action": "list"})).await;
        assert_eq!(out.content, "No scheduled jobs in this chat.");

        // Bob cannot touch Alice's jobs, nor the owner's.
        for id in [&a, &legacy.id, &nowhere.id, &c] {
            for action in ["remove", "disable", "enable"] {
                let out = t.call(&bob, json!({"action": action, "job_id": id})).await;
                assert!(
                    out.is_error && out.content.contains("no job"),
                    "{action} {id}: {out:?}"
                );
            }
        }
        let all = store.list_jobs().await.unwrap();
        assert_eq!(all.len(), 5, "nothing removed");
        assert!(all.iter().all(|j| j.enabled), "nothing disabled");
        // Alice can.
        for action in ["disable", "enable", "remove"] {
            let out = t
                .call(&alice, json!({"action": action, "job_id": legacy.id}))
                .await;
            assert!(!out.is_error, "{action}: {out:?}");
        }
        assert_eq!(store.list_jobs().await.unwrap().len(), 4);
        // The job records the chat that made it.
        let made = store.get_job(&c).await.unwrap().unwrap();
        assert_eq!(made.payload.owner_chat.as_deref(), Some("cli:cli:default"));
        assert_eq!(made.payload.channel, None, "the terminal is not sent to");
    }

    #[tokio::test]
    async fn add_list_disable_enable_remove() {
        let (store, t) = tool();
        let out = t
            .call(
                &chat(),
                json!({"action": "add", "message": "Take the pizza out", "at_seconds": 600}),
            )
            .await;
        assert!(!out.is_error, "{out:?}");
        assert!(out.content.contains("sent to telegram:42"), "{out:?}");
        let jobs = store.list_jobs().await.unwrap();
        assert_eq!(jobs.len(), 1);
        let job = &jobs[0];
        assert!(job.payload.deliver);
        assert_eq!(job.payload.to.as_deref(), Some("42"));
        let due = job.state.next_run_at_ms.unwrap() - now_ms();
        assert!((595_000..=600_000).contains(&due), "{due}");

        let out = t.call(&chat(), json!({"action": "add", "message": "Summarise the news", "cron_expr": "0 9 * * 1-5", "tz": "Europe/Lisbon", "deliver": false})).await;
        assert!(!out.is_error, "{out:?}");
        let listed = t.call(&chat(), json!({"action": "list"})).await;
        assert!(
            listed.content.starts_with("2 scheduled job(s)"),
            "{listed:?}"
        );
        assert!(
            listed
                .content
                .contains("cron \"0 9 * * 1-5\" (Europe/Lisbon)"),
            "{listed:?}"
        );
        assert!(listed.content.contains("agent task"), "{listed:?}");

        let id = job.id.clone();
        let out = t
            .call(&chat(), json!({"action": "disable", "job_id": id}))
            .await;
        assert!(out.content.contains("disabled"), "{out:?}");
        assert!(!store.get_job(&id).await.unwrap().unwrap().enabled);
        let out = t
            .call(&chat(), json!({"action": "enable", "job_id": id}))
            .await;
        assert!(!out.is_error, "{out:?}");
        let out = t
            .call(&chat(), json!({"action": "remove", "job_id": id}))
            .await;
        assert!(out.content.starts_with("Removed"), "{out:?}");
        let out = t
            .call(&chat(), json!({"action": "remove", "job_id": id}))
            .await;
        assert!(out.is_error);
    }

    #[tokio::test]
    async fn bad_requests_are_explained() {
        let (_, t) = tool();
        let cases = [
            (
                json!({"action": "add", "at_seconds": 60}),
                "message is required",
            ),
            (
                json!({"action": "add", "message": "x"}),
                "one of at_seconds",
            ),
            (
                json!({"action": "add", "message": "x", "at_seconds": 0, "every_seconds": 0}),
                "one of at_seconds",
            ),
            (
                json!({"action": "add", "message": "x", "every_seconds": 5}),
                "at least 60",
            ),
            (
                json!({"action": "add", "message": "x", "cron_expr": "0 9 * *"}),
                "5 fields",
            ),
            (
                json!({"action": "add", "message": "x", "cron_expr": "0 9 * * *", "tz": "Mars/Base"}),
                "unknown time zone",
            ),
            (json!({"action": "remove"}), "job_id is required"),
            (json!({"action": "snooze"}), "unknown action"),
            (json!({}), "invalid arguments"),
        ];
        for (args, want) in cases {
            let out = t.call(&chat(), args.clone()).await;
            assert!(
                out.is_error && out.content.contains(want),
                "{args}: {out:?}"
            );
        }
        // The CLI's conversation is not a chat the gateway can send to: no target.
        let out = t
            .call(
                &ToolContext::new(SessionKey::new("cli:default")).with_chat("cli", "cli:default"),
                json!({"action": "add", "message": "y", "every_seconds": 3600}),
            )
            .await;
        assert!(
            !out.is_error && out.content.contains("no chat to send to"),
            "{out:?}"
        );
        // No chat: scheduled, and said so.
        let out = t
            .call(
                &ToolContext::new(SessionKey::new("cli:default")),
                json!({"action": "add", "message": "x", "every_seconds": 3600}),
            )
            .await;
        assert!(
            !out.is_error && out.content.contains("no chat to send to"),
            "{out:?}"
        );
    }
}
