//! Skills on real folders: discovery and validation, installation from a git repository made in
//! the test and from archives served on loopback (hostile ones included), and executable skills
//! run as real Python programs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::SessionKey;
use picoclaw_skills::{
    Catalog, Grant, GrantCheck, GrantError, InstallError, InstallOptions, Permissions, SkillRoots,
    SkillTool, Source,
};
use picoclaw_tools::{Tool, ToolContext};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn write_skill(root: &Path, folder: &str, name: &str, description: &str) -> PathBuf {
    let dir = root.join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("SKILL.md"),
        format!("---\nname: {name}\ndescription: {description}\n---\n\n# {name}\n\nSteps.\n"),
    )
    .unwrap();
    dir
}

struct Roots {
    _tmp: tempfile::TempDir,
    ws: PathBuf,
    global: PathBuf,
    builtin: PathBuf,
}

impl Roots {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (ws, global, builtin) = (
            tmp.path().join("ws"),
            tmp.path().join("global"),
            tmp.path().join("builtin"),
        );
        for d in [&ws, &global, &builtin] {
            std::fs::create_dir_all(d).unwrap();
        }
        Self {
            _tmp: tmp,
            ws,
            global,
            builtin,
        }
    }

    fn roots(&self) -> SkillRoots {
        SkillRoots::new(
            Some(self.ws.clone()),
            Some(self.global.clone()),
            Some(self.builtin.clone()),
        )
    }
}

#[test]
fn workspace_beats_global_beats_builtin() {
    let r = Roots::new();
    picoclaw_skills::builtin::materialize(&r.builtin).unwrap();
    write_skill(&r.global, "weather", "weather", "Global weather.");
    write_skill(&r.ws, "weather", "weather", "Workspace weather.");
    write_skill(&r.global, "summarize", "summarize", "Global summaries.");
    write_skill(&r.global, "notes", "notes", "Only global.");
    let catalog = Catalog::discover(&r.roots(), &env);
    let get = |n: &str| catalog.get(n).unwrap();
    assert_eq!(get("weather").source, Source::Workspace);
    assert_eq!(get("weather").description, "Workspace weather.");
    assert_eq!(get("summarize").source, Source::Global);
    assert_eq!(get("notes").source, Source::Global);
    assert_eq!(get("skill-creator").source, Source::Builtin);
    let shadowed: Vec<(String, Source)> = catalog
        .shadowed
        .iter()
        .map(|s| (s.name.clone(), s.source))
        .collect();
    assert!(shadowed.contains(&("weather".into(), Source::Global)));
    assert!(shadowed.contains(&("weather".into(), Source::Builtin)));
    assert!(shadowed.contains(&("summarize".into(), Source::Builtin)));
    assert!(catalog.problems.is_empty(), "{:?}", catalog.problems);

    // The prompt lists each usable skill once, with the path of the SKILL.md that wins.
    let section = catalog.prompt_section().unwrap();
    assert_eq!(section.matches("- weather:").count(), 1, "{section}");
    assert!(section.contains(&r.ws.join("weather/SKILL.md").display().to_string()));
    assert!(section.contains("read_file"));
}

#[test]
fn unusable_skills_are_listed_with_the_reason_but_not_offered() {
    let r = Roots::new();
    let dir = r.global.join("needs-things");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("SKILL.md"),
        "---\nname: needs-things\ndescription: Needs a program and a key.\nmetadata: {\"nanobot\":{\"requires\":{\"bins\":[\"no-such-program-xyz\"],\"env\":[\"NO_SUCH_VAR_XYZ\"]}}}\n---\nbody",
    )
    .unwrap();
    write_skill(&r.global, "fine", "fine", "Always fine.");
    let catalog = Catalog::discover(&r.roots(), &env);
    let s = catalog.get("needs-things").unwrap();
    assert!(!s.available());
    assert!(
        s.missing.iter().any(|m| m.contains("no-such-program-xyz")),
        "{:?}",
        s.missing
    );
    assert!(
        s.missing.iter().any(|m| m.contains("NO_SUCH_VAR_XYZ")),
        "{:?}",
        s.missing
    );
    let section = catalog.prompt_section().unwrap();
    assert!(!section.contains("needs-things"), "{section}");
    assert!(section.contains("- fine:"), "{section}");
}

#[test]
fn invalid_skills_are_reported_with_clear_reasons() {
    let r = Roots::new();
    let g = &r.global;
    let mk = |folder: &str, skill_md: Option<&str>| {
        let d = g.join(folder);
        std::fs::create_dir_all(&d).unwrap();
        if let Some(text) = skill_md {
            std::fs::write(d.join("SKILL.md"), text).unwrap();
        }
        d
    };
    mk("no-front", Some("# Just markdown\n"));
    mk(
        "bad-name",
        Some("---\nname: Bad_Name\ndescription: x\n---\n"),
    );
    mk("no-desc", Some("---\nname: no-desc\n---\n"));
    mk(
        "long-desc",
        Some(&format!(
            "---\nname: long-desc\ndescription: {}\n---\n",
            "x".repeat(1100)
        )),
    );
    mk(
        "huge",
        Some(&format!(
            "---\nname: huge\ndescription: big\n---\n{}",
            "x".repeat(300 * 1024)
        )),
    );
    write_skill(g, "dup-a", "same-name", "First.");
    write_skill(g, "dup-b", "same-name", "Second.");
    let d = mk("tool-missing-entry", None);
    std::fs::write(
        d.join("manifest.json"),
        json!({"name": "tool-missing-entry", "description": "x", "entry": "main.py",
               "tools": [{"name": "t", "description": "d", "parameters": {"type": "object"}}]})
        .to_string(),
    )
    .unwrap();
    let d = mk("bad-schema", None);
    std::fs::write(d.join("main.py"), "print('{}')").unwrap();
    std::fs::write(
        d.join("manifest.json"),
        json!({"name": "bad-schema", "description": "x", "entry": "main.py",
               "tools": [{"name": "t", "description": "d",
                          "parameters": {"type": "object", "properties": {"n": {"type": "integr"}}}}]})
        .to_string(),
    )
    .unwrap();
    let d = mk("escaping-entry", None);
    std::fs::write(
        d.join("manifest.json"),
        json!({"name": "escaping-entry", "description": "x", "entry": "../../bin/sh",
               "tools": [{"name": "t", "description": "d"}]})
        .to_string(),
    )
    .unwrap();
    let catalog = Catalog::discover(&r.roots(), &env);
    let reason = |folder: &str| {
        catalog
            .problems
            .iter()
            .find(|p| p.dir.ends_with(folder))
            .map(|p| p.reason.clone())
            .unwrap_or_else(|| panic!("no problem reported for {folder}: {:?}", catalog.problems))
    };
    assert!(reason("no-front").contains("no front matter"));
    assert!(reason("bad-name").contains("may use only a-z"));
    assert!(reason("no-desc").contains("no `description`"));
    assert!(reason("long-desc").contains("at most 1024"));
    assert!(reason("huge").contains("at most 256 KiB"));
    assert!(reason("dup-b").contains("also used by"));
    assert!(reason("tool-missing-entry").contains("does not exist"));
    assert!(reason("bad-schema").contains("unknown type"));
    assert!(reason("escaping-entry").contains("inside the skill folder"));
    // The first of the duplicates is still usable.
    assert_eq!(catalog.get("same-name").unwrap().description, "First.");
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git is needed for these tests");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn install_from_a_local_git_repository_and_the_shorthand() {
    let tmp = tempfile::tempdir().unwrap();
    // A "git host" folder holding owner/repo, with the skill in a subfolder.
    let repo = tmp.path().join("host/acme/skills");
    std::fs::create_dir_all(&repo).unwrap();
    write_skill(&repo, "tools/pdf", "pdf", "PDF helpers.");
    std::fs::write(repo.join("tools/pdf/helper.sh"), "echo hi\n").unwrap();
    write_skill(&repo, ".", "top", "The repository itself is a skill.");
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "skills"]);
    let dest = tmp.path().join("installed");
    let host = format!("file://{}", tmp.path().join("host").display());
    let options = InstallOptions::default().git_host(host);

    let url = format!("file://{}", repo.display());
    let top = picoclaw_skills::install(&url, &dest, &options, &env)
        .await
        .unwrap();
    assert_eq!(top.name, "top");
    assert!(dest.join("top/SKILL.md").is_file());
    assert!(
        !dest.join("top/.git").exists(),
        "the .git folder is not copied"
    );

    let pdf = picoclaw_skills::install("acme/skills/tools/pdf", &dest, &options, &env)
        .await
        .unwrap();
    assert_eq!(pdf.name, "pdf");
    assert_eq!(
        std::fs::read_to_string(dest.join("pdf/helper.sh")).unwrap(),
        "echo hi\n"
    );
    // Twice: refused without force, replaced with it.
    let err = picoclaw_skills::install("acme/skills/tools/pdf", &dest, &options, &env)
        .await
        .unwrap_err();
    // The caller can tell "use --force" from the error's kind, not its text.
    assert!(
        matches!(&err, InstallError::AlreadyInstalled { name, .. } if name == "pdf"),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("already installed"), "{err}");
    picoclaw_skills::install(
        "acme/skills/tools/pdf",
        &dest,
        &options.clone().force(true),
        &env,
    )
    .await
    .unwrap();
    // Errors name the problem; nothing half-installed is left behind.
    for (source, want) in [
        ("acme/skills/no/such/dir", "no folder"),
        ("acme/missing-repo", "git clone"),
    ] {
        let err = picoclaw_skills::install(source, &dest, &options, &env)
            .await
            .unwrap_err();
        assert!(matches!(err, InstallError::Fetch(_)), "{source}: {err:?}");
        let err = err.to_string();
        assert!(err.contains(want), "{source}: {err}");
    }
    let left: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["pdf", "top"]);
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // Written raw so that hostile names ("../x") stay as they are.
        let name = header.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (path, data) in entries {
        w.start_file(*path, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

async fn serve(files: Vec<(&'static str, Vec<u8>)>) -> String {
    use axum::routing::get;
    let mut app = axum::Router::new();
    for (path, bytes) in files {
        app = app.route(path, get(move || async move { bytes.clone() }));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn install_from_archives_and_refuse_hostile_ones() {
    let skill_md: &[u8] = b"---\nname: packed\ndescription: From an archive.\n---\nSteps.\n";
    let base = serve(vec![
        (
            "/good.tar.gz",
            tar_gz(&[
                ("packed/SKILL.md", skill_md),
                ("packed/ref/notes.md", b"notes"),
            ]),
        ),
        ("/good.zip", zip_of(&[("SKILL.md", skill_md)])),
        (
            "/evil.tar.gz",
            tar_gz(&[
                ("packed/SKILL.md", skill_md),
                ("../../escaped.txt", b"pwned"),
            ]),
        ),
        (
            "/abs.tar.gz",
            tar_gz(&[
                ("packed/SKILL.md", skill_md),
                ("/tmp/abs-escaped.txt", b"pwned"),
            ]),
        ),
        (
            "/evil.zip",
            zip_of(&[("SKILL.md", skill_md), ("../escaped.txt", b"pwned")]),
        ),
        ("/garbage.tar.gz", b"this is not gzip".to_vec()),
        ("/empty.zip", zip_of(&[("README.md", b"no skill here")])),
    ])
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a/b/skills");
    let opts = InstallOptions::default();

    let s = picoclaw_skills::install(&format!("{base}/good.tar.gz"), &dest, &opts, &env)
        .await
        .unwrap();
    assert_eq!(s.name, "packed");
    assert_eq!(
        std::fs::read_to_string(dest.join("packed/ref/notes.md")).unwrap(),
        "notes"
    );
    let err = picoclaw_skills::install(&format!("{base}/good.zip"), &dest, &opts, &env)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already installed"), "{err}");

    for (path, want) in [
        ("/evil.tar.gz", "unsafe"),
        ("/abs.tar.gz", "unsafe"),
        ("/evil.zip", "unsafe"),
        ("/garbage.tar.gz", "damaged"),
        ("/empty.zip", "no SKILL.md"),
        ("/missing.zip", "HTTP 404"),
    ] {
        let err = picoclaw_skills::install(
            &format!("{base}{path}"),
            &dest,
            &opts.clone().force(true),
            &env,
        )
        .await
        .unwrap_err();
        match path {
            "/missing.zip" => assert!(matches!(err, InstallError::Fetch(_)), "{err:?}"),
            _ => assert!(matches!(err, InstallError::Contents(_)), "{err:?}"),
        }
        let err = err.to_string();
        assert!(err.contains(want), "{path}: {err}");
    }
    // Nothing escaped, and the good install is untouched.
    for p in [
        tmp.path().join("a/escaped.txt"),
        tmp.path().join("escaped.txt"),
        dest.join("escaped.txt"),
        PathBuf::from("/tmp/abs-escaped.txt"),
    ] {
        assert!(!p.exists(), "{} was written", p.display());
    }
    assert!(dest.join("packed/SKILL.md").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

/// An executable skill whose `main.py` answers according to the tool called.
fn python_skill(root: &Path, permissions: Value) -> PathBuf {
    let dir = root.join("py-tools");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.py"),
        r#"import json, sys, time, os, socket
req = json.load(sys.stdin)
tool, args = req["tool"], req["arguments"]
if tool == "add":
    print(json.dumps({"result": args["a"] + args["b"]}))
elif tool == "fail":
    print(json.dumps({"error": "the widget is broken"}))
elif tool == "hang":
    time.sleep(60)
elif tool == "garbage":
    print("<html>oops</html>")
elif tool == "crash":
    sys.stderr.write("Traceback: boom\n"); sys.exit(3)
elif tool == "env":
    print(json.dumps({"result": {"secret": os.environ.get("PICO_TEST_SECRET"), "allowed": os.environ.get("PICO_TEST_ALLOWED")}}))
elif tool == "write":
    try:
        open(args["path"], "w").write("x")
        print(json.dumps({"result": "written"}))
    except OSError as e:
        print(json.dumps({"error": str(e)}))
elif tool == "connect":
    try:
        socket.create_connection(("127.0.0.1", int(args["port"])), timeout=2).close()
        print(json.dumps({"result": "connected"}))
    except OSError as e:
        print(json.dumps({"error": str(e)}))
"#,
    )
    .unwrap();
    let tool = |name: &str| {
        json!({"name": name, "description": format!("{name} tool"),
        "parameters": {"type": "object", "properties": {}}})
    };
    let mut tools = vec![json!({"name": "add", "description": "Adds two numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                       "required": ["a", "b"]}})];
    for t in [
        "fail", "hang", "garbage", "crash", "env", "write", "connect",
    ] {
        tools.push(tool(t));
    }
    std::fs::write(
        dir.join("manifest.json"),
        json!({"name": "py-tools", "version": "1.0.0", "description": "Python test tools",
               "entry": "main.py", "timeout_seconds": 2, "tools": tools,
               "permissions": permissions})
        .to_string(),
    )
    .unwrap();
    dir
}

/// The tools of the global skill in `dir`, granted `granted` as its files are now.
fn tools_of(dir: &Path, workspace: &Path, granted: &Permissions) -> Vec<SkillTool> {
    let skill = picoclaw_skills::Skill::load(dir, Source::Global, &env).unwrap();
    assert!(skill.available(), "{:?}", skill.missing);
    let grant = Grant::bind(&skill, granted.clone()).unwrap();
    SkillTool::all(&skill, workspace, Some(&grant))
}

async fn call(tools: &[SkillTool], name: &str, args: Value) -> picoclaw_tools::ToolOutput {
    let tool = tools.iter().find(|t| t.spec().name == name).unwrap();
    tool.call(&ToolContext::new(SessionKey::new("t")), args)
        .await
}

/// Whether the kernel enforces Landlock here. With `CI=true` a missing Landlock fails the test
/// instead of quietly checking only the unconfined fallback.
fn landlock_enforced() -> bool {
    match picoclaw_tools::landlock_abi() {
        Ok(_) => true,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and Landlock is unavailable ({why}): the enforcing branch must run")
        }
        Err(_) => false,
    }
}

/// A folder confined programs may not reach unless granted, wherever the target dir is: in the
/// owner's home, which the policy closes (as it closes picoclaw's home, where global skills and
/// the workspace live), never in the temporary folder, which they may always write.
fn outside_tmp() -> tempfile::TempDir {
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .filter(|h| h.is_absolute() && !h.starts_with(std::env::temp_dir()))
        .expect("these tests need a HOME outside the temporary folder");
    let base = home.join(".cache/picoclaw-skill-tests");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

#[tokio::test]
async fn executable_skills_run_as_confined_subprocesses() {
    let tmp = outside_tmp();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let dir = python_skill(
        tmp.path(),
        json!({"network": false, "workspace_write": false, "env": ["PICO_TEST_ALLOWED"]}),
    );
    #[allow(unsafe_code)]
    // SAFETY: no other thread of this test reads or writes the environment meanwhile; the
    // variables exist only for this test.
    unsafe {
        std::env::set_var("PICO_TEST_SECRET", "s3cret");
        std::env::set_var("PICO_TEST_ALLOWED", "visible");
    }
    let granted = Permissions::none()
        .with_network(true)
        .with_workspace_write(true)
        .with_env(vec!["PICO_TEST_ALLOWED".into()]);
    let tools = tools_of(&dir, &ws, &granted);
    assert_eq!(tools.len(), 8);

    let out = call(&tools, "add", json!({"a": 2, "b": 40})).await;
    assert_eq!((out.is_error, out.content.as_str()), (false, "42"));
    let out = call(&tools, "fail", json!({})).await;
    assert!(
        out.is_error && out.content.contains("the widget is broken"),
        "{out:?}"
    );
    let started = std::time::Instant::now();
    let out = call(&tools, "hang", json!({})).await;
    assert!(
        out.is_error && out.content.contains("did not answer within 2 s"),
        "{out:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let out = call(&tools, "garbage", json!({})).await;
    assert!(
        out.is_error && out.content.contains("did not print a JSON result"),
        "{out:?}"
    );
    assert!(out.content.contains("<html>oops"), "{out:?}");
    let out = call(&tools, "crash", json!({})).await;
    assert!(
        out.is_error && out.content.contains("exit code 3"),
        "{out:?}"
    );
    assert!(out.content.contains("Traceback: boom"), "{out:?}");
    // Only the variables the manifest names and the operator granted reach the program.
    let out = call(&tools, "env", json!({})).await;
    let seen: Value = serde_json::from_str(&out.content).unwrap();
    assert_eq!(seen, json!({"secret": null, "allowed": "visible"}));

    // Declared no workspace writes and no network: refused by the kernel even though the
    // operator would allow them (a permission needs both).
    if landlock_enforced() {
        let target = ws.join("out.txt");
        let out = call(&tools, "write", json!({"path": target})).await;
        assert!(
            out.is_error && out.content.contains("Permission denied"),
            "{out:?}"
        );
        assert!(!target.exists());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = call(&tools, "connect", json!({"port": port})).await;
        if landlock_enforced() && picoclaw_tools::landlock_abi().unwrap_or(0) >= 4 {
            assert!(out.is_error, "{out:?}");
        }
    }
}

#[tokio::test]
async fn permissions_need_the_manifest_and_the_operator() {
    let tmp = outside_tmp();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let dir = python_skill(
        tmp.path(),
        json!({"network": true, "workspace_write": true}),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Granted: writes in the workspace and connections work.
    let tools = tools_of(
        &dir,
        &ws,
        &Permissions::none()
            .with_network(true)
            .with_workspace_write(true),
    );
    let out = call(&tools, "write", json!({"path": ws.join("ok.txt")})).await;
    assert_eq!(out.content, "written", "{out:?}");
    let out = call(&tools, "connect", json!({"port": port})).await;
    assert_eq!(out.content, "connected", "{out:?}");
    // Not granted: the same calls are refused (where the kernel enforces it).
    let tools = tools_of(&dir, &ws, &Permissions::default());
    if landlock_enforced() {
        let out = call(&tools, "write", json!({"path": ws.join("no.txt")})).await;
        assert!(out.is_error, "{out:?}");
        assert!(!ws.join("no.txt").exists());
    }
    if landlock_enforced() && picoclaw_tools::landlock_abi().unwrap_or(0) >= 4 {
        let out = call(&tools, "connect", json!({"port": port})).await;
        assert!(out.is_error, "{out:?}");
    }
    // The temporary folder is always writable.
    let tmpfile = std::env::temp_dir().join(format!("skill-tmp-{}", std::process::id()));
    let out = call(&tools, "write", json!({"path": tmpfile})).await;
    assert_eq!(out.content, "written", "{out:?}");
    let _ = std::fs::remove_file(tmpfile);
}

/// Sets the variable the `env` tool of [`python_skill`] reports as "allowed".
fn set_allowed_var() {
    #[allow(unsafe_code)]
    // SAFETY: every test that sets it sets the same value; none removes it.
    unsafe {
        std::env::set_var("PICO_TEST_ALLOWED", "visible");
    }
}

async fn allowed_var_seen(tools: &[SkillTool]) -> Value {
    let out = call(tools, "env", json!({})).await;
    assert!(!out.is_error, "{out:?}");
    serde_json::from_str::<Value>(&out.content).unwrap()["allowed"].clone()
}

#[tokio::test]
async fn a_workspace_skill_never_inherits_a_global_grant() {
    set_allowed_var();
    let r = Roots::new();
    let permissions = json!({"env": ["PICO_TEST_ALLOWED"]});
    python_skill(&r.global, permissions.clone());
    // What a hostile model writes: the same name in the workspace, even the very same files.
    python_skill(&r.ws, permissions);
    let catalog = Catalog::discover(&r.roots(), &env);
    let running = catalog.get("py-tools").unwrap();
    assert_eq!(running.source, Source::Workspace);
    let global = catalog
        .shadowed
        .iter()
        .find(|s| s.name == "py-tools" && s.source == Source::Global)
        .unwrap();
    let grant = Grant::bind(
        global,
        Permissions::none().with_env(vec!["PICO_TEST_ALLOWED".into()]),
    )
    .unwrap();
    // The grant works for the skill it was made for...
    assert_eq!(grant.check(global), GrantCheck::Applies);
    let tools = SkillTool::all(global, &r.ws, Some(&grant));
    assert_eq!(allowed_var_seen(&tools).await, json!("visible"));
    // ...and not for the workspace skill that now answers to its name.
    assert!(matches!(
        grant.check(running),
        GrantCheck::NotGlobal {
            source: Source::Workspace,
            ..
        }
    ));
    let tools = SkillTool::all(running, &r.ws, Some(&grant));
    assert_eq!(allowed_var_seen(&tools).await, Value::Null);
    // A workspace skill cannot be granted at all.
    let err = Grant::bind(running, Permissions::default()).unwrap_err();
    assert!(matches!(err, GrantError::NotGlobal { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("only global skills"), "{err}");
}

#[tokio::test]
async fn a_changed_global_skill_loses_its_grant_until_granted_again() {
    set_allowed_var();
    let r = Roots::new();
    let dir = python_skill(&r.global, json!({"env": ["PICO_TEST_ALLOWED"]}));
    let load = || picoclaw_skills::Skill::load(&dir, Source::Global, &env).unwrap();
    let grant = Grant::bind(
        &load(),
        Permissions::none().with_env(vec!["PICO_TEST_ALLOWED".into()]),
    )
    .unwrap();
    let tools = SkillTool::all(&load(), &r.ws, Some(&grant));
    assert_eq!(allowed_var_seen(&tools).await, json!("visible"));

    // The entry changes (an update, or a write by a command running unconfined).
    let main = dir.join("main.py");
    let original = std::fs::read(&main).unwrap();
    let mut changed = original.clone();
    changed.extend_from_slice(b"\n# changed\n");
    std::fs::write(&main, &changed).unwrap();
    assert_eq!(
        grant.check(&load()),
        GrantCheck::Changed {
            files: vec!["main.py".into()]
        }
    );
    // Tools made before the change check again before each call.
    assert_eq!(allowed_var_seen(&tools).await, Value::Null);
    let fresh = SkillTool::all(&load(), &r.ws, Some(&grant));
    assert_eq!(allowed_var_seen(&fresh).await, Value::Null);
    // The manifest counts too.
    std::fs::write(&main, &original).unwrap();
    let manifest = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("Python test tools", "Other tools")).unwrap();
    assert_eq!(
        grant.check(&load()),
        GrantCheck::Changed {
            files: vec!["manifest.json".into()]
        }
    );
    // Back to the granted bytes: it applies again.
    std::fs::write(&manifest, &text).unwrap();
    assert_eq!(grant.check(&load()), GrantCheck::Applies);
    assert_eq!(allowed_var_seen(&tools).await, json!("visible"));
    // Granted again after a change: the new version has it.
    std::fs::write(&main, &changed).unwrap();
    let regranted = Grant::bind(&load(), grant.permissions.clone()).unwrap();
    let tools = SkillTool::all(&load(), &r.ws, Some(&regranted));
    assert_eq!(allowed_var_seen(&tools).await, json!("visible"));

    // The same files in another global folder are another skill.
    let elsewhere = r.builtin.join("py-tools");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for f in ["main.py", "manifest.json"] {
        std::fs::copy(dir.join(f), elsewhere.join(f)).unwrap();
    }
    let moved = picoclaw_skills::Skill::load(&elsewhere, Source::Global, &env).unwrap();
    assert!(matches!(regranted.check(&moved), GrantCheck::Moved { .. }));
    assert_eq!(
        allowed_var_seen(&SkillTool::all(&moved, &r.ws, Some(&regranted))).await,
        Value::Null
    );
}

#[tokio::test]
async fn grants_from_before_they_were_bound_apply_to_nothing() {
    set_allowed_var();
    let r = Roots::new();
    let dir = python_skill(&r.global, json!({"env": ["PICO_TEST_ALLOWED"]}));
    let skill = picoclaw_skills::Skill::load(&dir, Source::Global, &env).unwrap();
    // `tools.skills.permissions.py-tools` as it was written before grants were bound.
    let old = Grant::from_json(&json!({"network": true, "env": ["PICO_TEST_ALLOWED"]})).unwrap();
    let check = old.check(&skill);
    assert_eq!(check, GrantCheck::Unbound);
    assert!(
        check.reason().contains("before grants were bound"),
        "{}",
        check.reason()
    );
    let tools = SkillTool::all(&skill, &r.ws, Some(&old));
    assert_eq!(allowed_var_seen(&tools).await, Value::Null);
    // A hand-written hash that does not match is a change, not a crash.
    let mut forged = Grant::bind(&skill, old.permissions.clone())
        .unwrap()
        .to_json();
    forged["sha256"] = json!("00".repeat(32));
    forged.as_object_mut().unwrap().remove("files");
    let forged = Grant::from_json(&forged).unwrap();
    assert_eq!(
        forged.check(&skill),
        GrantCheck::Changed {
            files: vec!["main.py".into(), "manifest.json".into()]
        }
    );
}
