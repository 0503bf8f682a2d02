//! The Channels, Skills & agents, and Memory pages: what they show, what their forms do, and
//! what they refuse.

use super::super::{Gateway, KEY, home_with};
use super::Dash;
use picoclaw_testkit::ScriptedEndpoint;
use serde_json::json;
use std::time::Duration;

/// The text of the element whose id is `id` (up to its first `<`), when the page has it.
fn text_of(page: &str, id: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let rest = &page[at..];
    let rest = &rest[rest.find('>')? + 1..];
    Some(rest[..rest.find('<')?].to_owned())
}

/// Follows a form's redirect: the page it leads to (with the form's notice).
async fn after(dash: &Dash, (status, location): (u16, String)) -> String {
    assert_eq!(status, 303, "{location}");
    let (status, page) = dash.get(&location).await;
    assert_eq!(status, 200, "{page}");
    page
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn channels_show_state_pairing_last_messages_and_the_ones_not_running() {
    use crate::telegram::wait_sent;
    use picoclaw_testkit::Reply;
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "777:DASH";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([Reply::text("Hello, owner.")]).await;
    let home = home_with(
        &endpoint,
        json!({"host": "127.0.0.1", "port": 0, "api_key": KEY}),
    );
    super::super::set_channels(
        home.path(),
        json!({
            "telegram": {"enabled": true, "token": TOKEN, "allow_from": [],
                "api_base": tg.api_base()},
            // Not in any build.
            "nosuch": {"enabled": true},
            // Bad settings: not started.
            "pico": {"enabled": true, "token": "t", "session_scope": "everyone"},
        }),
    );
    let gw = Gateway::start(home.path());
    let dash = Dash::login(&gw).await;

    // Running, with the code the gateway logged.
    let mut page = String::new();
    for _ in 0..1200 {
        page = dash.get("/ui/channels").await.1;
        if page.contains("id=\"pairing-code-telegram\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(page.contains("id=\"channel-list\""), "{page}");
    assert!(page.contains("data-channel=\"telegram\""), "{page}");
    assert!(page.contains("data-state=\"running\""), "{page}");
    let old = text_of(&page, "pairing-code-telegram").expect("the pairing code");
    // The code the gateway logged for telegram.
    let logged =
        gw.log.lock().unwrap().iter().any(|l| {
            l.contains("telegram: nobody may talk") && l.contains(&format!("/pair {old}`"))
        });
    assert!(logged, "the page's code is the logged one");
    assert!(page.contains("id=\"pairing-renew-telegram\""), "{page}");
    assert!(page.contains("none since the gateway started"), "{page}");
    // The channels that do not run, and why.
    assert!(page.contains("data-channel=\"nosuch\""), "{page}");
    assert!(page.contains("this build has no nosuch channel"), "{page}");
    assert!(page.contains("data-channel=\"pico\""), "{page}");
    assert!(page.contains("channels.pico.session_scope is"), "{page}");

    // A new code: the old one is refused, the new one pairs.
    let page = after(
        &dash,
        dash.post_form("/ui/channels/telegram/pairing/renew", &[])
            .await,
    )
    .await;
    assert!(page.contains("A new pairing code for telegram"), "{page}");
    let new = text_of(&page, "pairing-code-telegram").expect("a new code");
    assert_eq!(new.len(), 6);
    assert_ne!(
        new, old,
        "a new code (a one in a million repeat fails here)"
    );
    tg.private_message(555, "zed", &format!("/pair {old}"));
    wait_sent(&tg, 1).await;
    assert_eq!(tg.sent()[0].1, "That code is wrong or was already used.");
    tg.private_message(555, "zed", &format!("/pair {new}"));
    wait_sent(&tg, 2).await;
    assert_eq!(tg.sent()[1].1, "Paired: you can talk to me now.");
    tg.private_message(
        555,
        "zed",
        "hi <b>there</b>, a message long enough to be cut at eighty characters for the preview",
    );
    wait_sent(&tg, 3).await;

    // The last messages, and the paired user.
    let mut page = String::new();
    for _ in 0..1200 {
        page = dash.get("/ui/channels").await.1;
        if page.contains("Hello, owner.") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(page.contains("Hello, owner."), "{page}");
    assert!(
        page.contains("hi &lt;b&gt;there&lt;/b&gt;, a message long enough to be cut at eighty characters for the pr<"),
        "the preview is escaped and cut at 80 characters: {page}"
    );
    assert!(page.contains("<code>555</code>"), "{page}");
    assert!(page.contains("id=\"paired-telegram\""), "{page}");
    assert!(
        !page.contains("id=\"pairing-code-telegram\""),
        "the code was used: {page}"
    );

    // Hostile: another channel's name, a path, a user who is not paired: refused, nothing
    // changes.
    let page = after(
        &dash,
        dash.post_form("/ui/channels/nosuch/pairing/renew", &[])
            .await,
    )
    .await;
    assert!(page.contains("no channel of that name runs"), "{page}");
    let (status, _) = dash
        .post_form("/ui/channels/..%2F..%2Fetc/pairing/renew", &[])
        .await;
    assert!(status == 303 || status == 404, "{status}");
    let page = after(
        &dash,
        dash.post_form("/ui/channels/telegram/paired/remove", &[("user", "999")])
            .await,
    )
    .await;
    assert!(page.contains("999 is not a paired user"), "{page}");
    let page = after(
        &dash,
        dash.post_form("/ui/channels/telegram/paired/remove", &[])
            .await,
    )
    .await;
    assert!(page.contains("say which paired user"), "{page}");
    let file = home.path().join("channels/telegram-paired.json");
    assert!(std::fs::read_to_string(&file).unwrap().contains("555"));

    // Removing the paired user: gone from the file, and ignored again.
    let page = after(
        &dash,
        dash.post_form("/ui/channels/telegram/paired/remove", &[("user", "555")])
            .await,
    )
    .await;
    assert!(page.contains("555 was removed"), "{page}");
    assert!(!page.contains("id=\"paired-telegram\""), "{page}");
    assert!(!std::fs::read_to_string(&file).unwrap().contains("555"));
    drop(gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn extensions_list_agents_skills_the_broken_skill_and_the_failed_mcp_server() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    let skills = home.path().join("workspace/skills");
    std::fs::create_dir_all(skills.join("greeter")).unwrap();
    std::fs::write(
        skills.join("greeter/SKILL.md"),
        "---\nname: greeter\ndescription: Greets <visitors> warmly.\n---\n\nSay hello.\n",
    )
    .unwrap();
    std::fs::create_dir_all(skills.join("broken")).unwrap();
    std::fs::write(
        skills.join("broken/SKILL.md"),
        "---\nname: broken\n---\n\nNo description.\n",
    )
    .unwrap();
    super::super::edit_config(home.path(), |config| {
        config["tools"] = json!({"mcp": {"servers": {
            "ghost": {"command": "/nonexistent/picoclaw-no-such-mcp-server"}
        }}});
    });
    let gw = Gateway::start(home.path());
    let dash = Dash::login(&gw).await;
    let (status, page) = dash.get("/ui/extensions").await;
    assert_eq!(status, 200, "{page}");
    // The agent, its model and tools.
    assert!(page.contains("id=\"agent-list\""), "{page}");
    assert!(page.contains("openai/test-model"), "{page}");
    // The workspace skill, loaded, its description escaped.
    assert!(page.contains("id=\"skill-list\""), "{page}");
    let row = &page[page
        .find("data-skill=\"greeter\"")
        .expect("the greeter skill")..];
    assert!(row.contains("Greets &lt;visitors&gt; warmly."), "{row}");
    assert!(row.contains("workspace"), "{row}");
    assert!(row.contains("loaded"), "{row}");
    // The broken one, with why.
    let row = &page[page
        .find("data-skill-problem=\"broken\"")
        .expect("the broken skill")..];
    assert!(row.contains("no `description`"), "{row}");
    // The MCP server that cannot start, with why.
    assert!(page.contains("id=\"mcp-list\""), "{page}");
    let row = &page[page.find("data-mcp=\"ghost\"").expect("the MCP server")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("failed"), "{row}");
    assert!(
        row.contains("picoclaw-no-such-mcp-server") || row.contains("No such file"),
        "{row}"
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_adds_a_fact_finds_it_and_refuses_empty_and_oversized_ones() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    let gw = Gateway::start(home.path());
    let dash = Dash::login(&gw).await;
    let file = home.path().join("workspace/memory/MEMORY.md");

    let (status, page) = dash.get("/ui/memory").await;
    assert_eq!(status, 200, "{page}");
    for id in [
        "memory-search",
        "memory-add",
        "memory-fact",
        "memory-content",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id}: {page}");
    }

    // Added through the form: on disk, shown escaped, found by the search.
    let fact = "Ada's cat Miso hates <script>alert(1)</script> tags";
    let page = after(
        &dash,
        dash.post_form("/ui/memory/add", &[("fact", fact)]).await,
    )
    .await;
    assert!(page.contains("Added to memory/MEMORY.md line 3"), "{page}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("- {fact}")), "{text}");
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(
        page.contains("Ada&#39;s cat Miso hates &lt;script&gt;alert(1)&lt;/script&gt; tags")
            || page.contains("Ada's cat Miso hates &lt;script&gt;alert(1)&lt;/script&gt; tags"),
        "{page}"
    );
    let (_, page) = dash.get("/ui/memory?q=Miso").await;
    let hits = &page[page.find("id=\"memory-hits\"").expect("hits")..];
    assert!(hits.contains("memory/MEMORY.md"), "{hits}");
    assert!(hits.contains(">3<"), "the line: {hits}");
    assert!(hits.contains("&lt;script&gt;"), "{hits}");
    let (_, page) = dash.get("/ui/memory?q=zebra").await;
    assert!(page.contains("No notes match"), "{page}");

    // Refused: empty, oversized; the file is unchanged.
    let page = after(
        &dash,
        dash.post_form("/ui/memory/add", &[("fact", "  \n ")]).await,
    )
    .await;
    assert!(page.contains("the fact is empty"), "{page}");
    let big = "x".repeat(5000);
    let page = after(
        &dash,
        dash.post_form("/ui/memory/add", &[("fact", &big)]).await,
    )
    .await;
    assert!(page.contains("more than 4096"), "{page}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    // A query with no words is refused with why.
    let (_, page) = dash.get("/ui/memory?q=%21%21%21").await;
    assert!(page.contains("no words to search for"), "{page}");
    drop(gw);
}
