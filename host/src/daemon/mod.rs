//! `pcitrack run`: the long-running agent.
//!
//! Start-up order matters: subscribe to uevents first (so no event falls between the scan
//! and the subscription), then open the database, load the policies and reconcile once, and
//! only then answer on the API, so a client never sees a half-started agent. After that, four
//! sources of work feed the agent: uevent bursts, the policies directory and configuration
//! file (watched), SIGHUP, and the periodic full resync (the safety net for anything missed).
//! SIGTERM or SIGINT stops the API, waits for the transaction in flight, and exits 0.
//! Under systemd the agent reports each step (`notify`): ready after the first reconcile with
//! the API listening, stopping at the signal, and watchdog pings in between.

pub mod agent;
pub mod api;
pub mod metrics;
mod notify;
pub mod placement;
pub mod registry;
mod uevents;
mod watch;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use pcitrack_discovery::relay::UeventRelay;
use pcitrack_discovery::socket::{KERNEL_GROUP, UeventSocket, UeventSource};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch as tokio_watch;

pub use agent::Agent;

use crate::config::Overrides;

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(config_path: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    // Every heavy step (scan, policies, SQLite) runs on the blocking pool, so one worker is
    // plenty for the API. The blocking pool is capped because each thread that ever ran a
    // reconcile keeps its own glibc arena at that reconcile's peak: with 4112 devices that
    // was ~3 MiB more for every extra thread (host/benches/memory.rs). Work beyond the cap
    // waits its turn; the tracker serialises it anyway.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .thread_name("pcitrack-api")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(config_path, overrides));
    // Blocking work still queued is abandoned after this; the tracker's transactions are
    // atomic, so at worst a request in flight is not answered.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// Binds the API's unix socket with mode 0600, refusing to steal a live agent's socket.
fn bind_unix(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another agent is answering on {}; stop it first or give --socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Bind under a restrictive umask window: set the mode right after, before serving.
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding the API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}

/// Opens the uevent sources the configuration asks for. The kernel's socket failing is not
/// fatal (an unprivileged or namespaced agent may not get one): the periodic resync still
/// runs, and the failure is logged. A relay socket that cannot be bound is an error: it
/// was asked for by name.
fn uevent_sources(
    config: &crate::config::Config,
) -> anyhow::Result<Vec<(&'static str, Box<dyn UeventSource>)>> {
    let mut sources: Vec<(&'static str, Box<dyn UeventSource>)> = Vec::new();
    if config.agent.netlink != Some(false) {
        match UeventSocket::open(KERNEL_GROUP) {
            Ok(s) => sources.push(("netlink", Box::new(s))),
            Err(e) => tracing::warn!(
                error = %e,
                "cannot subscribe to kernel uevents; changes will be seen at the periodic resync"
            ),
        }
    }
    if let Some(path) = &config.agent.uevent_relay {
        let relay = UeventRelay::bind(path)
            .with_context(|| format!("binding the uevent relay socket {}", path.display()))?;
        sources.push(("relay", Box::new(relay)));
    }
    Ok(sources)
}

async fn serve(config_path: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    let config = overrides
        .effective(config_path.as_deref())
        .context("loading the configuration")?;
    let sources = uevent_sources(&config)?;
    let agent = tokio::task::spawn_blocking({
        let overrides = overrides.clone();
        let config_path = config_path.clone();
        move || Agent::start(config_path, overrides)
    })
    .await
    .context("starting the agent")??;
    for (name, source) in sources {
        uevents::spawn(agent.clone(), name, source);
    }
    let (_watcher, mut changes) = watch::watch(&config.policies_dir(), config_path.as_deref())?;

    let (stop_tx, stop_rx) = tokio_watch::channel(false);
    let stopped = |mut rx: tokio_watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let socket = config.socket();
    // Every listener is bound before any answers: a client that sees the unix socket serve
    // must find the TCP listener there too.
    let tcp = match &config.api.listen {
        Some(listen) => Some(
            tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding the API on {listen}"))?,
        ),
        None => None,
    };
    let unix = bind_unix(&socket)?;
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(
        axum::serve(unix, api::router(agent.clone(), None))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    if let Some(tcp) = tcp {
        servers.spawn(
            axum::serve(tcp, api::router(agent.clone(), config.api.token.clone()))
                .with_graceful_shutdown(stopped(stop_rx.clone()))
                .into_future(),
        );
    }
    // Signal handlers before READY=1: a service manager may stop the agent right after.
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    tracing::info!(socket = %socket.display(), tcp = ?config.api.listen, "agent ready");
    notify::ready(&format!(
        "serving on {}; {}",
        socket.display(),
        agent
            .last_reconcile()
            .map(|r| format!(
                "{} devices discovered, {} assignable",
                r.discovered, r.assignable
            ))
            .unwrap_or_default()
    ));
    let watchdog = notify::watchdog_interval().map(|every| {
        tracing::info!(
            every_ms = every.as_millis() as u64,
            "pinging the systemd watchdog"
        );
        notify::spawn_watchdog(every)
    });

    // Reloads run one at a time, in order, off the signal loop.
    let reloader = agent.clone();
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            let agent = reloader.clone();
            let _ = tokio::task::spawn_blocking(move || match change {
                watch::Changed::Policies => {
                    agent.refresh_policies();
                }
                watch::Changed::Config => {
                    let _ = agent.reload_config();
                    agent.refresh_policies();
                }
            })
            .await;
        }
    });

    loop {
        let interval = agent.config().resync_interval();
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break }
            _ = hup.recv() => {
                let a = agent.clone();
                tokio::task::spawn_blocking(move || { let _ = a.reload_config(); });
            }
            _ = tokio::time::sleep(interval) => {
                let a = agent.clone();
                tokio::task::spawn_blocking(move || { let _ = a.reconcile("timer"); });
            }
        }
    }
    notify::stopping();
    if let Some(w) = watchdog {
        w.abort();
    }
    let _ = stop_tx.send(true);
    while let Some(r) = servers.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "API server stopped with an error");
        }
    }
    let finishing = agent.clone();
    tokio::task::spawn_blocking(move || finishing.shutdown())
        .await
        .context("waiting for the work in flight")?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
