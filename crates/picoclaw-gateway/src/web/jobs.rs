//! The Scheduled jobs page: every job of the cron store (the owner's, and those the agent's
//! `cron` tool made in any chat), a form to add one with the same rules and messages as
//! `picoclaw cron add` ([`picoclaw_state::parse_schedule`], [`picoclaw_state::NewJob`]), and
//! per job: enable, disable, remove, run now.
//!
//! "Run now" moves the job's next run to now with the store's compare-and-set
//! ([`picoclaw_state::CronStore::claim_run`]), so the gateway's cron runner (which looks for
//! due jobs every second) runs it once, claimed like any run; afterwards a repeating job goes
//! on with its schedule (an interval counts from this run), a one-time job is done.

use super::{Ctx, Page, Web, back_to, csrf_field, layout, when};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use picoclaw_state::{CronJob, NewJob, Schedule, StateError, now_ms};

pub(super) fn routes() -> axum::Router<Web> {
    axum::Router::new()
        .route(Page::Jobs.path(), get(show))
        .route("/ui/jobs/add", post(add))
        .route("/ui/jobs/{id}/enable", post(enable))
        .route("/ui/jobs/{id}/disable", post(disable))
        .route("/ui/jobs/{id}/remove", post(remove))
        .route("/ui/jobs/{id}/run", post(run_now))
}

/// Longest message a job takes from the form.
const MAX_MESSAGE_CHARS: usize = 8000;
/// Longest name, schedule value, time zone or target.
const MAX_FIELD_CHARS: usize = 200;

async fn show(State(web): State<Web>, axum::Extension(ctx): axum::Extension<Ctx>) -> Response {
    let jobs = match web.api.store.list_jobs().await {
        Ok(jobs) => jobs,
        Err(e) => return super::failure(&ctx, Page::Jobs, "cannot read the scheduled jobs", e),
    };
    let body = html! {
        h1 { (Page::Jobs.title()) }
        p.muted {
            "The gateway runs these jobs: a reminder is sent as it is, an agent task is a turn \
             of the agent whose answer is sent. Jobs the agent scheduled from a chat are here too."
        }
        @if jobs.is_empty() {
            p.muted #job-empty { "No scheduled jobs yet: add one below." }
        } @else {
            (job_table(&ctx, &jobs))
        }
        (add_form(&ctx))
    };
    layout(&ctx, Page::Jobs, body)
}

fn target(job: &CronJob) -> Option<String> {
    match (&job.payload.channel, &job.payload.to) {
        (Some(c), Some(t)) if !c.is_empty() && !t.is_empty() => Some(format!("{c}:{t}")),
        _ => None,
    }
}

fn job_table(ctx: &Ctx, jobs: &[CronJob]) -> Markup {
    html! {
        div.table-wrap {
            table #job-list {
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Schedule" }
                        th scope="col" { "Next run" }
                        th scope="col" { "Last run" }
                        th scope="col" { "Enabled" }
                        th scope="col" { "Sent to" }
                        th scope="col" { "Does" }
                        th scope="col" { "Actions" }
                    }
                }
                tbody {
                    @for job in jobs { (job_row(ctx, job)) }
                }
            }
        }
    }
}

fn job_row(ctx: &Ctx, job: &CronJob) -> Markup {
    let name = &job.name;
    let action = |what: &str| format!("/ui/jobs/{}/{what}", super::encode_query(&job.id));
    html! {
        tr data-job=(job.id) {
            th scope="row" {
                (name)
                br;
                span.muted.mono.fine { (job.id) }
            }
            td.job-schedule { (job.schedule.describe()) }
            td.job-next {
                @match job.state.next_run_at_ms {
                    Some(ms) if job.enabled => (when(ms)),
                    _ => span.muted { "-" },
                }
            }
            td.job-last {
                @match job.state.last_run_at_ms {
                    Some(ms) => {
                        (when(ms)) " "
                        @match job.state.last_status.as_deref() {
                            Some("ok") => span.badge.ok { "ok" },
                            Some(status) => span.badge.error { (status) },
                            None => "",
                        }
                        @if let Some(error) = &job.state.last_error {
                            br;
                            span.fine.job-error { (error.chars().take(300).collect::<String>()) }
                        }
                    }
                    None => span.muted { "never" },
                }
            }
            td.job-enabled {
                @if job.enabled { span.badge.ok { "on" } } @else { span.badge { "off" } }
            }
            td.job-target {
                @match target(job) {
                    Some(t) => span.mono { (t) },
                    None => span.muted { "nowhere (runs only)" },
                }
                @if let Some(chat) = &job.payload.owner_chat {
                    br;
                    span.muted.fine { "made in " (chat) }
                }
            }
            td.job-does {
                @if job.payload.deliver { "Reminder: " } @else { "Agent task: " }
                span.job-message { (job.payload.message.chars().take(300).collect::<String>()) }
                @if let Some(agent) = &job.payload.agent {
                    br;
                    span.muted.fine { "agent " (agent) }
                }
            }
            td.job-actions {
                @if job.enabled {
                    form.inline method="post" action=(action("run")) {
                        (csrf_field(ctx))
                        button.secondary type="submit" aria-label={"Run " (name) " now"} {
                            "Run now"
                        }
                    }
                    form.inline method="post" action=(action("disable")) {
                        (csrf_field(ctx))
                        button.secondary type="submit" aria-label={"Disable " (name)} {
                            "Disable"
                        }
                    }
                } @else {
                    form.inline method="post" action=(action("enable")) {
                        (csrf_field(ctx))
                        button.secondary type="submit" aria-label={"Enable " (name)} {
                            "Enable"
                        }
                    }
                }
                form.inline method="post" action=(action("remove"))
                    data-confirm={"Remove the job \u{201c}" (name) "\u{201d}?"} {
                    (csrf_field(ctx))
                    button.danger type="submit" aria-label={"Remove " (name)} { "Remove" }
                }
            }
        }
    }
}

fn add_form(ctx: &Ctx) -> Markup {
    // `at` is read in the gateway's time zone (as the CLI reads it in the machine's).
    let offset = chrono::Local::now().format("%:z").to_string();
    html! {
        form #job-add method="post" action="/ui/jobs/add" {
            (csrf_field(ctx))
            fieldset {
                legend { "Add a job" }
                label for="job-message" { "Message: the reminder, or the task for the agent" }
                textarea #job-message name="message" required rows="2"
                    maxlength=(MAX_MESSAGE_CHARS) {}
                div.row {
                    div {
                        label for="job-kind" { "When" }
                        select #job-kind name="kind" aria-describedby="job-when-help" {
                            option value="in" { "once, in (a duration)" }
                            option value="at" { "once, at (a time)" }
                            option value="every" { "every (a duration)" }
                            option value="cron" { "on a calendar (cron)" }
                        }
                    }
                    div {
                        label for="job-when" { "Duration, time or expression" }
                        input #job-when type="text" name="when" required
                            maxlength=(MAX_FIELD_CHARS) placeholder="10m"
                            aria-describedby="job-when-help";
                    }
                    div {
                        label for="job-tz" { "Time zone (cron only)" }
                        input #job-tz type="text" name="tz" maxlength=(MAX_FIELD_CHARS)
                            placeholder="UTC" autocomplete="off";
                    }
                }
                p.muted.fine #job-when-help {
                    "Durations: 10m, 2h, 1h 30m. A time: 2026-12-01 09:00, in the gateway's time \
                     zone (UTC" (offset) "). A cron expression: 0 9 * * 1-5 (minute hour day \
                     month weekday), in the time zone given (an IANA name such as \
                     Europe/Lisbon; UTC when empty)."
                }
                label.check for="job-agent" {
                    input #job-agent type="checkbox" name="agent" value="on";
                    "Give it to the agent as a task (otherwise the message is sent as it is)"
                }
                div.row {
                    div {
                        label for="job-to" { "Deliver to (CHANNEL:CHAT)" }
                        input #job-to type="text" name="to" maxlength=(MAX_FIELD_CHARS)
                            placeholder="telegram:123456" autocomplete="off";
                    }
                    div {
                        label for="job-name" { "Name (optional)" }
                        input #job-name type="text" name="name" maxlength=(MAX_FIELD_CHARS)
                            placeholder="the start of the message";
                    }
                }
                button type="submit" { "Add job" }
            }
        }
    }
}

/// The add form's fields (all optional here: what is missing is refused with a message, not
/// with the extractor's error).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct AddForm {
    message: String,
    kind: String,
    when: String,
    tz: String,
    agent: Option<String>,
    to: String,
    name: String,
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The job the form describes, or why not (the CLI's words for what the CLI checks).
fn job_of(form: AddForm, now: i64) -> Result<CronJob, String> {
    let long = [
        (
            "the message",
            form.message.chars().count(),
            MAX_MESSAGE_CHARS,
        ),
        ("the schedule", form.when.chars().count(), MAX_FIELD_CHARS),
        ("the time zone", form.tz.chars().count(), MAX_FIELD_CHARS),
        ("the target", form.to.chars().count(), MAX_FIELD_CHARS),
        ("the name", form.name.chars().count(), MAX_FIELD_CHARS),
    ]
    .into_iter()
    .find(|(_, n, max)| n > max);
    if let Some((what, n, max)) = long {
        return Err(format!(
            "{what} is too long ({n} characters; at most {max}): shorten it"
        ));
    }
    let kind = form.kind.trim();
    let tz = if kind == "cron" {
        non_empty(&form.tz)
    } else {
        None
    };
    let value = form.when.trim();
    if value.is_empty() && picoclaw_state::SCHEDULE_KINDS.contains(&kind) {
        return Err(format!("say when: give the --{kind} value"));
    }
    let schedule = picoclaw_state::parse_schedule(kind, value, tz.as_deref(), now)?;
    NewJob {
        message: form.message,
        agent: form.agent.is_some(),
        to: non_empty(&form.to),
        name: non_empty(&form.name),
    }
    .build(schedule, now)
}

async fn add(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    axum::Form(form): axum::Form<AddForm>,
) -> Response {
    let result = match job_of(form, now_ms()) {
        Ok(job) => match web.api.store.put_job(&job).await {
            Ok(()) => Ok(format!(
                "Scheduled: {} ({}).",
                job.name,
                job.schedule.describe()
            )),
            Err(e) => Err(format!("cannot store the job: {e}")),
        },
        Err(why) => Err(format!("Not scheduled: {why}")),
    };
    back_to(&web, &ctx, Page::Jobs.path(), result)
}

fn no_job(id: &str) -> String {
    let shown: String = id.chars().take(40).collect();
    format!("There is no job {shown} (any more): the list shows the jobs there are.")
}

async fn toggle(web: &Web, ctx: &Ctx, id: &str, on: bool) -> Response {
    let result = match web.api.store.set_enabled(id, on, now_ms()).await {
        Ok(Some(job)) if on => Ok(format!(
            "Enabled {}: next run {}.",
            job.name,
            job.state.next_run_at_ms.map_or_else(|| "-".into(), when)
        )),
        Ok(Some(job)) => Ok(format!(
            "Disabled {} (kept; enable it to run again).",
            job.name
        )),
        Ok(None) => Err(no_job(id)),
        Err(StateError::Invalid(msg)) => Err(msg),
        Err(e) => Err(format!("cannot change the job: {e}")),
    };
    back_to(web, ctx, Page::Jobs.path(), result)
}

async fn enable(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    toggle(&web, &ctx, &id, true).await
}

async fn disable(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    toggle(&web, &ctx, &id, false).await
}

async fn remove(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    let name = match web.api.store.get_job(&id).await {
        Ok(Some(job)) => job.name,
        Ok(None) => return back_to(&web, &ctx, Page::Jobs.path(), Err(no_job(&id))),
        Err(e) => {
            let why = format!("cannot read the job: {e}");
            return back_to(&web, &ctx, Page::Jobs.path(), Err(why));
        }
    };
    let result = match web.api.store.remove_job(&id).await {
        Ok(true) => Ok(format!("Removed {name}.")),
        Ok(false) => Err(no_job(&id)),
        Err(e) => Err(format!("cannot remove the job: {e}")),
    };
    back_to(&web, &ctx, Page::Jobs.path(), result)
}

/// Moves the job's next run to now, if nobody moved it meanwhile: the cron runner then runs it
/// once (see the module's documentation).
async fn run_now(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    let store = &web.api.store;
    let result = async {
        // Twice: the runner may move the job between our read and our write.
        for _ in 0..2 {
            let Some(job) = store.get_job(&id).await.map_err(|e| e.to_string())? else {
                return Err(no_job(&id));
            };
            let Some(scheduled) = job.state.next_run_at_ms.filter(|_| job.enabled) else {
                return Err(format!(
                    "{} is disabled: enable it first, then run it.",
                    job.name
                ));
            };
            let now = now_ms();
            if scheduled <= now {
                return Ok(format!(
                    "{} is due already: it runs within seconds.",
                    job.name
                ));
            }
            if store
                .claim_run(&id, scheduled, Some(now))
                .await
                .map_err(|e| e.to_string())?
            {
                let after = match job.schedule {
                    Schedule::At { .. } => "it will not run again at its time",
                    _ => "then it keeps its schedule",
                };
                return Ok(format!("{} runs within seconds; {after}.", job.name));
            }
        }
        Err(
            "the job changed meanwhile (it may have just run): look at the list and try again."
                .to_owned(),
        )
    }
    .await;
    back_to(&web, &ctx, Page::Jobs.path(), result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kind: &str, when: &str) -> AddForm {
        AddForm {
            message: "Water the plants".into(),
            kind: kind.into(),
            when: when.into(),
            ..AddForm::default()
        }
    }

    #[test]
    fn the_form_builds_the_jobs_the_cli_builds() {
        let now = 1_800_000_000_000;
        let job = job_of(form("in", "10m"), now).unwrap();
        assert_eq!(
            job.schedule,
            Schedule::At {
                at_ms: now + 600_000
            }
        );
        assert!(job.payload.deliver, "a reminder unless given to the agent");
        assert_eq!(job.name, "Water the plants");
        let mut f = form("cron", "0 9 * * 1-5");
        f.tz = " Europe/Lisbon ".into();
        f.agent = Some("on".into());
        f.to = "telegram:42".into();
        f.name = "plants".into();
        let job = job_of(f, now).unwrap();
        assert_eq!(
            job.schedule.describe(),
            "cron \"0 9 * * 1-5\" (Europe/Lisbon)"
        );
        assert!(!job.payload.deliver);
        assert_eq!(job.payload.channel.as_deref(), Some("telegram"));
        assert_eq!(job.name, "plants");
        // A time zone is for cron expressions only.
        let mut f = form("every", "1h");
        f.tz = "Mars/Olympus".into();
        assert_eq!(job_of(f, now).unwrap().schedule.describe(), "every 1h");
    }

    #[test]
    fn bad_input_is_refused_with_the_clis_words() {
        let now = 1_800_000_000_000;
        let err = |f: AddForm| job_of(f, now).unwrap_err();
        assert!(err(form("in", "soon")).starts_with("--in 'soon' is not a duration"));
        assert!(err(form("cron", "99 * * * *")).contains("not a valid cron expression"));
        let mut f = form("cron", "0 9 * * *");
        f.tz = "Mars/Olympus".into();
        assert!(err(f).contains("unknown time zone"));
        let mut f = form("in", "1h");
        f.to = "nochat".into();
        assert_eq!(
            err(f),
            "--to 'nochat' must be CHANNEL:CHAT, such as telegram:123456"
        );
        assert!(err(form("at", "2001-01-01 09:00")).contains("already past"));
        assert!(err(form("sometime", "1h")).starts_with("say when"));
        assert!(err(form("in", " ")).starts_with("say when"));
        let mut f = form("in", "1h");
        f.message = " ".into();
        assert!(err(f).contains("no message"));
        let mut f = form("in", "1h");
        f.message = "x".repeat(MAX_MESSAGE_CHARS + 1);
        assert!(err(f).contains("too long"));
    }
}
