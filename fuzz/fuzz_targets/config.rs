//! `Config::parse` on arbitrary text: the agent's TOML file, which an operator writes and
//! the agent re-reads on SIGHUP and on every change.
//!
//! Properties: never panics; an accepted configuration is deterministic and everything the
//! agent derives from it (limits, paths, each policy's init configuration, the Nova
//! `[pci]` lists) can be computed without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pcitrack::config::Config;

fuzz_target!(|text: &str| {
    let path = Path::new("fuzz.toml");
    let Ok(config) = Config::parse(text, path) else {
        return;
    };
    assert_eq!(Config::parse(text, path).ok().as_ref(), Some(&config));
    let _ = config.limits();
    let _ = config.resync_interval();
    let _ = (
        config.sysfs_root(),
        config.policies_dir(),
        config.db(),
        config.socket(),
    );
    for name in ["matcher", "tagger", "cleanup"]
        .into_iter()
        .chain(config.policies.settings.keys().map(String::as_str))
    {
        let json = config.policy_config(name);
        let value: serde_json::Value = serde_json::from_str(&json).expect("policy config is JSON");
        assert!(value.is_object());
    }
    let _ = pcitrack_devspec::whitelist_from_config(&config.policy_config("matcher"));
    let _ = pcitrack_tracker::AliasTable::parse(&config.pci.alias);
});
