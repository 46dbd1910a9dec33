//! How the client proves who it is to Placement: a fixed token (`[placement] auth_type =
//! admin_token`, also noauth2's `admin`) or Keystone v3 password authentication
//! (`auth_type = password`, keystoneauth's `v3password` plugin with the option names
//! operators already use in nova.conf). A password token is kept with its expiry, renewed
//! before it expires (keystoneauth's `MIN_TOKEN_LIFE_SECONDS`, 120 s) and once when
//! Placement answers 401; the endpoint comes from the token's service catalog unless
//! `endpoint_override` names it.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::client::ClientError;

/// keystoneauth renews a token that expires within this many seconds
/// (`keystoneauth1/access/access.py` `MIN_TOKEN_LIFE_SECONDS`).
const MIN_TOKEN_LIFE: u64 = 120;

/// Placement's service type in the Keystone catalog.
const SERVICE_TYPE: &str = "placement";

/// How the client authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A fixed token sent as `X-Auth-Token` (`auth_type = admin_token` with `token`; Placement
    /// with `auth_strategy = noauth2` takes `admin`).
    Token(String),
    /// Keystone v3 password authentication (`auth_type = password`).
    Password(KeystonePassword),
}

/// Keystone v3 password authentication, with keystoneauth's option names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystonePassword {
    /// Keystone's URL (with or without the trailing `/v3`).
    pub auth_url: String,
    /// The user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// The project the token is scoped to.
    pub project_name: String,
    /// The user's domain (keystoneauth's default `Default`).
    pub user_domain_name: String,
    /// The project's domain.
    pub project_domain_name: String,
    /// The region of the Placement endpoint in the catalog (`None`: any).
    pub region_name: Option<String>,
    /// Catalog interfaces to use, first found wins (keystoneauth's default: `internal`,
    /// `public`); `internalURL` style names are accepted.
    pub valid_interfaces: Vec<String>,
}

impl KeystonePassword {
    /// keystoneauth's default `valid_interfaces` for a service (`internal`, then `public`).
    pub fn default_interfaces() -> Vec<String> {
        vec!["internal".into(), "public".into()]
    }

    /// `{auth_url}/v3/auth/tokens`, whether or not `auth_url` ends in `/v3`.
    pub(crate) fn tokens_url(&self) -> String {
        let base = self.auth_url.trim_end_matches('/');
        if base.ends_with("/v3") {
            format!("{base}/auth/tokens")
        } else {
            format!("{base}/v3/auth/tokens")
        }
    }

    fn body(&self) -> Value {
        json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.username,
                "domain": {"name": self.user_domain_name},
                "password": self.password,
            }}},
            "scope": {"project": {
                "name": self.project_name,
                "domain": {"name": self.project_domain_name},
            }},
        }})
    }
}

/// A Keystone token with what came with it.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) id: String,
    /// Unix seconds; `None` when Keystone gave no parsable `expires_at`.
    pub(crate) expires_at: Option<u64>,
    /// Placement's URL from the catalog, when found.
    pub(crate) endpoint: Option<String>,
}

/// The token cache of a password client (shared by the client's clones).
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    token: Mutex<Option<Token>>,
}

impl TokenCache {
    /// The cached token when it lives at least [`MIN_TOKEN_LIFE`] more seconds.
    pub(crate) fn valid(&self) -> Option<Token> {
        let token = self.token.lock().unwrap_or_else(|e| e.into_inner());
        token
            .as_ref()
            .filter(|t| t.expires_at.is_none_or(|e| e > now() + MIN_TOKEN_LIFE))
            .cloned()
    }

    pub(crate) fn store(&self, token: Token) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token);
    }

    /// Forgets the token (Placement answered 401).
    pub(crate) fn forget(&self) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Keystone v3 password authentication: `POST {auth_url}/v3/auth/tokens`, the token from
/// `X-Subject-Token`, its `expires_at`, and Placement's endpoint from the catalog.
///
/// # Errors
///
/// [`ClientError::Auth`] when Keystone cannot be reached or refuses, naming `auth_url` and
/// the user.
pub(crate) fn authenticate(
    agent: &ureq::Agent,
    p: &KeystonePassword,
    timeout: Duration,
) -> Result<Token, ClientError> {
    let url = p.tokens_url();
    let auth_error = |detail: String| ClientError::Auth {
        auth_url: p.auth_url.clone(),
        user: format!("{}@{}", p.username, p.user_domain_name),
        detail,
    };
    let mut response = agent
        .post(&url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .header("Content-Type", "application/json")
        .send_json(p.body())
        .map_err(|e| auth_error(format!("POST {url}: {e}")))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if status != 201 && status != 200 {
        return Err(auth_error(format!(
            "POST {url}: Keystone answered {status}: {text}"
        )));
    }
    let id = response
        .headers()
        .get("X-Subject-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| auth_error(format!("POST {url}: no X-Subject-Token in the answer")))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|e| auth_error(format!("POST {url}: the answer is not JSON: {e}")))?;
    let token = &body["token"];
    Ok(Token {
        id,
        expires_at: token["expires_at"].as_str().and_then(parse_iso8601),
        endpoint: catalog_endpoint(&token["catalog"], p),
    })
}

/// Placement's URL in a v3 catalog: the `placement` service's endpoint in `region_name`
/// (any region when unset) for the first of `valid_interfaces` that has one
/// (keystoneauth's `ServiceCatalog.endpoint_data_for`).
fn catalog_endpoint(catalog: &Value, p: &KeystonePassword) -> Option<String> {
    let endpoints: Vec<&Value> = catalog
        .as_array()?
        .iter()
        .filter(|s| s["type"] == SERVICE_TYPE)
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .filter(|e| {
            p.region_name.as_deref().is_none_or(|r| {
                e["region_id"].as_str() == Some(r) || e["region"].as_str() == Some(r)
            })
        })
        .collect();
    let interfaces = if p.valid_interfaces.is_empty() {
        KeystonePassword::default_interfaces()
    } else {
        p.valid_interfaces.clone()
    };
    interfaces.iter().find_map(|want| {
        let want = want.trim_end_matches("URL");
        endpoints
            .iter()
            .find(|e| e["interface"].as_str() == Some(want))
            .and_then(|e| e["url"].as_str())
            .map(|u| u.trim_end_matches('/').to_string())
    })
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Keystone's `expires_at` (`2026-11-30T07:46:44.000000Z`) in unix seconds (UTC only, as
/// Keystone writes it).
fn parse_iso8601(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = time.trim_end_matches('Z');
    let time = time.split(['+', '.']).next()?;
    let mut t = time.split(':').map(|x| x.parse::<i64>());
    let (h, min, sec) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + min * 60 + sec).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password() -> KeystonePassword {
        KeystonePassword {
            auth_url: "http://ks:5000".into(),
            username: "placement".into(),
            password: "secret".into(),
            project_name: "service".into(),
            user_domain_name: "Default".into(),
            project_domain_name: "Default".into(),
            region_name: Some("RegionOne".into()),
            valid_interfaces: KeystonePassword::default_interfaces(),
        }
    }

    #[test]
    fn keystones_expiry_is_read_as_utc() {
        assert_eq!(parse_iso8601("1970-01-02T00:00:01.000000Z"), Some(86_401));
        assert_eq!(
            parse_iso8601("2026-11-30T07:46:44.000000Z"),
            Some(1_796_024_804)
        );
        assert_eq!(parse_iso8601("soon"), None);
    }

    #[test]
    fn a_token_is_renewed_before_it_expires() {
        let cache = TokenCache::default();
        let token = |expires_at| Token {
            id: "t".into(),
            expires_at,
            endpoint: None,
        };
        assert!(cache.valid().is_none());
        cache.store(token(Some(now() + 3600)));
        assert!(cache.valid().is_some());
        cache.store(token(Some(now() + MIN_TOKEN_LIFE - 1)));
        assert!(
            cache.valid().is_none(),
            "within keystoneauth's minimum life"
        );
        cache.store(token(None));
        assert!(cache.valid().is_some());
        cache.forget();
        assert!(cache.valid().is_none());
    }

    #[test]
    fn the_tokens_url_has_one_v3() {
        let mut p = password();
        assert_eq!(p.tokens_url(), "http://ks:5000/v3/auth/tokens");
        p.auth_url = "http://ks:5000/v3/".into();
        assert_eq!(p.tokens_url(), "http://ks:5000/v3/auth/tokens");
    }

    #[test]
    fn the_endpoint_is_the_first_valid_interface_in_the_region() {
        let catalog = json!([
            {"type": "identity", "endpoints": [{"interface": "internal", "region_id": "RegionOne", "url": "http://ks"}]},
            {"type": "placement", "endpoints": [
                {"interface": "public", "region_id": "RegionOne", "url": "http://public/placement/"},
                {"interface": "internal", "region_id": "RegionTwo", "url": "http://two"},
                {"interface": "admin", "region_id": "RegionOne", "url": "http://admin"},
            ]},
        ]);
        let mut p = password();
        assert_eq!(
            catalog_endpoint(&catalog, &p).as_deref(),
            Some("http://public/placement")
        );
        p.region_name = Some("RegionTwo".into());
        assert_eq!(
            catalog_endpoint(&catalog, &p).as_deref(),
            Some("http://two")
        );
        p.region_name = Some("RegionOne".into());
        p.valid_interfaces = vec!["adminURL".into(), "public".into()];
        assert_eq!(
            catalog_endpoint(&catalog, &p).as_deref(),
            Some("http://admin")
        );
        p.region_name = Some("Nowhere".into());
        assert_eq!(catalog_endpoint(&catalog, &p), None);
    }
}
