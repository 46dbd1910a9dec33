//! Recognising a policy: is it a component, of which kind, of which contract version, and
//! does it import anything it must not.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::contract::{CONTRACT_VERSION, PACKAGE};
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

    /// The full export name this agent expects (`pcitrack:policy/matcher@0.1.0`).
    pub fn export_name(self) -> String {
        format!("{PACKAGE}/{}@{CONTRACT_VERSION}", self.as_str())
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

/// The kind of a compiled component, after checking its exports and imports against the
/// contract.
pub(crate) fn classify(
    name: &str,
    engine: &Engine,
    component: &Component,
) -> Result<PolicyKind, LoadError> {
    let ty = component.component_type();
    let allowed_imports = [
        format!("{PACKAGE}/host@{CONTRACT_VERSION}"),
        format!("{PACKAGE}/types@{CONTRACT_VERSION}"),
    ];
    let forbidden: Vec<String> = ty
        .imports(engine)
        .map(|(n, _)| n.to_string())
        .filter(|n| !allowed_imports.contains(n))
        .collect();
    if !forbidden.is_empty() {
        return Err(LoadError::ForbiddenImports {
            name: name.into(),
            imports: forbidden.join(", "),
        });
    }
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let kinds: Vec<PolicyKind> = PolicyKind::ALL
        .into_iter()
        .filter(|k| exports.contains(&k.export_name()))
        .collect();
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
                    expected: CONTRACT_VERSION,
                },
                None => LoadError::NotAPolicy {
                    name: name.into(),
                    version: CONTRACT_VERSION,
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
