//! A client of the agent's API over its unix socket, for the CLI and the tests.
//!
//! One request per connection (`Connection: close`): the CLI makes one call per run, and a
//! fresh connection keeps the client free of pooling state. HTTP is spoken by hyper (already
//! in the build for the server), not by hand.

use std::path::{Path, PathBuf};

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An answer: the status, the body's declared type and the body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The `Content-Type` header, when there is one.
    pub content_type: Option<String>,
    /// The body, as sent.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as `T` on success; on an error status, the agent's `error` message.
    pub fn json<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        if !(200..300).contains(&self.status) {
            let message = serde_json::from_slice::<serde_json::Value>(&self.body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
            anyhow::bail!("{message}");
        }
        serde_json::from_slice(&self.body).context("the agent's answer is not the expected JSON")
    }
}

/// The agent at a socket path.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client of the agent listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether an agent answers on the socket.
    pub fn reachable(&self) -> bool {
        std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.send(Method::GET, path, None)
    }

    /// `POST path` with `body` as JSON.
    pub fn post<B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<Reply> {
        let body = serde_json::to_vec(body).context("encoding the request")?;
        self.send(Method::POST, path, Some(body))
    }

    /// `POST /v1/claim`: the devices claimed, or the agent's refusal as the error.
    pub fn claim(
        &self,
        req: &crate::ops::ClaimRequest,
    ) -> anyhow::Result<Vec<pcitrack_tracker::ClaimedDevice>> {
        self.post("/v1/claim", req)?.json()
    }

    /// `POST path` with raw bytes (tests send malformed bodies this way).
    pub fn post_raw(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Reply> {
        self.send(Method::POST, path, Some(body))
    }

    fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Reply> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the client runtime")?;
        runtime.block_on(self.send_async(method, path, body))
    }

    /// The request, on the caller's runtime.
    pub async fn send_async(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Reply> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("connecting to the agent at {}", self.socket.display()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("talking to the agent")?;
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "pcitrack")
            .header(hyper::header::CONNECTION, "close");
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .context("building the request")?;
        let response = sender
            .send_request(request)
            .await
            .context("the agent did not answer")?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the agent's answer")?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }
}
