//! A matcher that does what its configuration tells it to, good or bad. One component
//! covers the whole hostile corpus, so the tests build one crate instead of twenty.
//!
//! `init` reads the misdeed from the config string: `ok`, `refuse`, `loop-init`, or a
//! misdeed for `evaluate`: `loop`, `memory`, `panic`, `panic-last` (a call whose targets
//! include the inventory's last device panics; any other assigns as `ok`), `unreachable`,
//! `recursion`, `million-tags`, `huge-string`, `extra-verdicts`, `bad-index`, `flip`,
//! `log-flood`. The agent hands policies a JSON object; there the misdeed is its `"misdeed"`
//! key (read with a plain search: a JSON parser would make this test policy larger than
//! what it tests).

use std::cell::Cell;

use pcitrack_policy_sdk::{Inventory, MatchOutput, Matcher, PolicyInfo, Tag};

/// The misbehaving matcher.
pub struct Hostile {
    misdeed: String,
}

thread_local! {
    /// Survives between calls only if the host reuses an instance; it must not.
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

#[inline(never)]
fn recurse(depth: u64, sink: &mut [u64; 64]) -> u64 {
    sink[(depth % 64) as usize] = depth;
    if depth == u64::MAX {
        0
    } else {
        recurse(depth + 1, sink) + sink[3]
    }
}

/// The misdeed: the whole config, or the string value of a `"misdeed"` key in a JSON object.
fn misdeed_of(config: &str) -> String {
    let config = config.trim();
    if !config.starts_with('{') {
        return config.to_string();
    }
    let Some(at) = config.find("\"misdeed\"") else {
        return "ok".into();
    };
    let rest = &config[at + "\"misdeed\"".len()..];
    let rest = rest.trim_start().trim_start_matches(':').trim_start();
    rest.strip_prefix('"')
        .and_then(|r| r.split('"').next())
        .unwrap_or("ok")
        .to_string()
}

impl Matcher for Hostile {
    fn describe() -> PolicyInfo {
        PolicyInfo::new("hostile", "0.0.0", "misbehaves on purpose")
    }

    fn init(config: &str) -> Result<Self, String> {
        let misdeed = misdeed_of(config);
        match misdeed.as_str() {
            "refuse" => Err("refused: this config is wrong on purpose".into()),
            "loop-init" => loop {
                std::hint::black_box(());
            },
            _ => Ok(Hostile { misdeed }),
        }
    }

    fn evaluate(
        &self,
        inventory: &Inventory,
        targets: &[u32],
        out: &mut MatchOutput,
    ) -> Result<(), String> {
        let calls = CALLS.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        match self.misdeed.as_str() {
            "loop" => loop {
                std::hint::black_box(());
            },
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile policy panics on purpose"),
            "panic-last"
                if targets.last().map(|&t| t as usize + 1) == Some(inventory.devices.len()) =>
            {
                panic!("hostile policy panics on the last device on purpose")
            }
            "unreachable" => {
                #[cfg(target_family = "wasm")]
                core::arch::wasm32::unreachable();
                #[cfg(not(target_family = "wasm"))]
                unreachable!("native build");
            }
            "recursion" => {
                let mut sink = [0u64; 64];
                let n = recurse(0, &mut sink);
                std::hint::black_box(n);
                Ok(())
            }
            "million-tags" => {
                let tags = (0..1_000_000)
                    .map(|i| Tag::new(format!("k{i}"), "v"))
                    .collect();
                let set = out.add_tag_set(tags);
                targets.iter().for_each(|_| out.assign(set));
                Ok(())
            }
            "huge-string" => {
                let set = out.add_tag_set(vec![Tag::new("physical_network", "x".repeat(16 << 20))]);
                targets.iter().for_each(|_| out.assign(set));
                Ok(())
            }
            "extra-verdicts" => {
                let set = out.add_tag_set(vec![]);
                (0..targets.len() + 5).for_each(|_| out.assign(set));
                Ok(())
            }
            "bad-index" => {
                targets.iter().for_each(|_| out.assign(999));
                Ok(())
            }
            "flip" => {
                // Assigns on the first call of an instance, rejects on any later one.
                let set = out.add_tag_set(vec![Tag::new("call", calls.to_string())]);
                for _ in targets {
                    if calls == 1 {
                        out.assign(set)
                    } else {
                        out.reject("second call")
                    }
                }
                Ok(())
            }
            "log-flood" => {
                for _ in 0..10_000 {
                    pcitrack_policy_sdk::log::warn(&"flood ".repeat(10_000));
                }
                let set = out.add_tag_set(vec![]);
                targets.iter().for_each(|_| out.assign(set));
                Ok(())
            }
            _ => {
                let set = out.add_tag_set(vec![Tag::new("policy", "hostile-ok")]);
                targets.iter().for_each(|_| out.assign(set));
                Ok(())
            }
        }
    }
}

pcitrack_policy_sdk::export_matcher!(Hostile);
