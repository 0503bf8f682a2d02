//! `cron(action, message, at_seconds, every_seconds, cron_expr, job_id, deliver)`, with the
//! original PicoClaw's names and meaning, plus `tz` for cron expressions: schedule reminders and
//! tasks, list, remove, enable and disable them. Jobs go to the [`CronStore`]; the gateway runs
//! them and delivers to the conversation the job was created in.

use crate::args::parse;
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_state::{CronJob, CronPayload, CronStore, Schedule, now_ms};
use picoclaw_types::ToolSpec;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Scheduling for the agent.
#[derive(Clone)]
pub struct CronTool {
    store: Arc<dyn CronStore>,
}

impl std::fmt::Debug for CronTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronTool").finish_non_exhaustive()
    }
}

impl CronTool {
    pub fn new(store: Arc<dyn CronStore>) -> Self {
        Self { store }
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
        match args.action.as_str() {
            "add" => self.add(ctx, args).await,
            "list" => match self.store.list_jobs().await {
                Ok(jobs) if jobs.is_empty() => ToolOutput::ok("No scheduled jobs."),
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
                match self.store.remove_job(id.trim()).await {
                    Ok(true) => ToolOutput::ok(format!("Removed job {id}.")),
                    Ok(false) => ToolOutput::error(format!("cron: no job {id} (see action list)")),
                    Err(e) => ToolOutput::error(format!("cron: {e}")),
                }
            }
            action @ ("enable" | "disable") => {
                let Some(id) = args.job_id.filter(|i| !i.trim().is_empty()) else {
                    return ToolOutput::error(format!("cron: job_id is required for {action}"));
                };
                let on = action == "enable";
                match self.store.set_enabled(id.trim(), on, now_ms()).await {
                    Ok(Some(job)) => ToolOutput::ok(format!("{} {action}d.", describe_job(&job))),
                    Ok(None) => ToolOutput::error(format!("cron: no job {id} (see action list)")),
                    Err(e) => ToolOutput::error(format!("cron: {e}")),
                }
            }
            other => ToolOutput::error(format!(
                "cron: unknown action '{other}'; use add, list, remove, enable or disable"
            )),
        }
    }
}

impl CronTool {
    async fn add(&self, ctx: &ToolContext, args: Args) -> ToolOutput {
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
        let mut payload = CronPayload::new(message.trim());
        if args.deliver.unwrap_or(true) {
            payload = payload.delivered();
        }
        // The CLI and the API answer in place; a job made there has no chat to go back to.
        let target = match (&ctx.channel, &ctx.chat_id) {
            (Some(c), Some(t)) if !matches!(c.as_str(), "cli" | "api") => {
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
    use picoclaw_state::InMemoryStore;
    use picoclaw_types::SessionKey;

    fn tool() -> (Arc<InMemoryStore>, CronTool) {
        let store = Arc::new(InMemoryStore::new());
        (store.clone(), CronTool::new(store))
    }

    fn chat() -> ToolContext {
        ToolContext::new(SessionKey::new("telegram:42")).with_chat("telegram", "42")
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
