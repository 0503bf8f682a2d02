//! config.json as picoclaw loads it: the text parsed (`parse_config_json`), then decoded,
//! completed by `PICOCLAW_<SECTION>_<KEY>` overrides and validated (`load_value`). The input is
//! the file's text; after a NUL byte come `NAME=value` lines for the environment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picoclaw_config::Paths;
use std::collections::HashMap;
use std::sync::OnceLock;

/// picoclaw's home for every run: an empty folder (no `.env` file), made once per process.
fn paths() -> &'static Paths {
    static HOME: OnceLock<(tempfile::TempDir, Paths)> = OnceLock::new();
    &HOME
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temp folder: {e}"));
            let paths = Paths::new(dir.path(), dir.path().join("config.json"));
            (dir, paths)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let (file, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(file) else {
        return;
    };
    let paths = paths();
    let Ok(value) = picoclaw_config::parse_config_json(paths.config_file(), text) else {
        return;
    };
    let env: HashMap<String, String> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = picoclaw_config::load_value(paths, value, &env);
});
