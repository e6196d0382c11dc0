//! etcd v3 client over etcd's JSON gRPC-gateway (HTTP/1.1, keys and values base64).
//!
//! Why not the `etcd-client` crate: it is built on tonic/prost/hyper and compiles etcd's
//! `.proto` files in its build script with tonic-build, which needs `protoc` at build time. The
//! gateway needs neither: every call is a `POST /v3/...` with a JSON body, answered with JSON
//! (`/v3/watch` streams one JSON object per line). Only `ray-rs` talks to etcd; a user's crate
//! never compiles this.
//!
//! Blocking by design: the callers are dedicated OS threads (lease keep-alive, resource
//! publisher, watch), which a loaded async runtime cannot starve. Async code calls it through
//! `spawn_blocking`.

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::error::{CliError, Result};
use crate::http::Target;

/// Largest unary response accepted (a range over many nodes stays far below).
const MAX_RESPONSE: u64 = 64 << 20;
/// Largest single watch message accepted.
const MAX_WATCH_LINE: u64 = 16 << 20;

/// One key and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Revision of the key's creation.
    pub create_revision: i64,
    /// Revision of its last change.
    pub mod_revision: i64,
    /// Its lease, 0 for none.
    pub lease: i64,
}

/// A lease granted by etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: i64,
    /// Its time to live in seconds, as granted.
    pub ttl: i64,
}

/// A change seen by a [`Watcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or changed.
    Put(KeyValue),
    /// A key was deleted (or its lease expired).
    Delete {
        /// The key.
        key: Vec<u8>,
        /// The revision of the deletion.
        mod_revision: i64,
    },
    /// The revision to resume from was compacted away: events were missed. The watch goes on
    /// from `revision`; re-read the state.
    Compacted {
        /// The oldest revision still available.
        revision: i64,
    },
}

/// A client of one etcd endpoint.
#[derive(Debug, Clone)]
pub struct Etcd {
    target: Target,
    timeout: Duration,
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The end of the range of keys starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // all keys
}

impl Etcd {
    /// A client of `url` (`http://H:P`, or `https://H:P` with `tls`).
    pub fn new(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self> {
        Ok(Etcd {
            target: Target::parse(url, tls)?,
            timeout: Duration::from_secs(10),
        })
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        &self.target.url
    }

    fn err(&self, detail: impl Into<String>) -> CliError {
        CliError::Etcd {
            endpoint: self.target.url.clone(),
            detail: detail.into(),
        }
    }

    fn kv(&self, v: &Value) -> Result<KeyValue> {
        let decode = |field: &str| -> Result<Vec<u8>> {
            match v.get(field).and_then(Value::as_str) {
                Some(s) => B64
                    .decode(s)
                    .map_err(|_| self.err(format!("bad base64 in {field}"))),
                None => Ok(Vec::new()),
            }
        };
        Ok(KeyValue {
            key: decode("key")?,
            value: decode("value")?,
            create_revision: v.get("create_revision").map(int).unwrap_or(0),
            mod_revision: v.get("mod_revision").map(int).unwrap_or(0),
            lease: v.get("lease").map(int).unwrap_or(0),
        })
    }

    /// One unary call.
    pub fn call(&self, path: &str, body: &Value) -> Result<Value> {
        let body = serde_json::to_vec(body).map_err(|e| self.err(e.to_string()))?;
        let (status, reply) = self.target.post(path, &body, self.timeout, MAX_RESPONSE)?;
        let value: Value = serde_json::from_slice(&reply)
            .map_err(|e| self.err(format!("{path}: HTTP {status}, unreadable reply: {e}")))?;
        if status != 200 || value.get("error").is_some() {
            let msg = value
                .get("message")
                .or_else(|| value.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            return Err(self.err(format!("{path}: HTTP {status}: {msg}")));
        }
        Ok(value)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let reply = self.call("/v3/kv/range", &json!({ "key": b64(key) }))?;
        match reply
            .get("kvs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            Some(kv) => Ok(Some(self.kv(kv)?)),
            None => Ok(None),
        }
    }

    /// Every key starting with `prefix`, and the store's revision at the time of reading (watch
    /// from revision + 1 to see every later change).
    pub fn get_prefix(&self, prefix: &[u8]) -> Result<(Vec<KeyValue>, i64)> {
        let reply = self.call(
            "/v3/kv/range",
            &json!({ "key": b64(prefix), "range_end": b64(&prefix_end(prefix)) }),
        )?;
        let revision = reply
            .get("header")
            .and_then(|h| h.get("revision"))
            .map(int)
            .unwrap_or(0);
        let kvs = match reply.get("kvs").and_then(Value::as_array) {
            Some(a) => a.iter().map(|kv| self.kv(kv)).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        Ok((kvs, revision))
    }

    /// Sets `key` (attached to `lease` when not 0). Returns the new revision.
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<i64> {
        let mut body = json!({ "key": b64(key), "value": b64(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        let reply = self.call("/v3/kv/put", &body)?;
        Ok(reply
            .get("header")
            .and_then(|h| h.get("revision"))
            .map(int)
            .unwrap_or(0))
    }

    /// Deletes `key`; returns how many keys were deleted (0 or 1).
    pub fn delete(&self, key: &[u8]) -> Result<i64> {
        let reply = self.call("/v3/kv/deleterange", &json!({ "key": b64(key) }))?;
        Ok(reply.get("deleted").map(int).unwrap_or(0))
    }

    /// Sets `key` to `value` only if its last modification is `expected_mod_revision` (0: only
    /// if the key does not exist). Returns whether it was set.
    pub fn compare_and_swap(
        &self,
        key: &[u8],
        expected_mod_revision: i64,
        value: &[u8],
        lease: i64,
    ) -> Result<bool> {
        let compare = if expected_mod_revision == 0 {
            json!({ "key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0" })
        } else {
            json!({ "key": b64(key), "target": "MOD", "result": "EQUAL",
                    "mod_revision": expected_mod_revision.to_string() })
        };
        let mut put = json!({ "key": b64(key), "value": b64(value) });
        if lease != 0 {
            put["lease"] = json!(lease.to_string());
        }
        let reply = self.call(
            "/v3/kv/txn",
            &json!({ "compare": [compare], "success": [{ "request_put": put }] }),
        )?;
        Ok(reply
            .get("succeeded")
            .and_then(Value::as_bool)
            .unwrap_or(false))
    }

    /// Deletes `key` if its value is `value`. Returns whether it was deleted.
    pub fn delete_if_value(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        let compare = json!({ "key": b64(key), "target": "VALUE", "result": "EQUAL",
                              "value": b64(value) });
        let reply = self.call(
            "/v3/kv/txn",
            &json!({ "compare": [compare],
                     "success": [{ "request_delete_range": { "key": b64(key) } }] }),
        )?;
        Ok(reply
            .get("succeeded")
            .and_then(Value::as_bool)
            .unwrap_or(false))
    }

    /// Creates `key` with `value` unless it exists. Returns whether it was created. For job
    /// ids, named actors and anything else that must be claimed once.
    pub fn create_if_absent(&self, key: &[u8], value: &[u8], lease: i64) -> Result<bool> {
        self.compare_and_swap(key, 0, value, lease)
    }

    /// Atomically increments the decimal counter at `key` (absent = 0) and returns the new
    /// value, unique among all callers.
    pub fn increment(&self, key: &[u8]) -> Result<u64> {
        for _ in 0..1000 {
            let (current, revision) = match self.get(key)? {
                Some(kv) => {
                    let text = String::from_utf8_lossy(&kv.value).to_string();
                    let n: u64 = text.parse().map_err(|_| {
                        self.err(format!(
                            "counter {} is not a number",
                            String::from_utf8_lossy(key)
                        ))
                    })?;
                    (n, kv.mod_revision)
                }
                None => (0, 0),
            };
            let next = current
                .checked_add(1)
                .ok_or_else(|| self.err("counter overflow"))?;
            if self.compare_and_swap(key, revision, next.to_string().as_bytes(), 0)? {
                return Ok(next);
            }
        }
        Err(self.err("counter: too much contention"))
    }

    /// Grants a lease of `ttl` seconds.
    pub fn lease_grant(&self, ttl: i64) -> Result<Lease> {
        let reply = self.call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))?;
        let id = reply.get("ID").map(int).unwrap_or(0);
        if id == 0 {
            return Err(self.err("lease grant: no lease id in the reply"));
        }
        Ok(Lease {
            id,
            ttl: reply.get("TTL").map(int).unwrap_or(ttl),
        })
    }

    /// Renews a lease once. `Ok(None)` when the lease no longer exists (expired or revoked).
    pub fn lease_keep_alive(&self, id: i64) -> Result<Option<i64>> {
        let reply = self.call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))?;
        let result = reply.get("result").unwrap_or(&reply);
        match result.get("TTL").map(int) {
            Some(ttl) if ttl > 0 => Ok(Some(ttl)),
            _ => Ok(None),
        }
    }

    /// Revokes a lease: every key attached to it is deleted at once.
    pub fn lease_revoke(&self, id: i64) -> Result<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() }))?;
        Ok(())
    }

    /// Watches every key starting with `prefix`, from `start_revision` (0: from now), on a
    /// thread of its own that reconnects after errors and resumes after the last revision it
    /// delivered.
    pub fn watch_prefix(&self, prefix: &[u8], start_revision: i64) -> Watcher {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let socket = Arc::new(Mutex::new(None));
        let etcd = self.clone();
        let prefix = prefix.to_vec();
        let (stop2, socket2) = (stop.clone(), socket.clone());
        let thread = std::thread::Builder::new()
            .name("etcd-watch".into())
            .spawn(move || etcd.watch_loop(&prefix, start_revision, &tx, &stop2, &socket2))
            .expect("spawning the etcd watch thread");
        Watcher {
            events: rx,
            stopper: WatchStop {
                stop,
                socket,
                thread: Some(thread),
            },
        }
    }

    fn watch_loop(
        &self,
        prefix: &[u8],
        start_revision: i64,
        tx: &Sender<WatchEvent>,
        stop: &AtomicBool,
        socket: &Mutex<Option<std::net::TcpStream>>,
    ) {
        let mut next = start_revision;
        let mut backoff = Duration::from_millis(100);
        while !stop.load(Ordering::SeqCst) {
            match self.watch_once(prefix, &mut next, tx, stop, socket) {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    tracing::warn!(
                        "etcd watch of {}: {e}; reconnecting",
                        String::from_utf8_lossy(prefix)
                    );
                }
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// One watch stream until it ends. Returns `Ok` when the receiver is gone or it was stopped.
    fn watch_once(
        &self,
        prefix: &[u8],
        next: &mut i64,
        tx: &Sender<WatchEvent>,
        stop: &AtomicBool,
        socket: &Mutex<Option<std::net::TcpStream>>,
    ) -> Result<()> {
        let conn = self.target.open(None)?;
        *socket.lock().unwrap_or_else(|e| e.into_inner()) = conn.socket.try_clone().ok();
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut create = json!({ "key": b64(prefix), "range_end": b64(&prefix_end(prefix)) });
        if *next > 0 {
            create["start_revision"] = json!(next.to_string());
        }
        let body = serde_json::to_vec(&json!({ "create_request": create }))
            .map_err(|e| self.err(e.to_string()))?;
        let (status, body) = self.target.post_on(conn, "/v3/watch", &body, u64::MAX)?;
        if status != 200 {
            return Err(self.err(format!("/v3/watch: HTTP {status}")));
        }
        let mut lines = BufReader::new(body);
        loop {
            let mut line = Vec::new();
            let n = Read::take(&mut lines, MAX_WATCH_LINE)
                .read_until(b'\n', &mut line)
                .map_err(|e| self.err(format!("watch stream: {e}")))?;
            if n == 0 {
                return Err(self.err("watch stream ended"));
            }
            if !line.ends_with(b"\n") && n as u64 >= MAX_WATCH_LINE {
                return Err(self.err("watch message too large"));
            }
            let value: Value = serde_json::from_slice(&line)
                .map_err(|e| self.err(format!("watch message: {e}")))?;
            if let Some(e) = value.get("error") {
                return Err(self.err(format!("watch: {e}")));
            }
            let Some(result) = value.get("result") else {
                continue;
            };
            let compact = result.get("compact_revision").map(int).unwrap_or(0);
            if compact > 0 {
                *next = compact;
                if tx
                    .send(WatchEvent::Compacted { revision: compact })
                    .is_err()
                {
                    return Ok(());
                }
                return Err(self.err(format!("revision compacted; resuming from {compact}")));
            }
            if result.get("canceled").and_then(Value::as_bool) == Some(true) {
                return Err(self.err("watch canceled by etcd"));
            }
            for event in result
                .get("events")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let kv = self.kv(event.get("kv").unwrap_or(&Value::Null))?;
                *next = kv.mod_revision + 1;
                let delete = event.get("type").and_then(Value::as_str) == Some("DELETE");
                let ev = if delete {
                    WatchEvent::Delete {
                        key: kv.key,
                        mod_revision: kv.mod_revision,
                    }
                } else {
                    WatchEvent::Put(kv)
                };
                if tx.send(ev).is_err() {
                    return Ok(());
                }
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
    }
}

/// A running watch. Events arrive on [`Watcher::events`]; dropping [`Watcher::stopper`] (or
/// the whole watcher) stops the thread.
pub struct Watcher {
    /// The events, in revision order.
    pub events: Receiver<WatchEvent>,
    /// Stops the watch thread when dropped.
    pub stopper: WatchStop,
}

/// The stop switch of a [`Watcher`]'s thread: dropping it stops the thread and waits for it.
pub struct WatchStop {
    stop: Arc<AtomicBool>,
    socket: Arc<Mutex<Option<std::net::TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Stops the watch thread and waits for it.
    pub fn stop(self) {
        drop(self.stopper);
    }
}

impl Drop for WatchStop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self
            .socket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
