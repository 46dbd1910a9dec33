//! `pcitrack placement show`: what the running agent reports to Placement beside what
//! Placement holds, and the differences (the agent's `GET /v1/placement`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output::{Format, outln, table, write_json};
use crate::client::Client;
use crate::config::Config;
use crate::daemon::placement::{InventoryRow, PlacementShow, ProviderRow};

/// `pcitrack placement ...`.
#[derive(Debug, Subcommand)]
pub enum PlacementCommand {
    /// Show the providers the agent reports (inventories, traits) beside what Placement holds
    /// (inventories, traits, usages), and the changes that would bring Placement in step.
    ///
    /// Exit status: 0 when Placement holds what the agent reports; 1 when they differ (the
    /// reporter is behind, Placement was changed by hand, or it refuses); 2 when they cannot
    /// be compared (no agent answers, the agent does not report to Placement, or Placement
    /// cannot be read).
    Show(ShowArgs),
}

/// `pcitrack placement show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The agent's unix socket (default: the configuration's).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Exit status when Placement and the agent differ.
const DIFFER: u8 = 1;
/// Exit status when they cannot be compared.
const CANNOT_COMPARE: u8 = 2;

/// Runs a `placement` command.
///
/// # Errors
///
/// Standard output cannot be written.
pub fn run(cmd: PlacementCommand, config: &Config) -> anyhow::Result<ExitCode> {
    match cmd {
        PlacementCommand::Show(args) => show(args, config),
    }
}

fn show(args: ShowArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let client = Client::new(args.socket.unwrap_or_else(|| config.socket()));
    let shown: PlacementShow = match client.get("/v1/placement").and_then(|r| r.json()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "pcitrack: error: asking the agent at {}: {e:#}",
                client.socket().display()
            );
            return Ok(ExitCode::from(CANNOT_COMPARE));
        }
    };
    match args.format {
        Format::Json => write_json(&shown)?,
        Format::Table => print_table(&shown)?,
    }
    Ok(
        if !shown.enabled || shown.placement.is_none() || shown.reported.is_none() {
            if !shown.enabled {
                eprintln!(
                    "pcitrack: the agent does not report to Placement ([pci] report_in_placement \
                 is off)"
                );
            }
            ExitCode::from(CANNOT_COMPARE)
        } else if shown.in_step {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(DIFFER)
        },
    )
}

fn inventory(i: Option<&InventoryRow>) -> String {
    match i {
        None => "-".into(),
        Some(i) => {
            let reserved = i.reserved.map_or("-".into(), |r| r.to_string());
            format!("{}/{}/{}", i.total, reserved, i.max_unit)
        }
    }
}

fn find<'a>(rows: &'a [ProviderRow], name: &str) -> Option<&'a ProviderRow> {
    rows.iter().find(|p| p.name == name)
}

fn print_table(s: &PlacementShow) -> anyhow::Result<()> {
    if !s.enabled {
        outln!("reporting to Placement: off");
        return Ok(());
    }
    let status = s.status.clone().unwrap_or_default();
    outln!(
        "root: {} ({})   state: {}   pending changes: {}   last success: {}",
        s.root_name.as_deref().unwrap_or("?"),
        s.root_uuid.map_or("not created".into(), |u| u.to_string()),
        status.state.as_deref().unwrap_or("?"),
        status.pending_changes,
        status
            .last_success
            .map_or("never".into(), |t| t.to_string()),
    );
    if let Some(e) = &status.last_error {
        outln!("last error: {e}");
    }
    if let Some(e) = &s.placement_error {
        outln!("Placement could not be read: {e}");
    }
    let empty = Vec::new();
    let reported = s.reported.as_ref().unwrap_or(&empty);
    let held = s.placement.as_ref().unwrap_or(&empty);
    let mut names: Vec<&str> = held.iter().map(|p| p.name.as_str()).collect();
    for p in reported {
        if !names.contains(&p.name.as_str()) {
            names.push(&p.name);
        }
    }
    let mut cells = Vec::new();
    for name in names {
        let r = find(reported, name);
        let h = find(held, name);
        let classes: BTreeSet<&String> = r
            .iter()
            .chain(h.iter())
            .flat_map(|p| p.inventories.keys())
            .collect();
        let traits = |p: Option<&ProviderRow>| {
            p.map_or("-".into(), |p| {
                let shown: Vec<&str> = p.traits.iter().map(String::as_str).collect();
                shown.join(",")
            })
        };
        let rows = if classes.is_empty() {
            vec![None]
        } else {
            classes.into_iter().map(Some).collect()
        };
        for (k, rc) in rows.into_iter().enumerate() {
            let rc_name = rc.cloned().unwrap_or_else(|| "-".into());
            let used = h
                .zip(rc)
                .and_then(|(h, rc)| h.usages.get(rc))
                .map_or("-".into(), |u| u.to_string());
            let first = k == 0;
            cells.push(vec![
                if first {
                    name.to_string()
                } else {
                    String::new()
                },
                rc_name,
                inventory(r.zip(rc).and_then(|(p, rc)| p.inventories.get(rc))),
                inventory(h.zip(rc).and_then(|(p, rc)| p.inventories.get(rc))),
                used,
                if first { traits(r) } else { String::new() },
                if first { traits(h) } else { String::new() },
            ]);
        }
    }
    super::output::out!(
        "{}",
        table(
            &[
                "PROVIDER",
                "RESOURCE CLASS",
                "REPORTED total/reserved/max",
                "PLACEMENT total/reserved/max",
                "USED",
                "REPORTED TRAITS",
                "PLACEMENT TRAITS",
            ],
            &cells,
        )
    );
    if s.differences.is_empty() {
        if s.in_step {
            outln!("in step: Placement holds what the agent reports");
        }
    } else {
        outln!("differences ({}):", s.differences.len());
        for d in &s.differences {
            outln!("  {d}");
        }
    }
    Ok(())
}
