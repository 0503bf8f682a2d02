//! Skills: installed from git, executable skill tools, grants.

use super::*;

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git is needed for this test");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skill_installed_from_git_is_offered_read_and_followed() {
    let home_for_skill = tempfile::tempdir().unwrap();
    let repo = home_for_skill.path().join("greeting-skill");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("SKILL.md"),
        "---\nname: formal-greeting\ndescription: How to greet the user formally.\n---\n\n\
         # Formal greeting\n\nAlways greet with exactly: \"Good day, esteemed user.\"\n",
    )
    .unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "skill"]);

    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    let url = format!("file://{}", repo.display());
    let out = run(home.cmd(), &["skills", "install", &url]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("installed formal-greeting"),
        "{}",
        out.stdout
    );
    let skill_md = home.path().join("skills/formal-greeting/SKILL.md");
    assert!(skill_md.is_file());
    let list = run(home.cmd(), &["skills", "list"]).await;
    assert!(
        list.stdout.contains("formal-greeting") && list.stdout.contains("global"),
        "{}",
        list.stdout
    );

    // The model sees the skill in the prompt, reads it (outside the workspace, read-only), and
    // follows it.
    endpoint.push(Reply::tool_call(
        "read_file",
        json!({"path": skill_md.display().to_string()}),
    ));
    endpoint.push(Reply::text("Good day, esteemed user."));
    let out = run(home.cmd(), &["agent", "-m", "greet me"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Good day, esteemed user.");
    let reqs = endpoint.requests();
    let system = reqs[0].message_texts()[0].clone();
    assert!(
        system.contains("- formal-greeting: How to greet the user formally.")
            && system.contains(&skill_md.display().to_string()),
        "{system}"
    );
    let read = tool_messages(&reqs[1].body).join("\n");
    assert!(read.contains("Always greet with exactly"), "{read}");
    // Reading is all: writing there is still refused.
    endpoint.push(Reply::tool_call(
        "write_file",
        json!({"path": skill_md.display().to_string(), "content": "pwned"}),
    ));
    endpoint.push(Reply::text("I could not."));
    run(home.cmd(), &["agent", "-m", "overwrite the skill"]).await;
    let refused = tool_messages(&endpoint.requests()[3].body).join("\n");
    assert!(refused.contains("outside the workspace"), "{refused}");
    assert!(
        std::fs::read_to_string(&skill_md)
            .unwrap()
            .contains("Formal greeting")
    );

    // Removed: no longer offered.
    let out = run(home.cmd(), &["skills", "remove", "formal-greeting"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!skill_md.exists());
    let out = run(home.cmd(), &["skills", "remove", "weather"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("built-in"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executable_skill_tool_is_called_in_a_turn() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("word_count", json!({"text": "one two three four"})),
        Reply::text("Four words."),
        Reply::tool_call("word_count", json!({"text": "hang"})),
        Reply::text("It took too long."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let dir = home.workspace().join("skills/counter");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.py"),
        "import json, sys, time\nreq = json.load(sys.stdin)\ntext = req['arguments']['text']\n\
         if text == 'hang':\n    time.sleep(30)\n\
         print(json.dumps({'result': {'words': len(text.split())}}))\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        json!({"name": "counter", "version": "0.1.0", "description": "Counts words",
            "entry": "main.py", "timeout_seconds": 1,
            "tools": [{"name": "word_count", "description": "Count the words of a text",
                "parameters": {"type": "object", "properties": {"text": {"type": "string"}},
                               "required": ["text"]}}]})
        .to_string(),
    )
    .unwrap();
    let out = run(home.cmd(), &["skills", "show", "counter"]).await;
    assert!(
        out.stdout.contains("tool:        word_count"),
        "{}",
        out.stdout
    );
    let out = run(home.cmd(), &["agent", "-m", "count: one two three four"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Four words.");
    let reqs = endpoint.requests();
    let offered = offered_tools(&reqs[0].body);
    assert!(offered.iter().any(|t| t == "word_count"), "{offered:?}");
    assert_eq!(tool_messages(&reqs[1].body), [r#"{"words":4}"#]);
    // A skill that hangs is a clear tool error, not a stuck turn.
    let out = run(home.cmd(), &["agent", "-m", "count: hang"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let err = tool_messages(&endpoint.requests()[3].body).join("\n");
    assert!(err.contains("did not answer within 1 s"), "{err}");
}

/// An executable skill `counter` in `dir` whose tool `reveal` prints the variable
/// PICO_SKILL_SECRET (its manifest declares it), or "(unset)".
fn secret_skill(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("main.py"),
        "import json, os, sys\njson.load(sys.stdin)\n\
         print(json.dumps({'result': os.environ.get('PICO_SKILL_SECRET', '(unset)')}))\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        json!({"name": "counter", "description": "Reveals a variable", "entry": "main.py",
            "tools": [{"name": "reveal", "description": "Reveal the variable",
                "parameters": {"type": "object", "properties": {}}}],
            "permissions": {"env": ["PICO_SKILL_SECRET"]}})
        .to_string(),
    )
    .unwrap();
}

/// picoclaw with PICO_SKILL_SECRET in its environment.
fn with_secret(home: &Home) -> Command {
    let mut cmd = home.cmd();
    cmd.env("PICO_SKILL_SECRET", "s3cret-value");
    cmd
}

/// What the skill tool `reveal` returns when the model calls it in a turn.
async fn revealed(home: &Home, endpoint: &ScriptedEndpoint) -> String {
    endpoint.push(Reply::tool_call("reveal", json!({})));
    endpoint.push(Reply::text("done"));
    let out = run(with_secret(home), &["agent", "-m", "reveal it"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let reqs = endpoint.requests();
    tool_messages(&reqs.last().unwrap().body)
        .pop()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn skill_grants_hold_only_for_the_global_skill_and_files_they_were_made_for() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    let global = home.path().join("skills/counter");
    secret_skill(&global);
    assert_eq!(
        revealed(&home, &endpoint).await,
        "(unset)",
        "not granted yet"
    );
    let out = run(home.cmd(), &["skills", "grant", "counter"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("say what to grant"), "{}", out.stderr);
    let out = run(home.cmd(), &["skills", "grant", "counter", "--network"]).await;
    assert_eq!(out.code, 1, "undeclared: {}", out.stderr);
    let out = run(
        home.cmd(),
        &["skills", "grant", "counter", "--env", "PICO_SKILL_SECRET"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let grant = &home.config()["tools"]["skills"]["permissions"]["counter"];
    assert_eq!(grant["sha256"].as_str().map(str::len), Some(64), "{grant}");
    assert_eq!(
        grant["dir"],
        global.canonicalize().unwrap().display().to_string()
    );
    let out = run(home.cmd(), &["skills", "check"]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("granted   counter"), "{}", out.stdout);
    assert_eq!(revealed(&home, &endpoint).await, "s3cret-value");

    // Attack: the model writes a skill of the granted name into the workspace (here the very
    // same files). It runs instead of the global one, without the grant.
    let planted = home.workspace().join("skills/counter");
    secret_skill(&planted);
    assert_eq!(revealed(&home, &endpoint).await, "(unset)");
    let out = run(home.cmd(), &["skills", "check"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains(&planted.display().to_string())
            && out.stdout.contains("runs without the grant"),
        "{}",
        out.stdout
    );
    let out = run(home.cmd(), &["skills", "grant", "counter", "--declared"]).await;
    assert!(
        out.stdout.contains("gets no grant"),
        "the grant goes to the global skill: {}",
        out.stdout
    );
    std::fs::remove_dir_all(&planted).unwrap();

    // The global skill changes: it loses the grant, and `skills check` says which skill, what
    // changed and how to grant it again.
    let main = global.join("main.py");
    let mut text = std::fs::read_to_string(&main).unwrap();
    text.push_str("# a new version\n");
    std::fs::write(&main, text).unwrap();
    assert_eq!(revealed(&home, &endpoint).await, "(unset)");
    let out = run(home.cmd(), &["skills", "check"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let again = "picoclaw skills grant counter --env PICO_SKILL_SECRET";
    assert!(
        out.stdout.contains("counter (global): main.py changed") && out.stdout.contains(again),
        "{}",
        out.stdout
    );
    let list = run(home.cmd(), &["skills", "list"]).await;
    assert!(
        list.stdout.contains("its grant does not apply"),
        "{}",
        list.stdout
    );
    let args: Vec<&str> = again.split(' ').skip(1).collect();
    let out = run(home.cmd(), &args).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(revealed(&home, &endpoint).await, "s3cret-value");

    // A grant written before grants were bound (or by hand): read without a crash, applies to
    // nothing, and `skills check` says how to make it again.
    let mut config = home.config();
    config["tools"]["skills"]["permissions"]["counter"] = json!({"env": ["PICO_SKILL_SECRET"]});
    home.write_config(&config);
    assert_eq!(revealed(&home, &endpoint).await, "(unset)");
    let out = run(home.cmd(), &["skills", "check"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("before grants were bound") && out.stdout.contains(again),
        "{}",
        out.stdout
    );
    let out = run(home.cmd(), &["skills", "revoke", "counter"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(home.config()["tools"]["skills"]["permissions"]["counter"].is_null());
}
