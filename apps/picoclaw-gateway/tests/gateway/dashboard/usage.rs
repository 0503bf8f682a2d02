//! The Usage page (the ledger's numbers, priced like `picoclaw usage`) and the Scheduled jobs
//! page (added, refused, switched, removed and run by the gateway's cron runner).

use super::super::{Gateway, KEY, client, complete, edit_config, home_with};
use super::Dash;
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::json;
use std::time::Duration;

/// The HTML of the table with this id.
fn table<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id} in {page}"));
    let end = page[start..].find("</table>").unwrap() + start;
    &page[start..end]
}

/// The cells of the row whose first cell is `group` (or the total row, `Total`).
fn row_cells(table: &str, group: &str) -> Vec<String> {
    let at = table
        .find(&format!(">{group}</th>"))
        .unwrap_or_else(|| panic!("no row {group} in {table}"));
    let row = &table[at..at + table[at..].find("</tr>").unwrap()];
    row.split("<td class=\"num\">")
        .skip(1)
        .map(|cell| cell[..cell.find("</td>").unwrap()].to_owned())
        .collect()
}

#[tokio::test]
async fn the_usage_page_shows_the_ledgers_numbers_priced_like_the_cli() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Hello Ada.").with_usage(1_000, 20),
        Reply::text("Hello Bob.")
            .with_usage(3_000, 50)
            .with_reasoning(10),
    ])
    .await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    edit_config(home.path(), |config| {
        config["model_list"] = json!([{"model_name": "priced", "model": "openai/test-model",
            "price": {"input": 2.5, "output": 10.0}}]);
    });
    let gw = Gateway::start(home.path());
    let dash = Dash::login(&gw).await;

    let (_, page) = dash.get("/ui/usage").await;
    assert!(page.contains("No usage recorded"), "{page}");

    let c = client();
    for (session, text) in [("api:ada", "Hi, I am Ada"), ("api:bob", "Hi, I am Bob")] {
        let (status, r) = complete(
            &c,
            &gw,
            Some(session),
            json!({"model": "picoclaw", "messages": [{"role": "user", "content": text}]}),
        )
        .await;
        assert_eq!(status, 200, "{r}");
    }

    let (status, page) = dash.get("/ui/usage").await;
    assert_eq!(status, 200, "{page}");
    // Per model: 2 calls, 4,000 prompt, none cached, 70 completion of which 10 reasoning;
    // 4000 × 2.5/1M + 70 × 10/1M = 0.0107 (reasoning is part of the completion, priced once).
    let by_model = table(&page, "usage-by-model");
    for column in [
        "Calls",
        "Prompt",
        "Cached",
        "Completion",
        "Reasoning",
        "Cost",
    ] {
        assert!(by_model.contains(&format!(">{column}</th>")), "{by_model}");
    }
    assert_eq!(
        row_cells(by_model, "openai/test-model"),
        ["2", "4,000", "0", "70", "10", "0.0107"]
    );
    assert_eq!(
        row_cells(by_model, "Total"),
        ["2", "4,000", "0", "70", "10", "0.0107"]
    );
    // Per conversation: each session its own numbers and cost.
    let by_session = table(&page, "usage-by-session");
    assert_eq!(
        row_cells(by_session, "api:ada"),
        ["1", "1,000", "0", "20", "0", "0.0027"]
    );
    assert_eq!(
        row_cells(by_session, "api:bob"),
        ["1", "3,000", "0", "50", "10", "0.0080"]
    );
    assert_eq!(
        row_cells(by_session, "Total"),
        ["2", "4,000", "0", "70", "10", "0.0107"]
    );
    let by_day = table(&page, "usage-by-day");
    assert_eq!(
        row_cells(by_day, "Total"),
        ["2", "4,000", "0", "70", "10", "0.0107"]
    );
    // The charts are images with their numbers in words; no model has a missing price.
    for id in [
        "usage-chart-day",
        "usage-chart-model",
        "usage-chart-session",
        "usage-chart-cost",
    ] {
        let at = page
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no {id}"));
        let tag = &page[page[..at].rfind("<svg").unwrap()..at + 200];
        assert!(tag.contains("role=\"img\""), "{tag}");
    }
    assert!(
        page.contains("4,000 prompt (0 cached) and 70 completion in all"),
        "{page}"
    );
    assert!(!page.contains("0.0107+"), "{page}");

    // The date filter: none since a future day; a bad date is said so, not a server error.
    let (status, page) = dash.get("/ui/usage?since=2999-01-01").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("No usage recorded since 2999-01-01"),
        "{page}"
    );
    assert!(page.contains("id=\"usage-since\""), "{page}");
    for bad in [
        "yesterday",
        "2026-02-30",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ] {
        let (status, page) = dash.get(&format!("/ui/usage?since={bad}")).await;
        assert_eq!(status, 400, "{bad}: {page}");
        assert!(
            page.contains("is not a date; write it as YYYY-MM-DD"),
            "{page}"
        );
        assert!(!page.contains("<script>alert"), "{page}");
    }
}

/// The ids of the jobs listed on the page, in order.
fn job_ids(page: &str) -> Vec<String> {
    page.split("data-job=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
        .collect()
}

/// The row of job `id`.
fn job_row<'a>(page: &'a str, id: &str) -> &'a str {
    let at = page.find(&format!("data-job=\"{id}\"")).unwrap();
    &page[at..at + page[at..].find("</tr>").unwrap()]
}

/// Posts a form, follows it to the jobs page, and returns that page (with the notice).
async fn post_then_page(dash: &Dash, path: &str, fields: &[(&str, &str)]) -> String {
    let (status, location) = dash.post_form(path, fields).await;
    assert_eq!((status, location.as_str()), (303, "/ui/jobs"), "{path}");
    let (status, page) = dash.get("/ui/jobs").await;
    assert_eq!(status, 200);
    page
}

#[tokio::test]
async fn jobs_are_added_refused_switched_removed_and_run_now() {
    let endpoint = ScriptedEndpoint::start_with([Reply::text("Here is the news digest.")]).await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    edit_config(home.path(), |config| {
        config["heartbeat"] = json!({"enabled": false});
    });
    let gw = Gateway::start(home.path());
    let dash = Dash::login(&gw).await;
    let (_, page) = dash.get("/ui/jobs").await;
    assert!(job_ids(&page).is_empty(), "{page}");
    for id in [
        "job-add",
        "job-message",
        "job-kind",
        "job-when",
        "job-tz",
        "job-agent",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id}");
    }

    // One job of each kind, listed with its schedule.
    let added = [
        (
            vec![("message", "Stretch"), ("kind", "in"), ("when", "10m")],
            "Stretch",
            "at ",
        ),
        (
            vec![
                ("message", "Dentist"),
                ("kind", "at"),
                ("when", "2099-06-15 12:00"),
            ],
            "Dentist",
            "at 2099-06-15 ",
        ),
        (
            vec![
                ("message", "Collect the news"),
                ("kind", "every"),
                ("when", "1d"),
                ("agent", "on"),
                ("name", "news"),
            ],
            "news",
            "every 1d",
        ),
        (
            vec![
                ("message", "Standup notes"),
                ("kind", "cron"),
                ("when", "0 9 * * 1-5"),
                ("tz", "Europe/Lisbon"),
                ("to", "telegram:42"),
            ],
            "Standup notes",
            "cron &quot;0 9 * * 1-5&quot; (Europe/Lisbon)",
        ),
    ];
    for (i, (fields, name, schedule)) in added.iter().enumerate() {
        let page = post_then_page(&dash, "/ui/jobs/add", fields).await;
        assert!(page.contains("Scheduled: "), "{page}");
        let ids = job_ids(&page);
        assert_eq!(ids.len(), i + 1, "{page}");
        let row = job_row(&page, &ids[i]);
        assert!(row.contains(name), "{row}");
        assert!(row.contains(schedule), "{row}");
        assert!(
            row.contains(&format!("aria-label=\"Remove {name}\"")),
            "{row}"
        );
    }
    let (_, page) = dash.get("/ui/jobs").await;
    let ids = job_ids(&page);
    let standup = job_row(&page, &ids[3]);
    assert!(
        standup.contains("telegram:42") && standup.contains("Reminder: "),
        "{standup}"
    );
    assert!(job_row(&page, &ids[2]).contains("Agent task: "));

    // Bad input: the CLI's message as the notice, nothing stored.
    let long = "x".repeat(9000);
    let refused: [(Vec<(&str, &str)>, &str); 6] = [
        (
            vec![("message", "x"), ("kind", "in"), ("when", "soon")],
            "--in 'soon' is not a duration; write it like 10m, 2h or 1h 30m",
        ),
        (
            vec![("message", "x"), ("kind", "cron"), ("when", "99 * * * *")],
            "is not a valid cron expression",
        ),
        (
            vec![
                ("message", "x"),
                ("kind", "cron"),
                ("when", "0 9 * * *"),
                ("tz", "Mars/Olympus"),
            ],
            "unknown time zone &quot;Mars/Olympus&quot;",
        ),
        (
            vec![
                ("message", "x"),
                ("kind", "in"),
                ("when", "1h"),
                ("to", "nochat"),
            ],
            "--to 'nochat' must be CHANNEL:CHAT, such as telegram:123456",
        ),
        (
            vec![
                ("message", "x"),
                ("kind", "at"),
                ("when", "2001-01-01 09:00"),
            ],
            "that time is already past",
        ),
        (
            vec![("message", long.as_str()), ("kind", "in"), ("when", "1h")],
            "the message is too long",
        ),
    ];
    for (fields, message) in &refused {
        let page = post_then_page(&dash, "/ui/jobs/add", fields).await;
        assert!(page.contains("role=\"alert\""), "{page}");
        assert!(page.contains(message), "{message}: {page}");
        assert_eq!(job_ids(&page), ids, "nothing stored: {message}");
    }

    // Disable, enable, remove; a job that does not exist (or a path trick) is said so.
    let page = post_then_page(&dash, &format!("/ui/jobs/{}/disable", ids[0]), &[]).await;
    assert!(page.contains("Disabled Stretch"), "{page}");
    let row = job_row(&page, &ids[0]);
    assert!(
        row.contains(">off<") && !row.contains("Run Stretch now"),
        "{row}"
    );
    let page = post_then_page(&dash, &format!("/ui/jobs/{}/run", ids[0]), &[]).await;
    assert!(
        page.contains("Stretch is disabled: enable it first"),
        "{page}"
    );
    let page = post_then_page(&dash, &format!("/ui/jobs/{}/enable", ids[0]), &[]).await;
    assert!(page.contains("Enabled Stretch"), "{page}");
    assert!(job_row(&page, &ids[0]).contains(">on<"));
    let page = post_then_page(&dash, &format!("/ui/jobs/{}/remove", ids[1]), &[]).await;
    assert!(page.contains("Removed Dentist."), "{page}");
    assert_eq!(
        job_ids(&page),
        [ids[0].as_str(), ids[2].as_str(), ids[3].as_str()]
    );
    for path in [
        format!("/ui/jobs/{}/remove", ids[1]),
        "/ui/jobs/nope/enable".to_owned(),
        "/ui/jobs/..%2F..%2Fconfig.json/remove".to_owned(),
    ] {
        let page = post_then_page(&dash, &path, &[]).await;
        assert!(page.contains("There is no job"), "{path}: {page}");
        assert_eq!(job_ids(&page).len(), 3);
    }

    // Run now: the daily agent task runs once, soon, and stays scheduled for tomorrow.
    let page = post_then_page(&dash, &format!("/ui/jobs/{}/run", ids[2]), &[]).await;
    assert!(page.contains("news runs within seconds"), "{page}");
    let mut last = String::new();
    for _ in 0..600 {
        let (_, page) = dash.get("/ui/jobs").await;
        last = job_row(&page, &ids[2]).to_owned();
        if last.contains("badge ok\">ok<") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last.contains("badge ok\">ok<"), "the job never ran: {last}");
    let tasks: Vec<_> = endpoint
        .requests()
        .into_iter()
        .filter(|r| r.body["messages"].to_string().contains("Collect the news"))
        .collect();
    assert_eq!(tasks.len(), 1, "run once");
    assert!(
        tasks[0].body["messages"]
            .to_string()
            .contains("Scheduled task")
    );
    assert!(last.contains("every 1d") && last.contains(">on<"), "{last}");
    assert!(
        !last.contains("job-next\"><span class=\"muted\">-"),
        "{last}"
    );
}
