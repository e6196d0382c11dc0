//! The runtime's log lines: through `tracing` when the program installed a subscriber, and
//! straight to stderr otherwise, so that warnings (a refused peer, a dropped message, a failed
//! spill) are visible by default. Without a subscriber the level is `warn`; `RAY_RS_LOG=debug`
//! (or `info`, `error`, `off`), or a `RUST_LOG` of a bare level or `ray=…`/`ray_core=…`, changes
//! it.

use std::sync::OnceLock;
use tracing::Level;

/// The most verbose level printed without a subscriber (`None`: nothing).
fn stderr_level() -> Option<Level> {
    static LEVEL: OnceLock<Option<Level>> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let parse = |s: &str| match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Some(None),
            "error" => Some(Some(Level::ERROR)),
            "warn" | "warning" => Some(Some(Level::WARN)),
            "info" => Some(Some(Level::INFO)),
            "debug" => Some(Some(Level::DEBUG)),
            "trace" => Some(Some(Level::TRACE)),
            _ => None,
        };
        if let Some(l) = std::env::var("RAY_RS_LOG").ok().as_deref().and_then(parse) {
            return l;
        }
        if let Ok(rust_log) = std::env::var("RUST_LOG") {
            for directive in rust_log.split(',') {
                let l = match directive.split_once('=') {
                    Some((target, level)) if matches!(target.trim(), "ray" | "ray_core") => {
                        parse(level)
                    }
                    Some(_) => None,
                    None => parse(directive),
                };
                if let Some(l) = l {
                    return l;
                }
            }
        }
        Some(Level::WARN)
    })
}

/// Emits one log line at `level` from `module`.
pub(crate) fn emit(level: Level, module: &str, args: std::fmt::Arguments<'_>) {
    let no_subscriber =
        tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>());
    if !no_subscriber {
        match level {
            Level::ERROR => tracing::error!(module, "{args}"),
            Level::WARN => tracing::warn!(module, "{args}"),
            Level::INFO => tracing::info!(module, "{args}"),
            Level::DEBUG => tracing::debug!(module, "{args}"),
            _ => tracing::trace!(module, "{args}"),
        }
        return;
    }
    if stderr_level().is_some_and(|max| level <= max) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "[ray {level}] {args}");
    }
}

macro_rules! error {
    ($($t:tt)*) => { $crate::log::emit(::tracing::Level::ERROR, module_path!(), format_args!($($t)*)) };
}
macro_rules! warn_ {
    ($($t:tt)*) => { $crate::log::emit(::tracing::Level::WARN, module_path!(), format_args!($($t)*)) };
}
macro_rules! info {
    ($($t:tt)*) => { $crate::log::emit(::tracing::Level::INFO, module_path!(), format_args!($($t)*)) };
}
macro_rules! debug {
    ($($t:tt)*) => { $crate::log::emit(::tracing::Level::DEBUG, module_path!(), format_args!($($t)*)) };
}
pub(crate) use {debug, error, info, warn_ as warn};
