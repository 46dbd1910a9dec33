//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};

/// The directory holding `shared/` (the project's fixtures and Nova vectors): `../shared`
/// beside the repository, found by walking up from this crate.
pub fn shared_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared"))
        .find(|s| s.join("sysfs").is_dir() && s.join("nova-pci").is_dir())
        .unwrap_or_else(|| {
            panic!(
                "no shared/ with sysfs/ and nova-pci/ above {}",
                here.display()
            )
        })
}

/// Makes a component of a world given as WIT text, with a dummy core module behind it: the
/// quickest way to get a well-formed component that is *not* a proper policy.
pub fn component_of_world(wit: &str, world: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_str("test.wit", wit).expect("test WIT parses");
    let world = resolve
        .select_world(&[pkg], Some(world))
        .expect("world exists");
    let mut module = wit_component::dummy_module(
        &resolve,
        world,
        wit_parser::ManglingAndAbi::Legacy(wit_parser::LiftLowerAbi::Sync),
    );
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        // Plain (non-canonical) names, as every policy build makes them.
        false,
    )
    .expect("metadata embeds");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.validate(true).encode())
        .expect("component encodes")
}
