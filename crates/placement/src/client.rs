//! A blocking client of OpenStack Placement's REST API (microversion 1.39, Placement
//! 16.0.0's highest) for what pcitrack needs: read one host's provider tree, send the
//! [`Change`]s of [`crate::diff()`] with the providers' generations, and read a consumer's
//! allocations. HTTP is `ureq`'s, with the configured timeout on every call; Placement's
//! error bodies (`{"errors": [{"status", "code", "title", "detail"}]}`) become
//! [`ClientError::Placement`] naming the method, the path, the status, Placement's code and
//! its detail.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Auth, TokenCache, authenticate};
use crate::diff::Change;
use crate::tree::{Inventory, ProviderTree, ResourceProvider};

/// The microversion every request names (`OpenStack-API-Version: placement 1.39`): POST
/// /resource_providers returns the provider with its generation (1.20+), `in_tree` (1.14+).
pub const MICROVERSION: &str = "placement 1.39";

/// Placement's code for a stale provider or consumer generation
/// (`placement/errors.py` `CONCURRENT_UPDATE`).
pub const CONCURRENT_UPDATE: &str = "placement.concurrent_update";

/// How to reach Placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// How to authenticate.
    pub auth: Auth,
    /// Placement's URL (`[placement] endpoint_override`); required with [`Auth::Token`],
    /// else the Keystone catalog's `placement` endpoint is used.
    pub endpoint_override: Option<String>,
    /// The longest any one HTTP call may take (`[placement] timeout_secs`).
    pub timeout: Duration,
}

/// Why a call to Placement (or Keystone) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Placement answered with an error status.
    #[error("{method} {path}: Placement answered {status} ({code}): {detail}")]
    Placement {
        /// The HTTP method.
        method: String,
        /// The path under the endpoint.
        path: String,
        /// The HTTP status.
        status: u16,
        /// Placement's error code (`placement.concurrent_update`, ...;
        /// `placement.undefined_code` when it gave none).
        code: String,
        /// Placement's detail (or the body when it was not Placement's error format).
        detail: String,
    },
    /// No answer: connection refused or closed, timeout, DNS.
    #[error("{method} {url}: {detail}")]
    Transport {
        /// The HTTP method.
        method: String,
        /// The full URL.
        url: String,
        /// What went wrong (ureq's words).
        detail: String,
    },
    /// An answer that is not what the API documents.
    #[error("{method} {path}: unexpected answer from Placement: {detail}")]
    BadResponse {
        /// The HTTP method.
        method: String,
        /// The path under the endpoint.
        path: String,
        /// What was wrong with it.
        detail: String,
    },
    /// Keystone refused the credentials or could not be reached, or Placement refused the
    /// token twice (401 after a renewal).
    #[error(
        "authentication failed for user {user} at {auth_url}: {detail} (check [placement] \
         auth_url, username, password, project_name and the domains)"
    )]
    Auth {
        /// Keystone's URL (`[placement] auth_url`).
        auth_url: String,
        /// `username@user_domain_name`.
        user: String,
        /// What Keystone or Placement said.
        detail: String,
    },
    /// Placement refused the fixed token.
    #[error(
        "{method} {path}: Placement refused the token (401): {detail} (check [placement] token)"
    )]
    TokenRefused {
        /// The HTTP method.
        method: String,
        /// The path under the endpoint.
        path: String,
        /// Placement's detail.
        detail: String,
    },
    /// Neither `endpoint_override` nor the catalog names Placement.
    #[error(
        "no Placement endpoint: {detail} (set [placement] endpoint_override, or check \
         region_name and valid_interfaces against the Keystone catalog)"
    )]
    NoEndpoint {
        /// Why.
        detail: String,
    },
}

impl ClientError {
    /// The HTTP status Placement answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Placement { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Placement's error code, if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Placement { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A 409: a stale generation (`placement.concurrent_update`), or a write the state
    /// Placement holds refuses (inventory in use, provider in use, duplicate name). The
    /// reporter re-reads the tree and recomputes the changes.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}

/// A Placement client. Cheap to clone (the clones share the connection pool and the
/// Keystone token); `new` does no I/O.
#[derive(Debug, Clone)]
pub struct PlacementClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    agent: ureq::Agent,
    config: ClientConfig,
    tokens: TokenCache,
}

/// A change Placement refused, after `done` changes it accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} (after {done} changes sent)")]
pub struct ApplyError {
    /// Changes sent before it.
    pub done: u32,
    /// The refusal.
    #[source]
    pub error: ClientError,
}

/// A consumer's allocations: resource provider uuid -> resource class -> units.
pub type Allocations = BTreeMap<Uuid, BTreeMap<String, u32>>;

impl PlacementClient {
    /// A client for `config`; no I/O until the first call.
    pub fn new(config: ClientConfig) -> PlacementClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        PlacementClient {
            inner: Arc::new(Inner {
                agent,
                config,
                tokens: TokenCache::default(),
            }),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// One request: the answer's status and JSON body (`Null` when empty). A 401 on a
    /// Keystone token renews the token and tries once more.
    ///
    /// # Errors
    ///
    /// [`ClientError::Placement`] for a status of 400 or more, [`ClientError::Transport`]
    /// without an answer, [`ClientError::Auth`], [`ClientError::TokenRefused`] or
    /// [`ClientError::NoEndpoint`].
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let mut renewed = false;
        loop {
            let (token, endpoint) = self.credentials(renewed)?;
            let url = format!("{endpoint}{path}");
            let mut builder = ureq::http::Request::builder()
                .method(method)
                .uri(&url)
                .header("X-Auth-Token", &token)
                .header("OpenStack-API-Version", MICROVERSION)
                .header("Accept", "application/json");
            let bytes = match body {
                Some(b) => {
                    builder = builder.header("Content-Type", "application/json");
                    serde_json::to_vec(b).unwrap_or_default()
                }
                None => Vec::new(),
            };
            let transport = |detail: String| ClientError::Transport {
                method: method.to_string(),
                url: url.clone(),
                detail,
            };
            let request = builder.body(bytes).map_err(|e| transport(e.to_string()))?;
            let mut response = self
                .inner
                .agent
                .run(request)
                .map_err(|e| transport(e.to_string()))?;
            let status = response.status().as_u16();
            let text = response
                .body_mut()
                .read_to_string()
                .map_err(|e| transport(format!("reading the answer: {e}")))?;
            tracing::debug!(method, path, status, "placement");
            if status == 401 {
                let detail = error_detail(&text).1;
                match &self.inner.config.auth {
                    Auth::Password(p) if !renewed => {
                        tracing::info!(
                            auth_url = %p.auth_url,
                            "Placement refused the Keystone token: renewing it"
                        );
                        self.inner.tokens.forget();
                        renewed = true;
                        continue;
                    }
                    Auth::Password(p) => {
                        return Err(ClientError::Auth {
                            auth_url: p.auth_url.clone(),
                            user: format!("{}@{}", p.username, p.user_domain_name),
                            detail: format!(
                                "Placement answered 401 to {method} {path} with a new token: \
                                 {detail}"
                            ),
                        });
                    }
                    Auth::Token(_) => {
                        return Err(ClientError::TokenRefused {
                            method: method.into(),
                            path: path.into(),
                            detail,
                        });
                    }
                }
            }
            if status >= 400 {
                let (code, detail) = error_detail(&text);
                return Err(ClientError::Placement {
                    method: method.into(),
                    path: path.into(),
                    status,
                    code,
                    detail,
                });
            }
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| ClientError::BadResponse {
                method: method.into(),
                path: path.into(),
                detail: format!("not JSON ({e}): {text}"),
            });
        }
    }

    /// The token and the endpoint for the next request (renewing a Keystone token that is
    /// about to expire, or always when `renew`).
    fn credentials(&self, renew: bool) -> Result<(String, String), ClientError> {
        let config = &self.inner.config;
        let override_url = config
            .endpoint_override
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_string());
        match &config.auth {
            Auth::Token(t) => {
                let endpoint = override_url.ok_or_else(|| ClientError::NoEndpoint {
                    detail: "auth_type admin_token has no catalog".into(),
                })?;
                Ok((t.clone(), endpoint))
            }
            Auth::Password(p) => {
                let token = match self.inner.tokens.valid().filter(|_| !renew) {
                    Some(t) => t,
                    None => {
                        let t = authenticate(&self.inner.agent, p, config.timeout)?;
                        self.inner.tokens.store(t.clone());
                        t
                    }
                };
                let endpoint =
                    override_url
                        .or(token.endpoint)
                        .ok_or_else(|| ClientError::NoEndpoint {
                            detail: format!(
                                "the catalog of {} has no placement endpoint for region {} and \
                             interfaces {}",
                                p.auth_url,
                                p.region_name.as_deref().unwrap_or("(any)"),
                                p.valid_interfaces.join(",")
                            ),
                        })?;
                Ok((token.id, endpoint))
            }
        }
    }

    /// What Placement holds for the root provider named `root_name` and its tree: providers
    /// with generations, inventories, traits and usages; `None` when no provider has that
    /// name. Calls: `GET /resource_providers?name=`, `GET /resource_providers?in_tree=`, then
    /// per provider `.../inventories`, `.../traits`, `.../usages` (2 + 3 per provider).
    ///
    /// # Errors
    ///
    /// The first call that fails ([`PlacementClient::request`]).
    pub fn read_tree(&self, root_name: &str) -> Result<Option<ProviderTree>, ClientError> {
        let path = format!("/resource_providers?name={}", encode(root_name));
        let found = self.request("GET", &path, None)?;
        let Some(root) = list(&found, "resource_providers", "GET", &path)?.first() else {
            return Ok(None);
        };
        let root_uuid = uuid_field(root, "root_provider_uuid")
            .or_else(|| uuid_field(root, "uuid"))
            .ok_or_else(|| bad("GET", &path, "a provider without a uuid"))?;
        let path = format!("/resource_providers?in_tree={root_uuid}");
        let answer = self.request("GET", &path, None)?;
        let mut providers = Vec::new();
        for rp in list(&answer, "resource_providers", "GET", &path)? {
            let uuid = uuid_field(rp, "uuid").ok_or_else(|| bad("GET", &path, "no uuid"))?;
            let name = rp["name"].as_str().unwrap_or_default();
            let mut p = ResourceProvider::new(uuid, name, uuid_field(rp, "parent_provider_uuid"));
            p.generation = u32_field(&rp["generation"]);
            self.read_provider(&mut p)?;
            providers.push(p);
        }
        Ok(Some(ProviderTree { providers }))
    }

    /// Fills a provider's inventories, traits and usages (3 calls).
    fn read_provider(&self, p: &mut ResourceProvider) -> Result<(), ClientError> {
        let base = format!("/resource_providers/{}", p.uuid);
        let inv = self.request("GET", &format!("{base}/inventories"), None)?;
        if let Some(map) = inv["inventories"].as_object() {
            p.inventories = map
                .iter()
                .map(|(rc, v)| (rc.clone(), inventory_from(v)))
                .collect();
        }
        let traits = self.request("GET", &format!("{base}/traits"), None)?;
        p.traits = traits["traits"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        let usages = self.request("GET", &format!("{base}/usages"), None)?;
        if let Some(map) = usages["usages"].as_object() {
            p.usages = map
                .iter()
                .map(|(rc, v)| (rc.clone(), u32_field(v)))
                .collect();
        }
        Ok(())
    }

    /// A consumer's allocations (`GET /allocations/{consumer}`): provider uuid -> resource
    /// class -> units; empty when the consumer has none.
    ///
    /// # Errors
    ///
    /// The call's ([`PlacementClient::request`]).
    pub fn allocations(&self, consumer: Uuid) -> Result<Allocations, ClientError> {
        let path = format!("/allocations/{consumer}");
        let answer = self.request("GET", &path, None)?;
        let mut out = Allocations::new();
        for (rp, alloc) in answer["allocations"].as_object().into_iter().flatten() {
            let rp: Uuid = rp
                .parse()
                .map_err(|_| bad("GET", &path, &format!("provider {rp} is not a uuid")))?;
            let resources = alloc["resources"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(rc, n)| (rc.clone(), u32_field(n)))
                .collect();
            out.insert(rp, resources);
        }
        Ok(out)
    }

    /// Sends `changes` in order, each write naming the provider's generation as `tree`
    /// holds it, and keeps `tree` equal to what Placement holds after each (new providers,
    /// generations, inventories, traits, deletions). Returns how many calls were made (one
    /// per change).
    ///
    /// # Errors
    ///
    /// The first change Placement refuses or that gets no answer, with how many were sent
    /// before it; `tree` then holds those. A 409 ([`ClientError::is_conflict`]) means `tree`
    /// was stale.
    pub fn apply(&self, changes: &[Change], tree: &mut ProviderTree) -> Result<u32, ApplyError> {
        let mut done = 0;
        for change in changes {
            self.apply_one(change, tree)
                .map_err(|error| ApplyError { done, error })?;
            done += 1;
        }
        Ok(done)
    }

    fn apply_one(&self, change: &Change, tree: &mut ProviderTree) -> Result<(), ClientError> {
        match change {
            Change::CreateResourceClass { name } => {
                self.request("PUT", &format!("/resource_classes/{name}"), None)?;
            }
            Change::CreateTrait { name } => {
                self.request("PUT", &format!("/traits/{name}"), None)?;
            }
            Change::CreateProvider {
                uuid,
                name,
                parent_uuid,
            } => {
                let mut body = json!({"uuid": uuid.to_string(), "name": name});
                if let Some(parent) = parent_uuid {
                    body["parent_provider_uuid"] = json!(parent.to_string());
                }
                let answer = self.request("POST", "/resource_providers", Some(&body))?;
                let mut p = ResourceProvider::new(*uuid, name.clone(), *parent_uuid);
                p.generation = u32_field(&answer["generation"]);
                tree.providers.push(p);
            }
            Change::SetInventories {
                uuid, inventories, ..
            } => {
                let path = format!("/resource_providers/{uuid}/inventories");
                let body = json!({
                    "resource_provider_generation": generation(tree, *uuid),
                    "inventories": inventories
                        .iter()
                        .map(|(rc, inv)| (rc.clone(), inventory_json(inv)))
                        .collect::<serde_json::Map<String, Value>>(),
                });
                let answer = self.request("PUT", &path, Some(&body))?;
                if let Some(p) = tree.by_uuid_mut(*uuid) {
                    p.generation = u32_field(&answer["resource_provider_generation"]);
                    p.inventories = inventories.clone();
                }
            }
            Change::SetTraits { uuid, traits, .. } => {
                let path = format!("/resource_providers/{uuid}/traits");
                let body = json!({
                    "resource_provider_generation": generation(tree, *uuid),
                    "traits": traits,
                });
                let answer = self.request("PUT", &path, Some(&body))?;
                if let Some(p) = tree.by_uuid_mut(*uuid) {
                    p.generation = u32_field(&answer["resource_provider_generation"]);
                    p.traits = traits.clone();
                }
            }
            Change::DeleteProvider { uuid, .. } => {
                self.request("DELETE", &format!("/resource_providers/{uuid}"), None)?;
                tree.providers.retain(|p| p.uuid != *uuid);
            }
        }
        Ok(())
    }
}

fn generation(tree: &ProviderTree, uuid: Uuid) -> u32 {
    tree.by_uuid(uuid).map_or(0, |p| p.generation)
}

fn inventory_json(inv: &Inventory) -> Value {
    json!({
        "total": inv.total,
        "reserved": inv.reserved,
        "min_unit": inv.min_unit,
        "max_unit": inv.max_unit,
        "step_size": inv.step_size,
        "allocation_ratio": inv.allocation_ratio,
    })
}

fn inventory_from(v: &Value) -> Inventory {
    Inventory {
        total: u32_field(&v["total"]),
        reserved: u32_field(&v["reserved"]),
        min_unit: u32_field(&v["min_unit"]),
        max_unit: u32_field(&v["max_unit"]),
        step_size: u32_field(&v["step_size"]),
        allocation_ratio: v["allocation_ratio"].as_f64().unwrap_or(1.0),
    }
}

fn u32_field(v: &Value) -> u32 {
    v.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

fn uuid_field(v: &Value, key: &str) -> Option<Uuid> {
    v[key].as_str().and_then(|s| s.parse().ok())
}

fn list<'a>(
    v: &'a Value,
    key: &str,
    method: &str,
    path: &str,
) -> Result<&'a Vec<Value>, ClientError> {
    v[key]
        .as_array()
        .ok_or_else(|| bad(method, path, &format!("no `{key}` list")))
}

fn bad(method: &str, path: &str, detail: &str) -> ClientError {
    ClientError::BadResponse {
        method: method.into(),
        path: path.into(),
        detail: detail.into(),
    }
}

/// Placement's error code and detail from its error body (`{"errors": [{"status", "code",
/// "title", "detail"}]}`); the body itself when it is not in that format.
fn error_detail(text: &str) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let first = parsed.as_ref().and_then(|v| v["errors"].get(0));
    match first {
        Some(e) => (
            e["code"]
                .as_str()
                .unwrap_or("placement.undefined_code")
                .to_string(),
            e["detail"]
                .as_str()
                .or_else(|| e["title"].as_str())
                .unwrap_or_default()
                .trim()
                .to_string(),
        ),
        None => (
            "placement.undefined_code".into(),
            text.trim().chars().take(500).collect(),
        ),
    }
}

/// Percent-encodes a query value (provider names are letters, digits, `_`, `-`, `.`, `:`).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_error_body_gives_the_code_and_the_detail() {
        let body = r#"{"errors": [{"status": 409, "title": "Conflict", "detail": "There was a conflict when trying to complete your request.\n\n resource provider generation conflict  ", "code": "placement.concurrent_update", "request_id": "req-1"}]}"#;
        let (code, detail) = error_detail(body);
        assert_eq!(code, CONCURRENT_UPDATE);
        assert!(
            detail.ends_with("resource provider generation conflict"),
            "{detail}"
        );
        assert_eq!(
            error_detail("<html>Bad Gateway</html>"),
            (
                "placement.undefined_code".to_string(),
                "<html>Bad Gateway</html>".to_string()
            )
        );
    }

    #[test]
    fn names_are_encoded_for_the_query() {
        assert_eq!(encode("cn-1.example"), "cn-1.example");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
