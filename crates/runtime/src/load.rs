//! Recognising a policy: is it a component, of which kind, of which contract version, and
//! does it import anything it must not.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::contract::{CONTRACT_VERSION, DEVICE_FACTS_FUNC, PACKAGE, SUPPORTED_VERSIONS};
use crate::error::LoadError;

/// The three kinds of policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// Decides which devices are assignable, with which tags.
    Matcher,
    /// Adds or changes tags, or rejects assignable devices.
    Tagger,
    /// Decides what happens to devices the host no longer reports.
    Cleanup,
}

impl PolicyKind {
    /// Every kind, in evaluation order.
    pub const ALL: [PolicyKind; 3] = [PolicyKind::Matcher, PolicyKind::Tagger, PolicyKind::Cleanup];

    /// The interface name in the contract.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Matcher => "matcher",
            PolicyKind::Tagger => "tagger",
            PolicyKind::Cleanup => "cleanup",
        }
    }

    /// The full export name of this kind in the contract this agent is built against
    /// (`pcitrack:policy/matcher@0.1.1`); a policy may also export it under an older version
    /// of the same track (`@0.1.0`, see [`PolicyKind::of_export`]).
    pub fn export_name(self) -> String {
        format!("{PACKAGE}/{}@{CONTRACT_VERSION}", self.as_str())
    }

    /// The kind a component export name stands for, when it is one of this contract's
    /// interfaces at a version this agent loads (`pcitrack:policy/cleanup@0.1.0` or `@0.1.1`).
    pub fn of_export(name: &str) -> Option<PolicyKind> {
        let (interface, version) = contract_item(name)?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return None;
        }
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == interface)
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of binary the bytes are, from the header alone (before any compilation).
pub(crate) fn check_header(name: &str, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm { name: name.into() });
    }
    // Core modules have version 1 in bytes 4..8; components have layer 1 in bytes 6..8.
    if bytes[6..8] != [1, 0] {
        return Err(LoadError::CoreModule { name: name.into() });
    }
    Ok(())
}

/// The versions this agent loads, for messages: `0.1.0 or 0.1.1`.
const SUPPORTED: &str = "0.1.0 or 0.1.1";

/// `("matcher", "0.1.0")` for `pcitrack:policy/matcher@0.1.0`; `None` for a name outside the
/// contract's package or without a version.
fn contract_item(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix(PACKAGE)?
        .strip_prefix('/')?
        .split_once('@')
}

/// Whether an import is one the contract allows: `host` or `types`, at a version this agent
/// loads.
fn allowed_import(name: &str) -> bool {
    contract_item(name).is_some_and(|(interface, version)| {
        matches!(interface, "host" | "types") && SUPPORTED_VERSIONS.contains(&version)
    })
}

/// Whether the component imports `host.get-device-facts` (contract 0.1.1): only then does
/// the agent build the facts for its calls. A policy built with 0.1.1 that never calls the
/// function does not import it (wit-component keeps only the imports the code uses).
pub(crate) fn reads_device_facts(engine: &Engine, component: &Component) -> bool {
    component.component_type().imports(engine).any(|(n, item)| {
        contract_item(n).is_some_and(|(interface, _)| interface == "host")
            && match item.ty {
                ComponentItem::ComponentInstance(host) => {
                    host.get_export(engine, DEVICE_FACTS_FUNC).is_some()
                }
                _ => false,
            }
    })
}

/// The kind of a compiled component, after checking its exports and imports against the
/// contract: exactly one of `matcher`, `tagger` or `cleanup` at a version the agent loads
/// (0.1.0 or 0.1.1), and no import but `host` and `types` of those versions.
pub(crate) fn classify(
    name: &str,
    engine: &Engine,
    component: &Component,
) -> Result<PolicyKind, LoadError> {
    let ty = component.component_type();
    let forbidden: Vec<String> = ty
        .imports(engine)
        .map(|(n, _)| n.to_string())
        .filter(|n| !allowed_import(n))
        .collect();
    if !forbidden.is_empty() {
        return Err(LoadError::ForbiddenImports {
            name: name.into(),
            imports: forbidden.join(", "),
        });
    }
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let mut kinds: Vec<PolicyKind> = exports
        .iter()
        .filter_map(|e| PolicyKind::of_export(e))
        .collect();
    // One kind exported at two versions of the track is still one kind.
    kinds.sort();
    kinds.dedup();
    match kinds.as_slice() {
        [kind] => Ok(*kind),
        [] => {
            let other_version = exports.iter().find(|e| {
                PolicyKind::ALL
                    .iter()
                    .any(|k| e.starts_with(&format!("{PACKAGE}/{}@", k.as_str())))
            });
            Err(match other_version {
                Some(found) => LoadError::WrongVersion {
                    name: name.into(),
                    found: found.clone(),
                    expected: SUPPORTED,
                },
                None => LoadError::NotAPolicy {
                    name: name.into(),
                    version: SUPPORTED,
                    exports: if exports.is_empty() {
                        "nothing".into()
                    } else {
                        exports.join(", ")
                    },
                },
            })
        }
        several => Err(LoadError::SeveralKinds {
            name: name.into(),
            kinds: several
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Checks bytes without keeping anything: the kind of policy they hold, or why they are
/// refused. Compiles the component, so it costs what a load costs.
///
/// # Errors
///
/// [`LoadError::NotWasm`] or [`LoadError::CoreModule`] when the header is not a component's,
/// [`LoadError::Invalid`] when wasmtime cannot compile it, and the classification errors
/// ([`LoadError::NotAPolicy`], [`LoadError::WrongVersion`], [`LoadError::SeveralKinds`],
/// [`LoadError::ForbiddenImports`]) when it is not exactly one policy of this contract.
pub fn inspect(engine: &Engine, name: &str, bytes: &[u8]) -> Result<PolicyKind, LoadError> {
    check_header(name, bytes)?;
    let component = Component::new(engine, bytes).map_err(|e| LoadError::Invalid {
        name: name.into(),
        reason: format!("{e:#}"),
    })?;
    classify(name, engine, &component)
}
