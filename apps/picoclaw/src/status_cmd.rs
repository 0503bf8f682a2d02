//! `picoclaw status`: where things are and what model/provider would be used. Keys are masked.

use crate::wiring::{self, SetupError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let paths = match wiring::paths(config) {
        Ok(p) => p,
        Err(SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(2));
        }
        Err(SetupError::Other(e)) => return Err(e),
    };
    let exists = |p: &std::path::Path| if p.exists() { "" } else { " (missing)" };
    println!("picoclaw {}", env!("CARGO_PKG_VERSION"));
    println!(
        "config:     {}{}",
        paths.config_file().display(),
        exists(paths.config_file())
    );
    let loaded = match wiring::load(&paths) {
        Ok(l) => l,
        Err(SetupError::Config(msg)) => {
            println!("config error: {msg}");
            return Ok(ExitCode::from(2));
        }
        Err(SetupError::Other(e)) => return Err(e),
    };
    let config = &loaded.config;
    let workspace = config.workspace_path(&paths);
    println!("workspace:  {}{}", workspace.display(), exists(&workspace));
    println!(
        "sandbox:    {}",
        if config.agents.defaults.restrict_to_workspace {
            "file tools confined to the workspace"
        } else {
            "OFF (restrict_to_workspace = false)"
        }
    );
    if config.state.url.trim().is_empty() {
        println!(
            "state:      {}{}",
            paths.state_db().display(),
            exists(&paths.state_db())
        );
    } else {
        println!(
            "state:      {}",
            crate::wiring::state_location(config, &paths)
        );
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    match config.resolve_model(&env) {
        Ok(resolved) => {
            println!("provider:   {}", resolved.provider);
            println!("model:      {}", resolved.model);
            println!("api base:   {}", resolved.api_base);
            println!(
                "api key:    {}",
                resolved
                    .api_key
                    .as_ref()
                    .map(|k| k.masked())
                    .unwrap_or_else(|| "(none)".to_owned())
            );
        }
        Err(err) => println!("model:      not usable: {err}"),
    }
    Ok(ExitCode::SUCCESS)
}
