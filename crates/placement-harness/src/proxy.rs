//! An HTTP/1.1 forwarder that can fail, slow down or refuse: Placement's faults on demand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does with the next requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward every request.
    None,
    /// Answer the next `count` requests with `status` and a Placement-style error body
    /// (`{"errors": [{"status": .., "title": .., "detail": "injected"}]}`) without forwarding
    /// them, then forward again.
    Fail {
        /// The HTTP status to answer with.
        status: u16,
        /// How many requests get it.
        count: u32,
    },
    /// Wait this long before forwarding each request.
    Delay(Duration),
    /// Close every connection without answering (the request is read and logged first).
    Refuse,
}

struct Shared {
    upstream: SocketAddr,
    fault: Mutex<Fault>,
    requests: Mutex<Vec<(String, String)>>,
    stopping: AtomicBool,
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of one upstream (Placement), one thread per
/// connection, one request per connection (it answers `Connection: close`). Dropping it
/// stops accepting.
pub struct FaultProxy {
    url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (`http://HOST:PORT`, no path).
    ///
    /// # Panics
    ///
    /// When `upstream` is not such a URL or no port can be bound.
    pub fn start(upstream: &str) -> FaultProxy {
        let authority = upstream
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("FaultProxy upstream {upstream:?} is not an http:// URL"))
            .trim_end_matches('/');
        let upstream_addr = authority
            .to_socket_addrs()
            .unwrap_or_else(|e| panic!("FaultProxy upstream {upstream:?}: {e}"))
            .next()
            .unwrap_or_else(|| panic!("FaultProxy upstream {upstream:?} resolves to nothing"));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("FaultProxy: binding 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .expect("local address of a bound listener");
        let shared = Arc::new(Shared {
            upstream: upstream_addr,
            fault: Mutex::new(Fault::None),
            requests: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let accept_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_shared.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&accept_shared);
                    let _ = std::thread::Builder::new()
                        .name("fault-proxy-conn".into())
                        .spawn(move || serve(stream, &shared));
                }
            })
            .expect("spawning the proxy's thread");
        FaultProxy {
            url: format!("http://{addr}"),
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets what happens to the next requests (replacing the previous fault).
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().expect("fault lock") = fault;
    }

    /// The fault in force now (a `Fail` counts down to `None`).
    pub fn fault(&self) -> Fault {
        self.shared.fault.lock().expect("fault lock").clone()
    }

    /// Every request seen so far, as (method, path with query), in arrival order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        self.shared.requests.lock().expect("requests lock").clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor up so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A request head and body as read from the client.
struct Request {
    method: String,
    path: String,
    /// The head with `Connection: close` in place of any connection header.
    head: Vec<u8>,
    body: Vec<u8>,
}

fn serve(client: TcpStream, shared: &Shared) {
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(reader) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    shared
        .requests
        .lock()
        .expect("requests lock")
        .push((request.method.clone(), request.path.clone()));
    let fault = {
        let mut fault = shared.fault.lock().expect("fault lock");
        let now = fault.clone();
        if let Fault::Fail { status, count } = *fault {
            *fault = if count > 1 {
                Fault::Fail {
                    status,
                    count: count - 1,
                }
            } else {
                Fault::None
            };
        }
        now
    };
    let mut client = client;
    match fault {
        Fault::Refuse => {
            let _ = client.shutdown(Shutdown::Both);
        }
        Fault::Fail { status, .. } if status > 0 => {
            let _ = client.write_all(&injected(status));
        }
        Fault::Delay(d) => {
            std::thread::sleep(d);
            forward(&request, &mut client, shared.upstream);
        }
        _ => forward(&request, &mut client, shared.upstream),
    }
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Write);
}

fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut head = line.clone().into_bytes();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        if h == "\r\n" || h == "\n" {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((h.as_str(), ""));
        let name = name.trim().to_ascii_lowercase();
        if name == "content-length" {
            length = value.trim().parse().ok()?;
        }
        if name == "connection" || name == "keep-alive" {
            continue;
        }
        head.extend_from_slice(h.as_bytes());
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        head,
        body,
    })
}

/// Sends the request upstream and copies the whole answer back, with `Connection: close`.
fn forward(request: &Request, client: &mut TcpStream, upstream: SocketAddr) {
    let answer = (|| -> std::io::Result<Vec<u8>> {
        let mut up = TcpStream::connect_timeout(&upstream, Duration::from_secs(10))?;
        up.set_read_timeout(Some(Duration::from_secs(600)))?;
        up.write_all(&request.head)?;
        up.write_all(&request.body)?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer)?;
        Ok(answer)
    })();
    match answer {
        Ok(answer) if !answer.is_empty() => {
            let _ = client.write_all(&with_connection_close(&answer));
        }
        // Upstream down: answer as a gateway would, so the client sees Placement "down".
        _ => {
            let _ = client.write_all(&injected(502));
        }
    }
}

/// The response with its connection headers replaced by `Connection: close`.
fn with_connection_close(answer: &[u8]) -> Vec<u8> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return answer.to_vec();
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if i > 0 && (name == "connection" || name == "keep-alive") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&answer[end + 4..]);
    bytes
}

/// A Placement-style error answer (placement/util.py's `json_error_formatter` shape).
fn injected(status: u16) -> Vec<u8> {
    let title = match status {
        409 => "Conflict",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let mut error = serde_json::json!({
        "status": status, "title": title, "detail": "injected", "request_id": "req-fault-proxy"
    });
    if status == 409 {
        // What Placement says on a stale generation.
        error["code"] = "placement.concurrent_update".into();
    }
    let body = serde_json::json!({ "errors": [error] }).to_string();
    format!(
        "HTTP/1.1 {status} {title}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
