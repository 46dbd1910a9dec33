//! `pcitrack policy ...`: check, list, evaluate and build policies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Subcommand;
use pcitrack_runtime::{
    DeviceVerdict, Policy, PolicyEngine, PolicyKind, PolicyOrigin, policy_name, sha256_hex,
};
use serde::Serialize;

use super::output::{Format, out, outln, table, write_json_blocks};
use crate::config::Config;
use crate::ops::{VerdictRow, VerdictView, tags_in_map_order, write_pretty_rows};

/// `pcitrack policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file: print its kind, contract version, description and SHA-256 (the
    /// digest `[policies] allowed_sha256` lists), or why it is refused (non-zero exit).
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Show the effective chain of each kind: policy files, then the embedded defaults.
    List {
        /// Policies directory (default: the configuration's).
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Evaluate the matcher and tagger chains over devices and print each verdict.
    Eval {
        #[command(flatten)]
        source: super::source::DeviceSource,
        /// Policies directory added to the embedded defaults.
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Run policy test files (TOML or JSON: a config, devices or a sysfs tree, and the
    /// expected verdicts); print a diff for each mismatch; non-zero exit if any fails.
    Test {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Policies directory added to the embedded defaults (overrides the test files').
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
    },
    /// Build a policy crate into a component (for `wasm32-unknown-unknown`, then wrapped with
    /// wit-component), ready to drop into the policies directory.
    Build {
        /// The policy crate's directory (holding its Cargo.toml).
        dir: PathBuf,
        /// Where to write the component (default: `<package>.wasm` in the current directory).
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Runs a `policy` subcommand.
pub fn run(cmd: PolicyCommand, config: &Config) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { file } => check(&file, config),
        PolicyCommand::List { policies, format } => list(policies.as_deref(), config, format),
        PolicyCommand::Eval {
            source,
            policies,
            format,
        } => eval(&source, policies.as_deref(), config, format),
        PolicyCommand::Test { files, policies } => {
            super::policy_test::run(&files, policies.as_deref(), config)
        }
        PolicyCommand::Build { dir, out } => build(&dir, out.as_deref()),
    }
}

fn engine(config: &Config) -> anyhow::Result<PolicyEngine> {
    PolicyEngine::new(config.limits()).map_err(anyhow::Error::msg)
}

fn check(file: &Path, config: &Config) -> anyhow::Result<ExitCode> {
    let engine = engine(config)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = policy_name(file);
    let sha256 = sha256_hex(&bytes);
    if let Some(allowed) = config
        .allowed_digests()
        .map_err(|e| anyhow::anyhow!("[policies] {e}"))?
        && !allowed.permits(&bytes)
    {
        eprintln!(
            "{}: refused: its SHA-256 {sha256} is not in [policies] allowed_sha256",
            file.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let started = Instant::now();
    match Policy::load(
        &engine,
        &name,
        &bytes,
        PolicyOrigin::File(file.into()),
        &config.policy_config(&name),
        None,
    ) {
        Ok(p) => {
            let (pname, version, description) = p.info();
            outln!("{}: ok", file.display());
            outln!("  kind:        {}", p.kind());
            outln!("  exports:     {}", p.kind().export_name());
            outln!("  policy:      {pname} {version}");
            outln!("  description: {description}");
            outln!("  size:        {} bytes", bytes.len());
            outln!("  sha256:      {sha256}");
            outln!(
                "  load time:   {:.1} ms (compile, pre-link, init)",
                started.elapsed().as_secs_f64() * 1e3
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: refused: {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

#[derive(Serialize)]
struct ChainEntry {
    kind: &'static str,
    position: usize,
    name: String,
    origin: String,
    policy: String,
    version: String,
    description: String,
}

fn list(dir: Option<&Path>, config: &Config, format: Format) -> anyhow::Result<ExitCode> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config.policies_dir());
    let policies = crate::policies::load(config, Some(&dir))?;
    let mut entries = Vec::new();
    for kind in PolicyKind::ALL {
        for (i, p) in policies.loaded.set.chain(kind).iter().enumerate() {
            let (pname, version, description) = p.info();
            entries.push(ChainEntry {
                kind: kind.as_str(),
                position: i + 1,
                name: p.name().into(),
                origin: p.origin().to_string(),
                policy: pname.into(),
                version: version.into(),
                description: description.into(),
            });
        }
    }
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&entries)?),
        Format::Table => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.kind.into(),
                        e.position.to_string(),
                        e.name.clone(),
                        format!("{} {}", e.policy, e.version),
                        e.origin.clone(),
                    ]
                })
                .collect();
            out!("{}", table(&["KIND", "#", "NAME", "POLICY", "FROM"], &rows));
            for kind in PolicyKind::ALL {
                if policies.loaded.set.chain(kind).is_empty() {
                    outln!("{kind}: no policy; the built-in rule applies");
                }
            }
        }
    }
    for e in &policies.loaded.errors {
        eprintln!("refused: {e}");
    }
    Ok(if policies.loaded.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn eval(
    source: &super::source::DeviceSource,
    dir: Option<&Path>,
    config: &Config,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let devices = super::source::read_devices(source, config)?;
    let policies = crate::policies::load(config, dir)?;
    if !policies.loaded.errors.is_empty() {
        for e in &policies.loaded.errors {
            eprintln!("pcitrack: {e}");
        }
        bail!(
            "{} polic{} refused; nothing evaluated",
            policies.loaded.errors.len(),
            if policies.loaded.errors.len() == 1 {
                "y"
            } else {
                "ies"
            }
        );
    }
    let sockets = super::source::read_node_sockets(source, config);
    let set = policies.loaded.set.with_node_sockets(sockets);
    match format {
        Format::Json => {
            // This command is run on files of hundreds of thousands of records: each row is
            // written from its device and its chain verdict, borrowed, one at a time. No
            // `Assessment` is built (a copy of the device and a map of tags per device); the
            // tag sets, a handful shared by all the devices, are put in the map's order once.
            // Rows are written in blocks on every core; in a block, a row's start is written
            // from the device and its end copied from the first row with the same verdict.
            let verdicts = set.assess(&devices);
            let (sets, set_of) = sorted_tag_sets(&verdicts);
            write_json_blocks(devices.len(), |rows, buf| {
                let views = rows
                    .map(|i| VerdictView::of(&devices[i], &verdicts[i], &sets[set_of[i] as usize]));
                write_pretty_rows(views, buf)
            })?;
            // The process ends here: handing the records back to the allocator one by one
            // would cost more than the output did.
            std::mem::forget(set_of);
            std::mem::forget(sets);
            std::mem::forget(verdicts);
            std::mem::forget(devices);
        }
        Format::Table => {
            let assessed = set.assessments(devices);
            let rows: Vec<VerdictRow> = assessed.iter().map(VerdictRow::from).collect();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let tags = r
                        .tags
                        .iter()
                        .map(|(k, v)| format!("{k}={}", crate::ops::tag_cell(v)))
                        .collect::<Vec<_>>()
                        .join(",");
                    vec![
                        r.address.clone(),
                        if r.assignable {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        r.remote_managed.to_string(),
                        r.decided_by.clone(),
                        if r.assignable {
                            tags
                        } else {
                            r.reason.clone().unwrap_or_default()
                        },
                    ]
                })
                .collect();
            out!(
                "{}",
                table(
                    &[
                        "ADDRESS",
                        "ASSIGNABLE",
                        "REMOTE_MANAGED",
                        "DECIDED_BY",
                        "TAGS / REASON"
                    ],
                    &cells
                )
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A tag set as a row writes it ([`crate::ops::tags_in_map_order`]).
type SortedTags<'a> = Vec<(&'a str, &'a str)>;

/// The distinct tag sets of `verdicts` (told apart by their shared allocation) in the
/// order a row writes them, and each verdict's set.
fn sorted_tag_sets(verdicts: &[DeviceVerdict]) -> (Vec<SortedTags<'_>>, Vec<u32>) {
    let mut sets: Vec<SortedTags<'_>> = Vec::new();
    let mut seen: HashMap<*const (String, String), u32> = HashMap::new();
    let mut last: Option<(*const (String, String), u32)> = None;
    let set_of = verdicts
        .iter()
        .map(|v| {
            let key = v.tags.as_ptr();
            match last {
                Some((k, i)) if k == key => i,
                _ => {
                    let i = *seen.entry(key).or_insert_with(|| {
                        sets.push(tags_in_map_order(&v.tags));
                        (sets.len() - 1) as u32
                    });
                    last = Some((key, i));
                    i
                }
            }
        })
        .collect();
    (sets, set_of)
}

fn build(dir: &Path, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let parsed: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let Some(package) = parsed
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
    else {
        bail!("{} has no [package] name", manifest.display());
    };
    let target_dir = dir.join("target");
    let built = pcitrack_wasm_build::PolicyBuild {
        manifest: manifest.clone(),
        packages: vec![package.to_string()],
        target_dir,
        profile: "release".into(),
        target: pcitrack_wasm_build::POLICY_TARGET.into(),
    }
    .run()?;
    let component = &built[0].1;
    let dest = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(format!("{package}.wasm")));
    std::fs::copy(component, &dest).with_context(|| format!("writing {}", dest.display()))?;
    outln!("{}", dest.display());
    Ok(ExitCode::SUCCESS)
}
