//! The Usage page: the tokens of every model call and their estimated cost, per day, model and
//! conversation. The tables are those of `picoclaw usage --by day|model|session` (the same
//! ledger, the same pricing rule: [`picoclaw_config::Config::cost_of`]); the charts above them
//! are SVG drawn here (no script, no chart library), coloured by CSS classes so they follow the
//! light and dark themes.

use super::{Ctx, Page, Web, layout};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use picoclaw_api::state::{GroupBy, UsageRow, UsageStore};
use picoclaw_config::Config;

pub(super) fn routes() -> axum::Router<Web> {
    axum::Router::new().route(Page::Usage.path(), get(show))
}

#[derive(Debug, Default, serde::Deserialize)]
struct UsageQuery {
    since: Option<String>,
}

/// The most days the day charts draw (the table lists them all).
const MAX_CHART_DAYS: usize = 60;
/// Models or conversations drawn one by one; the rest are summed as "others".
const TOP: usize = 10;

async fn show(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    RawQuery(query): RawQuery,
) -> Response {
    let query: UsageQuery =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let since_text = query.since.unwrap_or_default().trim().to_owned();
    let since = match parse_since(&since_text) {
        Ok(since) => since,
        Err(why) => {
            let body = html! {
                h1 { (Page::Usage.title()) }
                p.notice.error role="alert" { (why) }
                (since_form(""))
            };
            let mut response = layout(&ctx, Page::Usage, body);
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let store = &web.api.store;
    let read = async {
        Ok::<_, picoclaw_state::StateError>((
            store.summary(since.as_deref(), GroupBy::Day).await?,
            store.summary(since.as_deref(), GroupBy::Model).await?,
            store.summary(since.as_deref(), GroupBy::Session).await?,
        ))
    };
    let (days, models, sessions) = match read.await {
        Ok(rows) => rows,
        Err(e) => return super::failure(&ctx, Page::Usage, "cannot read the usage ledger", e),
    };
    let config = &web.dash.config;
    let body = html! {
        h1 { (Page::Usage.title()) }
        (since_form(since.as_deref().unwrap_or_default()))
        @if days.is_empty() {
            p.muted #usage-empty {
                "No usage recorded"
                @if let Some(since) = &since { " since " (since) }
                ". Model calls of every conversation (chat, channels, API, scheduled jobs) are \
                 counted here."
            }
        } @else {
            section aria-labelledby="usage-day-h" {
                h2 #usage-day-h { "Per day" }
                (legend())
                (day_chart(&days))
                @if let Some(chart) = cost_chart(&days, config) { (chart) }
                (table("usage-by-day", "Day", &days, config))
            }
            section aria-labelledby="usage-model-h" {
                h2 #usage-model-h { "Per model" }
                (bar_chart("usage-chart-model", "model", &models))
                (table("usage-by-model", "Model", &models, config))
            }
            section aria-labelledby="usage-session-h" {
                h2 #usage-session-h { "Per conversation" }
                (bar_chart("usage-chart-session", "conversation", &sessions))
                (table("usage-by-session", "Conversation", &sessions, config))
            }
            p.muted {
                "Costs are estimates from the " code { "price" } " of each " code { "model_list" }
                " entry (per million tokens). Cached prompt tokens are part of the prompt \
                 tokens; reasoning tokens are part of the completion tokens and are priced there."
            }
        }
    };
    layout(&ctx, Page::Usage, body)
}

/// `since` as the ledger's `YYYY-MM-DD`; empty is no filter.
fn parse_since(text: &str) -> Result<Option<String>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| Some(d.format("%Y-%m-%d").to_string()))
        .map_err(|_| {
            let shown: String = text.chars().take(40).collect();
            format!("'{shown}' is not a date; write it as YYYY-MM-DD (such as 2026-01-31)")
        })
}

fn since_form(since: &str) -> Markup {
    html! {
        form.row.usage-filter method="get" action=(Page::Usage.path()) {
            div {
                label for="usage-since" { "Since (UTC day, inclusive)" }
                input #usage-since type="date" name="since" value=(since);
            }
            button type="submit" { "Show" }
            @if !since.is_empty() {
                a.button.secondary href=(Page::Usage.path()) { "All time" }
            }
        }
    }
}

fn legend() -> Markup {
    html! {
        ul.usage-legend aria-hidden="true" {
            li { span.swatch.bar-prompt {} "prompt" }
            li { span.swatch.bar-cached {} "cached prompt" }
            li { span.swatch.bar-completion {} "completion" }
        }
    }
}

/// `1234567` as `1,234,567` (as `picoclaw usage` prints it).
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A short axis label: `950`, `12k`, `1.2M`.
fn compact(v: f64) -> String {
    let (scaled, unit) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if scaled >= 10.0 || scaled.fract() == 0.0 {
        format!("{scaled:.0}{unit}")
    } else {
        format!("{scaled:.1}{unit}")
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (an axis' top).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|top| *top >= v)
        .unwrap_or(10.0 * magnitude)
}

fn cost_text(v: f64) -> String {
    format!("{v:.4}")
}

/// One decimal for SVG coordinates.
fn px(v: f64) -> String {
    format!("{v:.1}")
}

fn tokens(r: &UsageRow) -> u64 {
    r.prompt_tokens + r.completion_tokens
}

/// The table of `picoclaw usage --by ...`: CALLS, PROMPT, CACHED, COMPLETION, REASONING (when
/// any row has some), COST (when any row's cost is known; `-` where it is not, and the total
/// marked `+` then).
fn table(id: &str, head: &str, rows: &[UsageRow], config: &Config) -> Markup {
    let costs: Vec<Option<f64>> = rows.iter().map(|r| config.cost_of(&r.models)).collect();
    let any_price = costs.iter().any(Option::is_some);
    let any_reasoning = rows.iter().any(|r| r.reasoning_tokens > 0);
    let all_priced = costs.iter().all(Option::is_some);
    let total_cost: f64 = costs.iter().flatten().sum();
    let sum = |f: fn(&UsageRow) -> u64| rows.iter().map(f).sum::<u64>();
    html! {
        div.table-wrap {
            table #(id) {
                thead {
                    tr {
                        th scope="col" { (head) }
                        th.num scope="col" { "Calls" }
                        th.num scope="col" { "Prompt" }
                        th.num scope="col" { "Cached" }
                        th.num scope="col" { "Completion" }
                        @if any_reasoning { th.num scope="col" { "Reasoning" } }
                        @if any_price { th.num scope="col" { "Cost" } }
                    }
                }
                tbody {
                    @for (r, cost) in rows.iter().zip(&costs) {
                        tr {
                            th.mono.group scope="row" { (r.group) }
                            td.num { (r.calls) }
                            td.num { (thousands(r.prompt_tokens)) }
                            td.num { (thousands(r.cached_tokens)) }
                            td.num { (thousands(r.completion_tokens)) }
                            @if any_reasoning { td.num { (thousands(r.reasoning_tokens)) } }
                            @if any_price {
                                td.num {
                                    @match cost {
                                        Some(v) => (cost_text(*v)),
                                        None => "-",
                                    }
                                }
                            }
                        }
                    }
                }
                tfoot {
                    tr {
                        th scope="row" { "Total" }
                        td.num { (sum(|r| r.calls)) }
                        td.num { (thousands(sum(|r| r.prompt_tokens))) }
                        td.num { (thousands(sum(|r| r.cached_tokens))) }
                        td.num { (thousands(sum(|r| r.completion_tokens))) }
                        @if any_reasoning { td.num { (thousands(sum(|r| r.reasoning_tokens))) } }
                        @if any_price {
                            td.num {
                                (cost_text(total_cost))
                                @if !all_priced { "+" }
                            }
                        }
                    }
                }
            }
        }
        @if any_price && !all_priced {
            p.muted.fine {
                "+ some models have no " code { "model_list" } " price; their cost is not \
                 included (add a " code { "price" } " to their entry)."
            }
        }
    }
}

// The charts' drawing area, in viewBox units: narrow enough that the labels stay readable on a
// phone, where the SVG is as wide as the screen.
const W: f64 = 400.0;
const H: f64 = 200.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 6.0;
const TOP_PAD: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// The days to draw, oldest first (the ledger gives them newest first).
fn chart_days(days: &[UsageRow]) -> Vec<&UsageRow> {
    let mut shown: Vec<&UsageRow> = days.iter().take(MAX_CHART_DAYS).collect();
    shown.reverse();
    shown
}

/// The horizontal grid and the y-axis labels, for values up to `top`.
fn y_axis(top: f64, label: impl Fn(f64) -> String) -> Markup {
    let plot_h = H - TOP_PAD - BOTTOM;
    html! {
        g.axis {
            @for step in 0..=2 {
                @let value = top * f64::from(step) / 2.0;
                @let y = H - BOTTOM - plot_h * f64::from(step) / 2.0;
                line.grid x1=(px(LEFT)) x2=(px(W - RIGHT)) y1=(px(y)) y2=(px(y)) {}
                text x=(px(LEFT - 4.0)) y=(px(y + 4.0)) text-anchor="end" { (label(value)) }
            }
        }
    }
}

/// Day labels (`MM-DD`) under the bars, at most about seven of them.
fn x_labels(days: &[&UsageRow], slot: f64) -> Markup {
    let every = days.len().div_ceil(7).max(1);
    html! {
        g.axis {
            @for (i, day) in days.iter().enumerate() {
                @if i % every == 0 {
                    @let x = LEFT + slot * (i as f64 + 0.5);
                    text x=(px(x)) y=(px(H - 6.0)) text-anchor="middle" {
                        (day.group.get(5..).unwrap_or(&day.group))
                    }
                }
            }
        }
    }
}

/// Tokens per day: stacked bars (cached prompt, the rest of the prompt, completion).
fn day_chart(days: &[UsageRow]) -> Markup {
    let shown = chart_days(days);
    let most = shown.iter().copied().max_by_key(|r| tokens(r));
    let top = nice_ceiling(most.map_or(0, tokens) as f64);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP_PAD - BOTTOM;
    let slot = plot_w / shown.len().max(1) as f64;
    let bar = (slot * 0.7).min(36.0);
    let scale = |v: u64| v as f64 / top * plot_h;
    let (first, last) = (
        shown.first().map_or("", |r| r.group.as_str()),
        shown.last().map_or("", |r| r.group.as_str()),
    );
    let total_p: u64 = days.iter().map(|r| r.prompt_tokens).sum();
    let total_k: u64 = days.iter().map(|r| r.cached_tokens).sum();
    let total_c: u64 = days.iter().map(|r| r.completion_tokens).sum();
    let mut summary = format!(
        "Tokens per day from {first} to {last}: {} prompt ({} cached) and {} completion in all",
        thousands(total_p),
        thousands(total_k),
        thousands(total_c)
    );
    if let Some(most) = most {
        summary.push_str(&format!(
            "; the busiest day was {} with {} tokens",
            most.group,
            thousands(tokens(most))
        ));
    }
    if days.len() > shown.len() {
        summary.push_str(&format!(
            " (the chart shows the last {MAX_CHART_DAYS} days)"
        ));
    }
    summary.push('.');
    html! {
        svg.usage-chart #usage-chart-day viewBox={"0 0 " (W) " " (H)} role="img"
            aria-label=(summary) preserveAspectRatio="xMidYMid meet" {
            title { (summary) }
            (y_axis(top, compact))
            @for (i, r) in shown.iter().enumerate() {
                @let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
                @let cached = scale(r.cached_tokens.min(r.prompt_tokens));
                @let prompt = scale(r.prompt_tokens);
                @let completion = scale(r.completion_tokens);
                @let base = H - BOTTOM;
                g {
                    title {
                        (r.group) ": " (thousands(r.prompt_tokens)) " prompt ("
                        (thousands(r.cached_tokens)) " cached), "
                        (thousands(r.completion_tokens)) " completion, " (r.calls) " calls"
                    }
                    rect.bar-cached x=(px(x)) y=(px(base - cached)) width=(px(bar))
                        height=(px(cached)) {}
                    rect.bar-prompt x=(px(x)) y=(px(base - prompt)) width=(px(bar))
                        height=(px(prompt - cached)) {}
                    rect.bar-completion x=(px(x)) y=(px(base - prompt - completion))
                        width=(px(bar)) height=(px(completion)) {}
                }
            }
            (x_labels(&shown, slot))
        }
    }
}

/// The estimated cost per day, when some day's cost is known (every model of it priced).
fn cost_chart(days: &[UsageRow], config: &Config) -> Option<Markup> {
    let shown = chart_days(days);
    let costs: Vec<Option<f64>> = shown.iter().map(|r| config.cost_of(&r.models)).collect();
    if costs.iter().all(Option::is_none) {
        return None;
    }
    let most = costs.iter().flatten().copied().fold(0.0, f64::max);
    let top = if most > 0.0 { nice_ceiling(most) } else { 1.0 };
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP_PAD - BOTTOM;
    let slot = plot_w / shown.len().max(1) as f64;
    let bar = (slot * 0.7).min(36.0);
    let total: f64 = costs.iter().flatten().sum();
    let unknown = costs.iter().filter(|c| c.is_none()).count();
    let mut summary = format!(
        "Estimated cost per day from {} to {}: {} in all",
        shown.first().map_or("", |r| r.group.as_str()),
        shown.last().map_or("", |r| r.group.as_str()),
        cost_text(total)
    );
    if unknown > 0 {
        summary.push_str(&format!(
            ", not counting {unknown} day(s) with models that have no price"
        ));
    }
    summary.push('.');
    let label = |v: f64| {
        if top >= 10.0 {
            format!("{v:.0}")
        } else if top >= 0.1 {
            format!("{v:.2}")
        } else {
            format!("{v:.3}")
        }
    };
    Some(html! {
        svg.usage-chart #usage-chart-cost viewBox={"0 0 " (W) " " (H)} role="img"
            aria-label=(summary) {
            title { (summary) }
            (y_axis(top, label))
            @for (i, (r, cost)) in shown.iter().zip(&costs).enumerate() {
                @let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
                g {
                    @match cost {
                        Some(v) => {
                            title { (r.group) ": " (cost_text(*v)) }
                            @let h = v / top * plot_h;
                            rect.bar-cost x=(px(x)) y=(px(H - BOTTOM - h)) width=(px(bar))
                                height=(px(h)) {}
                        }
                        None => {
                            title { (r.group) ": cost unknown (a model without a price)" }
                            rect.bar-unknown x=(px(x)) y=(px(H - BOTTOM - 2.0)) width=(px(bar))
                                height="2" {}
                        }
                    }
                }
            }
            (x_labels(&shown, slot))
        }
    })
}

/// Tokens per model or conversation: one horizontal bar each for the largest [`TOP`], then
/// the rest summed as "others".
fn bar_chart(id: &str, what: &str, rows: &[UsageRow]) -> Markup {
    let mut sorted: Vec<&UsageRow> = rows.iter().collect();
    sorted.sort_by(|a, b| tokens(b).cmp(&tokens(a)).then(a.group.cmp(&b.group)));
    let mut bars: Vec<(String, u64, u64, u64)> = sorted
        .iter()
        .take(TOP)
        .map(|r| {
            (
                r.group.clone(),
                r.prompt_tokens,
                r.cached_tokens.min(r.prompt_tokens),
                r.completion_tokens,
            )
        })
        .collect();
    if sorted.len() > TOP {
        let rest = &sorted[TOP..];
        bars.push((
            format!("{} others", rest.len()),
            rest.iter().map(|r| r.prompt_tokens).sum(),
            rest.iter()
                .map(|r| r.cached_tokens.min(r.prompt_tokens))
                .sum(),
            rest.iter().map(|r| r.completion_tokens).sum(),
        ));
    }
    let most = bars.iter().map(|b| b.1 + b.3).max().unwrap_or(0).max(1) as f64;
    let row_h = 34.0;
    let height = row_h * bars.len() as f64 + 4.0;
    let listed: Vec<String> = bars
        .iter()
        .take(3)
        .map(|(name, p, _, c)| format!("{name} {}", thousands(p + c)))
        .collect();
    let summary = format!(
        "Tokens per {what}, {} {what}s, largest first: {}{}.",
        rows.len(),
        listed.join(", "),
        if bars.len() > 3 { ", …" } else { "" }
    );
    html! {
        svg.usage-chart.usage-bars #(id) viewBox={"0 0 " (W) " " (px(height))} role="img"
            aria-label=(summary) {
            title { (summary) }
            @for (i, (name, prompt, cached, completion)) in bars.iter().enumerate() {
                @let y = row_h * i as f64 + 14.0;
                @let scale = |v: u64| v as f64 / most * W;
                @let shown_name = if name.chars().count() > 44 {
                    format!("{}…", name.chars().take(43).collect::<String>())
                } else {
                    name.clone()
                };
                g {
                    title {
                        (name) ": " (thousands(*prompt)) " prompt (" (thousands(*cached))
                        " cached), " (thousands(*completion)) " completion"
                    }
                    text.label x="0" y=(px(y)) { (shown_name) }
                    text.value x=(px(W)) y=(px(y)) text-anchor="end" {
                        (compact((prompt + completion) as f64))
                    }
                    rect.bar-cached x="0" y=(px(y + 5.0)) width=(px(scale(*cached)))
                        height="12" {}
                    rect.bar-prompt x=(px(scale(*cached))) y=(px(y + 5.0))
                        width=(px(scale(prompt - cached))) height="12" {}
                    rect.bar-completion x=(px(scale(*prompt))) y=(px(y + 5.0))
                        width=(px(scale(*completion))) height="12" {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoclaw_api::state::ModelUsage;

    fn row(group: &str, model: &str, prompt: u64, completion: u64) -> UsageRow {
        let mut r = UsageRow::new(group);
        r.calls = 1;
        r.prompt_tokens = prompt;
        r.completion_tokens = completion;
        r.models = vec![ModelUsage::new(model, prompt, completion)];
        r
    }

    #[test]
    fn dates_are_checked_and_numbers_read_like_the_cli() {
        assert_eq!(parse_since(""), Ok(None));
        assert_eq!(parse_since("2026-12-05"), Ok(Some("2026-12-05".into())));
        assert!(parse_since("yesterday").unwrap_err().contains("YYYY-MM-DD"));
        assert!(parse_since("2026-02-30").is_err());
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(1_200.0), "1.2k");
        assert_eq!(compact(12_000.0), "12k");
        assert_eq!(compact(2_500_000.0), "2.5M");
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9 * b;
        assert!(near(nice_ceiling(1_230.0), 2_000.0));
        assert!(near(nice_ceiling(5_000.0), 5_000.0));
        assert!(near(nice_ceiling(0.012), 0.02));
    }

    #[test]
    fn the_table_prices_rows_like_the_cli_and_marks_an_incomplete_total() {
        let config: Config = serde_json::from_value(serde_json::json!({"model_list": [
            {"model_name": "a", "model": "openai/a", "price": {"input": 1.0, "output": 2.0}}
        ]}))
        .unwrap();
        let rows = [
            row("openai/a", "openai/a", 1_000_000, 500_000),
            row("openai/b", "openai/b", 10, 5),
        ];
        let html = table("t", "Model", &rows, &config).into_string();
        assert!(html.contains(">Cost</th>"), "{html}");
        assert!(html.contains("2.0000"), "{html}");
        assert!(html.contains("2.0000+"), "the total is marked: {html}");
        assert!(html.contains("1,000,010"), "{html}");
        assert!(!html.contains("Reasoning"), "{html}");
        // Nothing priced: no cost column.
        let html = table("t", "Model", &rows[1..], &Config::default()).into_string();
        assert!(!html.contains("Cost"), "{html}");
    }

    #[test]
    fn charts_summarise_their_numbers_and_group_the_rest() {
        let rows: Vec<UsageRow> = (0..13)
            .map(|i| row(&format!("s{i:02}"), "m", 100 * (i + 1), 10))
            .collect();
        let svg = bar_chart("c", "conversation", &rows).into_string();
        assert!(svg.contains("role=\"img\""), "{svg}");
        assert!(
            svg.contains("13 conversations, largest first: s12 1,310"),
            "{svg}"
        );
        assert!(svg.contains("3 others"), "{svg}");
        assert_eq!(svg.matches("<g>").count(), TOP + 1);
        let days = [
            row("2026-12-05", "m", 300, 30),
            row("2026-12-04", "m", 100, 10),
        ];
        let svg = day_chart(&days).into_string();
        assert!(
            svg.contains("from 2026-12-04 to 2026-12-05: 400 prompt (0 cached) and 40 completion"),
            "{svg}"
        );
        assert!(svg.contains(">12-04<") && svg.contains(">12-05<"), "{svg}");
        assert!(cost_chart(&days, &Config::default()).is_none());
    }
}
