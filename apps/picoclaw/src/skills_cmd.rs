//! `picoclaw skills`: list, show, install, remove and check skills.

use anyhow::Context;
use picoclaw_skills::{Catalog, InstallOptions, SkillRoots, Source};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SkillsArgs {
    #[command(subcommand)]
    command: SkillsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SkillsCommand {
    /// Every skill: where it comes from and whether it can be used here.
    List,
    /// One skill: its description, requirements, tools, and instructions.
    Show { name: String },
    /// Install a skill from a folder, a git URL, owner/repo/path, or a .tar.gz/.zip URL.
    Install {
        source: String,
        /// Into the workspace's skills/ instead of ~/.picoclaw/skills.
        #[arg(long)]
        workspace: bool,
        /// Replace an installed skill of the same name.
        #[arg(long)]
        force: bool,
    },
    /// Remove an installed skill (workspace or global; built-ins cannot be removed).
    Remove { name: String },
    /// Validate every skill folder; exit code 1 when one is invalid or an installed one cannot
    /// be used here.
    Check,
}

pub fn run(config: Option<PathBuf>, args: SkillsArgs) -> anyhow::Result<ExitCode> {
    let Some((paths, loaded)) = crate::wiring::paths_and_config(config)? else {
        return Ok(ExitCode::from(2));
    };
    let settings = picoclaw_gateway::SkillsSettings::from_config(&loaded.config);
    let workspace = loaded.config.workspace_path(&paths);
    let builtin_dir = paths.home().join("builtin-skills");
    if settings.builtin {
        picoclaw_skills::builtin::materialize(&builtin_dir).with_context(|| {
            format!(
                "cannot write the built-in skills to {}",
                builtin_dir.display()
            )
        })?;
    }
    let roots = SkillRoots::new(
        Some(workspace.join("skills")),
        Some(paths.global_skills_dir()),
        settings.builtin.then(|| builtin_dir.clone()),
    );
    let env = |k: &str| std::env::var(k).ok();
    match args.command {
        SkillsCommand::List => {
            let catalog = Catalog::discover(&roots, &env);
            if catalog.skills.is_empty() && catalog.problems.is_empty() {
                println!("no skills (install one with `picoclaw skills install SOURCE`)");
            }
            for s in &catalog.skills {
                let kind = if s.manifest.is_some() { " [tools]" } else { "" };
                let state = if s.available() {
                    let ungranted = s
                        .manifest
                        .as_ref()
                        .map(|m| m.permissions.not_granted(&settings.granted(&s.name)))
                        .unwrap_or_default();
                    if ungranted.is_empty() {
                        "available".to_owned()
                    } else {
                        format!(
                            "available, without {} (grant in tools.skills.permissions.{})",
                            ungranted.join(", "),
                            s.name
                        )
                    }
                } else {
                    format!("unavailable: {}", s.missing.join("; "))
                };
                println!(
                    "{:<20} {:<9} {state}{kind}\n{:<31}{}",
                    s.name,
                    s.source.as_str(),
                    "",
                    s.description
                );
            }
            for s in &catalog.shadowed {
                println!(
                    "{:<20} {:<9} hidden by the {} skill of the same name",
                    s.name,
                    s.source.as_str(),
                    catalog
                        .get(&s.name)
                        .map(|w| w.source.as_str())
                        .unwrap_or("other")
                );
            }
            for p in &catalog.problems {
                println!("invalid: {} ({}): {}", p.dir.display(), p.source, p.reason);
            }
            Ok(ExitCode::SUCCESS)
        }
        SkillsCommand::Show { name } => {
            let catalog = Catalog::discover(&roots, &env);
            let Some(skill) = catalog.get(&name) else {
                eprintln!("error: no skill named '{name}' (see `picoclaw skills list`)");
                return Ok(ExitCode::from(1));
            };
            println!("name:        {}", skill.name);
            println!("description: {}", skill.description);
            println!("source:      {} ({})", skill.source, skill.dir.display());
            if let Some(h) = &skill.homepage {
                println!("homepage:    {h}");
            }
            if skill.available() {
                println!("status:      available");
            } else {
                println!("status:      unavailable: {}", skill.missing.join("; "));
            }
            if let Some(m) = &skill.manifest {
                println!("entry:       {} (version {})", m.entry, m.version);
                for t in &m.tools {
                    println!("tool:        {}: {}", t.name, t.description);
                }
                let granted = settings.granted(&skill.name);
                let p = &m.permissions;
                println!(
                    "permissions: network {}, workspace_write {}, env [{}]",
                    yes_no(p.network, granted.network),
                    yes_no(p.workspace_write, granted.workspace_write),
                    p.env.join(", ")
                );
            }
            if skill.file.file_name().is_some_and(|n| n == "SKILL.md") {
                println!();
                println!(
                    "{}",
                    skill.instructions().map_err(anyhow::Error::msg)?.trim_end()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SkillsCommand::Install {
            source,
            workspace: into_workspace,
            force,
        } => {
            let dest = if into_workspace {
                workspace.join("skills")
            } else {
                paths.global_skills_dir()
            };
            let options = InstallOptions::default()
                .git_host(settings.git_host.clone())
                .force(force);
            eprintln!("installing {source} into {} ...", dest.display());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            match runtime.block_on(picoclaw_skills::install(&source, &dest, &options, &env)) {
                Ok(skill) => {
                    println!("installed {} into {}", skill.name, skill.dir.display());
                    if !skill.available() {
                        println!(
                            "note: it cannot be used here yet: {}",
                            skill.missing.join("; ")
                        );
                    }
                    let shadowing = Catalog::discover(&roots, &env)
                        .get(&skill.name)
                        .filter(|w| w.dir != skill.dir)
                        .map(|w| w.source);
                    if let Some(source) = shadowing {
                        println!(
                            "note: the {source} skill of the same name takes precedence over it"
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        SkillsCommand::Remove { name } => {
            picoclaw_skills::validate_name(&name).map_err(anyhow::Error::msg)?;
            let catalog = Catalog::discover(&roots, &env);
            let found = catalog
                .skills
                .iter()
                .chain(&catalog.shadowed)
                .find(|s| s.name == name && s.source != Source::Builtin);
            let Some(skill) = found else {
                if catalog.get(&name).is_some() {
                    eprintln!(
                        "error: '{name}' is a built-in skill; turn built-ins off with \
                         tools.skills.builtin = false, or hide it with a workspace skill of the \
                         same name"
                    );
                } else {
                    eprintln!("error: no installed skill named '{name}'");
                }
                return Ok(ExitCode::from(1));
            };
            std::fs::remove_dir_all(&skill.dir)
                .with_context(|| format!("cannot remove {}", skill.dir.display()))?;
            println!("removed {} ({})", name, skill.dir.display());
            Ok(ExitCode::SUCCESS)
        }
        SkillsCommand::Check => {
            let catalog = Catalog::discover(&roots, &env);
            let mut ok = true;
            for s in &catalog.skills {
                if s.available() {
                    println!("ok        {} ({})", s.name, s.source);
                } else {
                    // A built-in skill for a program this machine lacks is not a fault.
                    ok &= s.source == Source::Builtin;
                    println!(
                        "missing   {} ({}): {}",
                        s.name,
                        s.source,
                        s.missing.join("; ")
                    );
                }
            }
            for p in &catalog.problems {
                ok = false;
                println!("invalid   {} ({}): {}", p.dir.display(), p.source, p.reason);
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn yes_no(declared: bool, granted: bool) -> &'static str {
    match (declared, granted) {
        (false, _) => "no",
        (true, true) => "yes (granted)",
        (true, false) => "asked, not granted",
    }
}
