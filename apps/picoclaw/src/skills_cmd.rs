//! `picoclaw skills`: list, show, install, remove and check skills; grant an executable global
//! skill permissions (bound to its folder and files) and revoke them.

use anyhow::Context;
use picoclaw_gateway::SkillsSettings;
use picoclaw_skills::{Catalog, Grant, InstallOptions, Permissions, Skill, SkillRoots, Source};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct SkillsArgs {
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
    /// Validate every skill folder and every grant; exit code 1 when a skill is invalid, an
    /// installed one cannot be used here, or a grant no longer applies.
    Check,
    /// Let a global executable skill do what its manifest declares beyond the default
    /// confinement. The grant holds for the skill in its folder under ~/.picoclaw/skills with
    /// its manifest.json and entry as they are now; a workspace skill of the same name never
    /// gets it, and a changed skill loses it until granted again.
    Grant {
        name: String,
        /// Open network connections.
        #[arg(long)]
        network: bool,
        /// Write in the workspace.
        #[arg(long)]
        workspace_write: bool,
        /// Pass this environment variable of picoclaw's to the skill (repeatable).
        #[arg(long = "env", value_name = "VAR")]
        env: Vec<String>,
        /// Everything the manifest declares.
        #[arg(long, conflicts_with_all = ["network", "workspace_write", "env"])]
        declared: bool,
    },
    /// Take back the permissions `skills grant` gave a skill.
    Revoke { name: String },
}

pub(crate) fn run(config: Option<PathBuf>, args: SkillsArgs) -> anyhow::Result<ExitCode> {
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
                    let (granted, not_applied) = effective_grant(&settings, s);
                    let ungranted = s
                        .manifest
                        .as_ref()
                        .map(|m| m.permissions.not_granted(&granted))
                        .unwrap_or_default();
                    let mut state = if ungranted.is_empty() {
                        "available".to_owned()
                    } else {
                        format!(
                            "available, without {} (`picoclaw skills show {}` says how to grant)",
                            ungranted.join(", "),
                            s.name
                        )
                    };
                    if let Some(why) = not_applied {
                        state.push_str(&format!(
                            "; its grant does not apply: {why} (see `picoclaw skills check`)"
                        ));
                    }
                    state
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
                let (granted, not_applied) = effective_grant(&settings, skill);
                let p = &m.permissions;
                println!(
                    "permissions: network {}, workspace_write {}, env [{}]",
                    yes_no(p.network, granted.network),
                    yes_no(p.workspace_write, granted.workspace_write),
                    p.env
                        .iter()
                        .map(|v| format!("{v} {}", yes_no(true, granted.env.contains(v))))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if let Some(why) = not_applied {
                    println!("grant:       does not apply: {why}");
                }
                let ungranted = p.not_granted(&granted);
                if !ungranted.is_empty() {
                    if skill.source == Source::Global {
                        println!(
                            "grant with:  {}",
                            grant_command(&skill.name, &asked(&ungranted, p))
                        );
                    } else {
                        println!(
                            "grant with:  nothing: a {} skill gets no permissions (the model \
                             can write there); only global skills can be granted",
                            skill.source
                        );
                    }
                }
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
                    if let Ok(Some(grant)) = settings.grant(&skill.name)
                        && !into_workspace
                    {
                        let check = grant.check(&skill);
                        if !check.applies() {
                            println!(
                                "note: its grant does not apply: {}; grant it again if you \
                                 trust this version: {}",
                                check.reason(),
                                grant_command(&skill.name, &grant.permissions)
                            );
                        }
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
            ok &= check_grants(&settings, &catalog);
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        SkillsCommand::Grant {
            name,
            network,
            workspace_write,
            env: vars,
            declared,
        } => {
            let catalog = Catalog::discover(&roots, &env);
            let Some(skill) = global_skill(&catalog, &name) else {
                match catalog.get(&name) {
                    Some(other) => eprintln!(
                        "error: '{name}' is a {} skill ({}); only global skills (in {}) can be \
                         granted permissions. If you wrote it and trust it, install it there \
                         (`picoclaw skills install {}`) and grant that copy",
                        other.source,
                        other.dir.display(),
                        paths.global_skills_dir().display(),
                        other.dir.display()
                    ),
                    None => eprintln!(
                        "error: no global skill named '{name}' (see `picoclaw skills list`)"
                    ),
                }
                return Ok(ExitCode::from(1));
            };
            let Some(manifest) = &skill.manifest else {
                eprintln!(
                    "error: '{name}' has no manifest.json: it runs no program, so there is \
                     nothing to grant"
                );
                return Ok(ExitCode::from(1));
            };
            let declared_perms = &manifest.permissions;
            let wanted = if declared {
                declared_perms.clone()
            } else {
                Permissions::none()
                    .with_network(network)
                    .with_workspace_write(workspace_write)
                    .with_env(vars)
            };
            if wanted == Permissions::default() {
                let all = declared_perms.not_granted(&Permissions::default());
                eprintln!(
                    "error: say what to grant: --network, --workspace-write, --env VAR, or \
                     --declared for everything its manifest declares ({})",
                    if all.is_empty() {
                        "nothing".to_owned()
                    } else {
                        all.join(", ")
                    }
                );
                return Ok(ExitCode::from(2));
            }
            let undeclared = wanted.not_granted(declared_perms);
            if !undeclared.is_empty() {
                eprintln!(
                    "error: the manifest of '{name}' does not declare {}; a skill gets only what \
                     it declares and you grant. Nothing was changed",
                    undeclared.join(", ")
                );
                return Ok(ExitCode::from(1));
            }
            let grant = Grant::bind(skill, wanted).map_err(anyhow::Error::msg)?;
            set_grant(paths.config_file(), &name, Some(grant.to_json()))?;
            println!(
                "granted {name} {} ({}); the grant holds while its manifest.json and {} stay \
                 as they are now",
                grant
                    .permissions
                    .not_granted(&Permissions::default())
                    .join(", "),
                skill.dir.display(),
                manifest.entry
            );
            if let Some(running) = catalog.get(&name)
                && running.source != Source::Global
            {
                println!(
                    "note: the {} skill of the same name ({}) is the one that runs, and it gets \
                     no grant",
                    running.source,
                    running.dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SkillsCommand::Revoke { name } => {
            if !set_grant(paths.config_file(), &name, None)? {
                eprintln!("error: '{name}' has no grant in tools.skills.permissions");
                return Ok(ExitCode::from(1));
            }
            println!("revoked the grant of {name}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The global skill `name`, whether it is the one that runs or is hidden by a workspace one.
fn global_skill<'a>(catalog: &'a Catalog, name: &str) -> Option<&'a Skill> {
    catalog
        .skills
        .iter()
        .chain(&catalog.shadowed)
        .find(|s| s.name == name && s.source == Source::Global)
}

/// What `skill` is granted now, and why the grant it has (if any) does not apply.
fn effective_grant(settings: &SkillsSettings, skill: &Skill) -> (Permissions, Option<String>) {
    match settings.grant(&skill.name) {
        Ok(None) => (Permissions::default(), None),
        Ok(Some(grant)) => {
            let check = grant.check(skill);
            if check.applies() {
                (grant.permissions, None)
            } else {
                (Permissions::default(), Some(check.reason()))
            }
        }
        Err(e) => (Permissions::default(), Some(e)),
    }
}

/// `skills check` for `tools.skills.permissions`: every grant applies to the global skill it
/// names, no workspace skill runs under a granted name. Prints a line per grant; false when
/// one needs the operator.
fn check_grants(settings: &SkillsSettings, catalog: &Catalog) -> bool {
    let mut ok = true;
    for name in settings.granted_names() {
        let grant = match settings.grant(&name) {
            Ok(Some(g)) => g,
            Ok(None) => continue,
            Err(e) => {
                ok = false;
                println!(
                    "grant     {name}: {e}; fix it, or remove it with `picoclaw skills revoke \
                     {name}`"
                );
                continue;
            }
        };
        let granted = grant.permissions.not_granted(&Permissions::default());
        let granted = if granted.is_empty() {
            "nothing".to_owned()
        } else {
            granted.join(", ")
        };
        if let Some(running) = catalog.get(&name)
            && running.source != Source::Global
        {
            ok = false;
            println!(
                "grant     {name} ({}): {} has the name of a granted skill and runs without \
                 the grant ({granted}); if you did not put it there, remove it",
                running.source,
                running.dir.display()
            );
        }
        let Some(skill) = global_skill(catalog, &name) else {
            println!(
                "grant     {name}: no global skill of that name is installed, so it applies to \
                 nothing (remove it with `picoclaw skills revoke {name}`)"
            );
            continue;
        };
        let check = grant.check(skill);
        if check.applies() {
            println!("granted   {name} (global): {granted}");
            continue;
        }
        ok = false;
        let declared = skill
            .manifest
            .as_ref()
            .map(|m| m.permissions.clone())
            .unwrap_or_default();
        let again = grant
            .permissions
            .intersect(&declared)
            .not_granted(&Permissions::default());
        let how = if again.is_empty() {
            format!("see `picoclaw skills show {name}`, then `picoclaw skills grant {name} ...`")
        } else {
            grant_command(&name, &asked(&again, &declared))
        };
        println!(
            "grant     {name} (global): {}; it runs without {granted} until you grant it again \
             (after checking the new version): {how}",
            check.reason()
        );
    }
    ok
}

/// The permissions named in `list` (worded as [`Permissions::not_granted`] words them).
fn asked(list: &[String], declared: &Permissions) -> Permissions {
    Permissions::none()
        .with_network(list.iter().any(|p| p == "network"))
        .with_workspace_write(list.iter().any(|p| p == "workspace_write"))
        .with_env(
            declared
                .env
                .iter()
                .filter(|v| list.contains(&format!("env {v}")))
                .cloned()
                .collect(),
        )
}

/// The command that grants `p` to the skill `name`.
fn grant_command(name: &str, p: &Permissions) -> String {
    let mut cmd = format!("picoclaw skills grant {name}");
    if p.network {
        cmd.push_str(" --network");
    }
    if p.workspace_write {
        cmd.push_str(" --workspace-write");
    }
    for v in &p.env {
        cmd.push_str(&format!(" --env {v}"));
    }
    cmd
}

/// Sets (or with `None` removes) `tools.skills.permissions.<name>` in config.json, keeping every
/// other key. Returns whether there was an entry before.
fn set_grant(file: &Path, name: &str, entry: Option<Value>) -> anyhow::Result<bool> {
    let mut raw: Value = match std::fs::read_to_string(file) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let mut node = &mut raw;
    for key in ["tools", "skills", "permissions"] {
        if !node.is_object() {
            anyhow::ensure!(
                node.is_null(),
                "{} has a `{key}` parent that is not an object; fix it by hand",
                file.display()
            );
            *node = json!({});
        }
        node = node
            .as_object_mut()
            .context("not an object")?
            .entry(key)
            .or_insert(Value::Null);
    }
    if !node.is_object() {
        *node = json!({});
    }
    let map = node.as_object_mut().context("not an object")?;
    let existed = match entry {
        Some(entry) => map.insert(name.to_owned(), entry).is_some(),
        None => map.remove(name).is_some(),
    };
    if existed || map.contains_key(name) {
        picoclaw_config::write_config_atomically(file, &raw)?;
    }
    Ok(existed)
}

fn yes_no(declared: bool, granted: bool) -> &'static str {
    match (declared, granted) {
        (false, _) => "no",
        (true, true) => "yes (granted)",
        (true, false) => "asked, not granted",
    }
}
