//! `pcitrack policy test`: runs policy test files, the way a vendor checks a policy before
//! shipping it.
//!
//! A test file (TOML, or JSON with the same keys) holds a configuration, devices (records as
//! `pcitrack discover --format json` prints them, or a sysfs tree), optional policy files, and
//! the verdicts expected:
//!
//! ```toml
//! policies = ["connectx.wasm"]          # relative to the test file; added to the defaults
//! [config.pci]                          # the agent's configuration, same shape
//! device_spec = ['{"vendor_id": "15b3"}']
//! [[device]]
//! address = "0000:81:00.1"
//! vendor_id = "15b3"
//! product_id = "101e"
//! class_code = "020000"
//! dev_type = "type-VF"
//! [[expect]]
//! address = "0000:81:00.1"
//! assignable = true
//! tags = { physical_network = "physnet1" }   # compared exactly when given
//! remote_managed = false                      # optional
//! decided_by = "matcher"                      # optional
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use pcitrack_model::{Device, PciAddress};
use pcitrack_runtime::DeviceVerdict;
use serde::Deserialize;

use super::output::outln;
use crate::config::Config;

/// One test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Policy files added to the embedded defaults, relative to the test file.
    #[serde(default)]
    pub policies: Vec<PathBuf>,
    /// The agent configuration (`[pci]`, `[policies.*]`, ...).
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// Device records.
    #[serde(default, rename = "device")]
    pub devices: Vec<Device>,
    /// A sysfs tree to discover the devices from instead, relative to the test file.
    #[serde(default)]
    pub sysfs: Option<PathBuf>,
    /// What each device should get.
    #[serde(rename = "expect")]
    pub expectations: Vec<Expectation>,
}

/// The expected verdict on one device; fields left out are not checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The device.
    pub address: PciAddress,
    /// Assignable or not.
    pub assignable: bool,
    /// Exactly these tags.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// The pooling value of remote_managed.
    #[serde(default)]
    pub remote_managed: Option<bool>,
    /// The deciding policy.
    #[serde(default)]
    pub decided_by: Option<String>,
}

impl TestFile {
    /// Reads a test file (`.json` as JSON, anything else as TOML).
    pub fn load(path: &Path) -> anyhow::Result<TestFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid policy test (JSON)", path.display()))
        } else {
            toml::from_str(&text)
                .with_context(|| format!("{} is not a valid policy test (TOML)", path.display()))
        }
    }

    /// The configuration it holds, checked like the agent's own.
    pub fn config(&self, path: &Path) -> anyhow::Result<Config> {
        let table = self.config.clone().unwrap_or_default();
        let text = toml::to_string(&table).context("re-encoding the [config] table")?;
        Ok(Config::parse(&text, path)?)
    }
}

/// The differences between what was expected and what the chain decided; empty when they agree.
pub fn differences(expect: &Expectation, got: Option<&DeviceVerdict>) -> Vec<String> {
    let a = expect.address;
    let Some(got) = got else {
        return vec![format!("{a}: no such device in the test's devices")];
    };
    let mut out = Vec::new();
    if got.assignable != expect.assignable {
        out.push(format!(
            "{a} assignable: expected {}, got {} (decided by {}{})",
            expect.assignable,
            got.assignable,
            got.decided_by,
            got.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
    }
    if let Some(tags) = &expect.tags {
        let actual: BTreeMap<String, String> = got.tags.iter().cloned().collect();
        if &actual != tags {
            out.push(format!(
                "{a} tags: expected {}, got {}",
                show(tags),
                show(&actual)
            ));
        }
    }
    if let Some(rm) = expect.remote_managed
        && rm != got.remote_managed
    {
        out.push(format!(
            "{a} remote_managed: expected {rm}, got {}",
            got.remote_managed
        ));
    }
    if let Some(by) = &expect.decided_by
        && **by != *got.decided_by
    {
        out.push(format!(
            "{a} decided_by: expected {by}, got {}",
            got.decided_by
        ));
    }
    out
}

fn show(tags: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Runs one file; returns (passed, failed) expectation counts after printing the outcome.
fn run_file(path: &Path, extra_policies: Option<&Path>) -> anyhow::Result<(usize, usize)> {
    let test = TestFile::load(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut config = test.config(path)?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    config.agent.state_dir = Some(scratch.path().join("state"));
    let dir = match extra_policies {
        Some(dir) => dir.to_path_buf(),
        None => {
            let dir = scratch.path().join("policies");
            std::fs::create_dir_all(&dir)?;
            for p in &test.policies {
                let from = base.join(p);
                let name = from
                    .file_name()
                    .with_context(|| format!("{}: no file name", from.display()))?;
                std::fs::copy(&from, dir.join(name)).with_context(|| {
                    format!("{}: policy file {}", path.display(), from.display())
                })?;
            }
            dir
        }
    };
    let mut devices = test.devices.clone();
    if let Some(sysfs) = &test.sysfs {
        let source = super::source::DeviceSource {
            sysfs_root: Some(base.join(sysfs)),
            devices: None,
        };
        devices.extend(super::source::read_devices(&source, &config)?);
    }
    devices.sort_by_key(|d| d.address);
    super::source::each_address_once(&devices).with_context(|| path.display().to_string())?;
    let policies = crate::policies::load(&config, Some(&dir))?;
    if let Some(e) = policies.loaded.errors.first() {
        bail!("{}: {e}", path.display());
    }
    let assessments = policies.loaded.set.assess(&devices);
    let (mut passed, mut failed) = (0, 0);
    let mut report = Vec::new();
    for expect in &test.expectations {
        let got = assessments.iter().find(|a| a.address == expect.address);
        let diff = differences(expect, got);
        if diff.is_empty() {
            passed += 1;
        } else {
            failed += 1;
            report.extend(diff);
        }
    }
    if failed == 0 {
        outln!("ok   {} ({passed} expectations)", path.display());
    } else {
        outln!("FAIL {}", path.display());
        for line in report {
            outln!("    {line}");
        }
    }
    Ok((passed, failed))
}

/// Runs every test file; non-zero exit when any expectation fails or a file cannot run.
pub fn run(
    files: &[PathBuf],
    policies: Option<&Path>,
    _config: &Config,
) -> anyhow::Result<ExitCode> {
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for file in files {
        match run_file(file, policies) {
            Ok((p, f)) => {
                passed += p;
                failed += f;
            }
            Err(e) => {
                broken += 1;
                outln!("ERROR {}: {e:#}", file.display());
            }
        }
    }
    outln!(
        "policy tests: {passed} expectations met, {failed} not met, {broken} file(s) could not run"
    );
    Ok(if failed == 0 && broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn assessment(assignable: bool, tags: &[(&str, &str)]) -> DeviceVerdict {
        DeviceVerdict {
            address: "0000:81:00.1".parse().unwrap(),
            assignable,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
                .into(),
            remote_managed: false,
            decided_by: Arc::from("matcher"),
            reason: (!assignable).then(|| Arc::from("matches no [pci] device_spec")),
        }
    }

    #[test]
    fn parses_a_test_file_and_its_config() {
        let text = r#"
[config.pci]
device_spec = ['{"vendor_id": "15b3"}']
[[device]]
address = "0000:81:00.1"
vendor_id = "15b3"
product_id = "101e"
class_code = "020000"
dev_type = "type-VF"
[[expect]]
address = "0000:81:00.1"
assignable = true
tags = { physical_network = "physnet1" }
"#;
        let t: TestFile = toml::from_str(text).unwrap();
        assert_eq!(t.devices.len(), 1);
        assert_eq!(
            t.config(Path::new("t.toml")).unwrap().pci.device_spec,
            vec![r#"{"vendor_id": "15b3"}"#]
        );
        assert!(
            toml::from_str::<TestFile>(
                "[[expect]]\naddress = '0000:81:00.1'\nassignable = true\ncolour = 1\n"
            )
            .is_err()
        );
    }

    #[test]
    fn a_mismatch_names_the_device_the_field_and_both_values() {
        let expect = Expectation {
            address: "0000:81:00.1".parse().unwrap(),
            assignable: true,
            tags: Some(BTreeMap::from([(
                "physical_network".to_string(),
                "physnet1".to_string(),
            )])),
            remote_managed: Some(false),
            decided_by: Some("matcher".into()),
        };
        assert!(
            differences(
                &expect,
                Some(&assessment(true, &[("physical_network", "physnet1")]))
            )
            .is_empty()
        );
        let d = differences(
            &expect,
            Some(&assessment(true, &[("physical_network", "physnet2")])),
        );
        assert_eq!(
            d,
            vec![
                r#"0000:81:00.1 tags: expected {physical_network="physnet1"}, got {physical_network="physnet2"}"#
            ]
        );
        let d = differences(&expect, Some(&assessment(false, &[])));
        assert!(
            d[0].starts_with(
                "0000:81:00.1 assignable: expected true, got false (decided by matcher: matches no"
            ),
            "{d:?}"
        );
        assert_eq!(
            differences(&expect, None),
            vec!["0000:81:00.1: no such device in the test's devices"]
        );
    }
}
