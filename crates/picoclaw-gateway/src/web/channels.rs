//! The Channels page: each channel's connection state, the last message it received and sent,
//! and who may talk to it (`allow_from`, the users paired with a one-time code, the code itself
//! with a button for a new one).

use super::{Ctx, Page, Web, back_to, csrf_field, layout, when};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use picoclaw_channels::access::{MAX_WRONG_CODES, PairingControl, paired_in_file};
use picoclaw_channels::{Activity, ChannelSetup, ChannelState, LastMessage};
use serde::Deserialize;
use std::collections::BTreeMap;

pub(super) fn routes() -> axum::Router<Web> {
    axum::Router::new()
        .route(Page::Channels.path(), get(show))
        .route("/ui/channels/{name}/pairing/renew", post(renew))
        .route("/ui/channels/{name}/paired/remove", post(remove_paired))
}

/// What the page shows of one channel.
struct Row {
    name: String,
    /// `None`: enabled in the config but not running (see `why`).
    state: Option<ChannelState>,
    why: Option<String>,
    activity: Activity,
    allow_from: Vec<String>,
    pairing: Option<PairingControl>,
    /// The paired users (from the running channel, else from its file).
    paired: Vec<String>,
}

fn rows(web: &Web) -> Vec<Row> {
    let config = &web.dash.config;
    let mut states: BTreeMap<String, Option<ChannelState>> = BTreeMap::new();
    let mut why: BTreeMap<String, String> = BTreeMap::new();
    let mut activity = BTreeMap::new();
    if let Some(manager) = &web.api.channels {
        for (name, state) in manager.states() {
            states.insert(name, Some(state));
        }
        for (name, reason) in manager.not_started() {
            states.entry(name.clone()).or_insert(None);
            why.insert(name.clone(), reason.clone());
        }
        activity = manager.activity();
    }
    for name in config.channels.enabled() {
        states.entry(name.to_owned()).or_insert(None);
    }
    states
        .into_iter()
        .map(|(name, state)| {
            let settings = config.channels.section(&name).unwrap_or_default();
            let allow_from = picoclaw_channels::settings::allow_from(&settings);
            let file = paired_file(web, &name);
            let pairing = state.as_ref().and_then(|_| PairingControl::of_file(&file));
            let paired = pairing
                .as_ref()
                .map_or_else(|| paired_in_file(&file), PairingControl::paired);
            let why = why.remove(&name).or_else(|| {
                state.is_none().then(|| {
                    "enabled in the config but not started (see the log for why)".to_owned()
                })
            });
            Row {
                activity: activity.remove(&name).unwrap_or_default(),
                name,
                state,
                why,
                allow_from,
                pairing,
                paired,
            }
        })
        .collect()
}

/// Where channel `name`'s paired users are kept (the file the channel itself uses).
fn paired_file(web: &Web, name: &str) -> std::path::PathBuf {
    ChannelSetup::new(
        name,
        serde_json::Value::Null,
        std::path::Path::new(""),
        web.dash.paths.home(),
    )
    .paired_file
}

/// The badge of a state: its text and class.
fn badge(state: Option<&ChannelState>) -> (String, &'static str) {
    match state {
        Some(ChannelState::Running) => ("running".to_owned(), "ok"),
        Some(ChannelState::Starting) => ("starting".to_owned(), ""),
        Some(ChannelState::Restarting { attempt, .. }) => {
            (format!("restarting (attempt {attempt})"), "error")
        }
        Some(ChannelState::Failed { .. }) => ("failed".to_owned(), "error"),
        Some(ChannelState::Stopped) => ("stopped".to_owned(), ""),
        Some(_) => ("unknown".to_owned(), ""),
        None => ("not running".to_owned(), "error"),
    }
}

fn last(label: &str, message: Option<&LastMessage>) -> Markup {
    html! {
        dt { (label) }
        dd {
            @match message {
                Some(m) => {
                    (when(m.at_ms)) " · chat " code { (m.chat_id) } br;
                    span.channel-preview { (m.preview) }
                }
                None => span.muted { "none since the gateway started" },
            }
        }
    }
}

fn section(ctx: &Ctx, row: &Row) -> Markup {
    let (text, class) = badge(row.state.as_ref());
    let error = match &row.state {
        Some(ChannelState::Restarting { last_error, .. }) => Some(last_error.clone()),
        Some(ChannelState::Failed { error }) => Some(error.clone()),
        _ => row.why.clone(),
    };
    let name = &row.name;
    html! {
        section.card.channel data-channel=(name) aria-labelledby=(format!("channel-{name}")) {
            h2 #(format!("channel-{name}")) {
                (name) " " span.badge.(class) data-state=(text) { (text) }
            }
            @if let Some(error) = error {
                p.notice.error { (error) }
            }
            dl.channel-last {
                (last("Last received", row.activity.received.as_ref()))
                (last("Last sent", row.activity.sent.as_ref()))
            }
            h3 { "Pairing" }
            @match &row.pairing {
                Some(pairing) => {
                    @match pairing.code() {
                        Some(code) => p {
                            "Send " code { "/pair " span #(format!("pairing-code-{name}")) { (code) } }
                            " to the bot from your account to be allowed (once)."
                        },
                        None if pairing.closed() => p.notice.error {
                            "Pairing is closed after " (MAX_WRONG_CODES)
                            " wrong codes. Make a new code to open it again."
                        },
                        None => p.muted { "No pairing code is open (someone is allowed already, or the code was used)." },
                    }
                    form.inline method="post" action=(format!("/ui/channels/{name}/pairing/renew")) {
                        (csrf_field(ctx))
                        button.secondary #(format!("pairing-renew-{name}")) type="submit" {
                            "New pairing code"
                        }
                    }
                }
                None => p.muted {
                    @if row.state.is_some() {
                        "Pairing opens when the channel has connected."
                    } @else {
                        "Pairing works while the channel runs."
                    }
                },
            }
            h3 { "Allowed users" }
            @if row.allow_from.is_empty() && row.paired.is_empty() {
                p.muted { "Nobody yet: pair with the code, or put user ids in channels." (name) ".allow_from." }
            }
            @if !row.allow_from.is_empty() {
                p { "From the config (" code { "allow_from" } "):" }
                ul.channel-users {
                    @for user in &row.allow_from { li { code { (user) } } }
                }
            }
            @if !row.paired.is_empty() {
                p { "Paired with a code:" }
                ul.channel-users #(format!("paired-{name}")) {
                    @for user in &row.paired {
                        li {
                            code { (user) } " "
                            @if row.pairing.is_some() {
                                form.inline method="post"
                                    action=(format!("/ui/channels/{name}/paired/remove"))
                                    data-confirm=(format!("Remove {user}? They must pair again to talk to the bot.")) {
                                    (csrf_field(ctx))
                                    input type="hidden" name="user" value=(user);
                                    button.danger type="submit" aria-label=(format!("Remove {user}")) { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn show(State(web): State<Web>, axum::Extension(ctx): axum::Extension<Ctx>) -> Response {
    let rows = rows(&web);
    layout(
        &ctx,
        Page::Channels,
        html! {
            h1 { (Page::Channels.title()) }
            div #channel-list {
                @if rows.is_empty() {
                    p.muted {
                        "No channel is enabled. Switch one on in the config (" code { "channels.<name>.enabled" }
                        ") and restart the gateway."
                    }
                }
                @for row in &rows { (section(&ctx, row)) }
            }
        },
    )
}

/// The pairing of running channel `name`, or why there is none.
fn pairing_of(web: &Web, name: &str) -> Result<PairingControl, String> {
    let running = web
        .api
        .channels
        .as_ref()
        .is_some_and(|m| m.states().iter().any(|(n, _)| n == name));
    if !running {
        return Err("no channel of that name runs in this gateway".to_owned());
    }
    PairingControl::of_file(&paired_file(web, name)).ok_or_else(|| {
        format!("the {name} channel has not opened its pairing yet (it does once connected); retry in a moment")
    })
}

async fn renew(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    Path(name): Path<String>,
) -> Response {
    let result = pairing_of(&web, &name).and_then(|p| {
        p.renew()
            .map(|_| format!("A new pairing code for {name} is open; the old one no longer works."))
            .ok_or_else(|| "cannot make a code: the system has no randomness".to_owned())
    });
    back_to(&web, &ctx, Page::Channels.path(), result)
}

#[derive(Deserialize)]
struct RemoveForm {
    #[serde(default)]
    user: String,
}

async fn remove_paired(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<RemoveForm>,
) -> Response {
    let user = form.user.trim();
    if user.is_empty() {
        let why = "say which paired user to remove".to_owned();
        return back_to(&web, &ctx, Page::Channels.path(), Err(why));
    }
    let result = pairing_of(&web, &name).and_then(|p| match p.forget(user) {
        Ok(true) => Ok(format!("{user} was removed from {name}'s paired users.")),
        Ok(false) => Err(format!("{user} is not a paired user of {name}")),
        Err(e) => Err(format!(
            "cannot write {name}'s paired users ({e}); check the permissions of picoclaw's \
             channels folder"
        )),
    });
    back_to(&web, &ctx, Page::Channels.path(), result)
}
