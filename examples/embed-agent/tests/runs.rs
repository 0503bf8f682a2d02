//! The example runs without a key (against the scripted loopback model) and its agent really
//! calls the custom tool.

#[test]
fn runs_against_the_scripted_model() {
    let out = assert_cmd::Command::cargo_bin("example-embed-agent")
        .unwrap()
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "2 + 40 = 42.");
    assert!(stderr.contains("2 model calls, 1 tool calls"), "{stderr}");
}
