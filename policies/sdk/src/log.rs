//! Logging to the agent's log: the only thing the host lets a policy do besides answering.
//!
//! Inside the agent the lines go through the contract's `host.log` import, tagged with the
//! policy's name. In native unit tests there is no host, so they go to stderr.

use crate::bindings::pcitrack::policy::host::LogLevel;

fn emit(level: LogLevel, message: &str) {
    #[cfg(target_family = "wasm")]
    crate::bindings::pcitrack::policy::host::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    eprintln!("[policy {level:?}] {message}");
}

/// Logs at debug level.
pub fn debug(message: &str) {
    emit(LogLevel::Debug, message)
}

/// Logs at info level.
pub fn info(message: &str) {
    emit(LogLevel::Info, message)
}

/// Logs a warning.
pub fn warn(message: &str) {
    emit(LogLevel::Warn, message)
}

/// Logs an error.
pub fn error(message: &str) {
    emit(LogLevel::Error, message)
}
