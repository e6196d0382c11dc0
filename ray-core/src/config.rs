//! `ray::init` settings.

/// Settings for [`init`](crate::init): the node's resources and a few runtime knobs.
///
/// ```
/// let config = ray::Config::default().num_cpus(4).num_gpus(2).resource("disk", 1.0);
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) num_cpus: Option<usize>,
    pub(crate) num_gpus: Option<usize>,
    pub(crate) resources: Vec<(String, f64)>,
    pub(crate) log_to_driver: bool,
    pub(crate) prestart_workers: Option<usize>,
    pub(crate) max_idle_workers: Option<usize>,
    pub(crate) object_store_memory: Option<u64>,
    pub(crate) spill_dir: Option<std::path::PathBuf>,
    pub(crate) max_inline_object_size: Option<usize>,
    pub(crate) gpu_detector: Option<fn() -> usize>,
    pub(crate) address: Option<String>,
    pub(crate) auth_token: Option<Secret>,
    pub(crate) namespace: Option<String>,
    pub(crate) task_events_max: Option<usize>,
    pub(crate) dashboard: Option<String>,
}

/// A secret that never shows in `Debug` output.
#[derive(Clone)]
pub(crate) struct Secret(#[cfg_attr(not(feature = "cluster"), allow(dead_code))] pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            num_cpus: None,
            num_gpus: None,
            resources: Vec::new(),
            log_to_driver: true,
            prestart_workers: None,
            max_idle_workers: None,
            object_store_memory: None,
            spill_dir: None,
            max_inline_object_size: None,
            gpu_detector: None,
            address: None,
            auth_token: None,
            namespace: None,
            task_events_max: None,
            dashboard: None,
        }
    }
}

impl Config {
    /// CPUs this node offers to tasks (default: the machine's cores). Tasks hold 1 CPU each
    /// unless they ask otherwise, so this bounds how many run at once.
    pub fn num_cpus(mut self, n: usize) -> Self {
        self.num_cpus = Some(n);
        self
    }

    /// GPUs this node offers (default: the GPUs detected on the machine, 0 when none; see
    /// [`init`](crate::init) for how they are counted). Logical GPU `i` is the `i`-th;
    /// `ray::get_gpu_ids()` reports the ones a worker got.
    pub fn num_gpus(mut self, n: usize) -> Self {
        self.num_gpus = Some(n);
        self
    }

    /// A custom resource, e.g. `.resource("disk", 2.0)`; tasks ask for it with
    /// `.resource("disk", 1)`.
    pub fn resource(mut self, name: impl Into<String>, amount: f64) -> Self {
        self.resources.push((name.into(), amount));
        self
    }

    /// Whether worker stdout/stderr is printed by the driver with a `(name pid=N)` prefix
    /// (default true).
    pub fn log_to_driver(mut self, yes: bool) -> Self {
        self.log_to_driver = yes;
        self
    }

    /// How many idle workers to start with `init` (default: `num_cpus`, at most 8).
    pub fn prestart_workers(mut self, n: usize) -> Self {
        self.prestart_workers = Some(n);
        self
    }

    /// How many idle task workers to keep for reuse (default: `num_cpus`, at least 1).
    pub fn max_idle_workers(mut self, n: usize) -> Self {
        self.max_idle_workers = Some(n);
        self
    }

    /// Capacity of the node's shared-memory object store in bytes (default: 30% of the
    /// machine's memory, as Ray). When it is full, referenced objects are spilled to disk.
    pub fn object_store_memory(mut self, bytes: u64) -> Self {
        self.object_store_memory = Some(bytes);
        self
    }

    /// Where spilled objects go (default: the system's temporary directory). The runtime
    /// makes a directory of its own inside and removes it at shutdown.
    pub fn object_spilling_directory(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.spill_dir = Some(dir.into());
        self
    }

    /// Objects smaller than this travel inside messages; larger ones go to the shared-memory
    /// store (default 100 KiB, as Ray's `max_direct_call_object_size`).
    pub fn max_inline_object_size(mut self, bytes: usize) -> Self {
        self.max_inline_object_size = Some(bytes);
        self
    }

    /// How to count the machine's GPUs when [`num_gpus`](Self::num_gpus) is not set, instead
    /// of the default (wgpu adapters with the `gpu` feature, the kernel's device nodes
    /// without). Detection runs in the background the first time a task or actor asks for a
    /// GPU, so programs that use none never pay for it.
    pub fn gpu_detector(mut self, detect: fn() -> usize) -> Self {
        self.gpu_detector = Some(detect);
        self
    }

    /// Joins the cluster at `address` (`HOST:PORT` of a `ray-rs` node) instead of starting a
    /// single-node runtime; the default is `RAY_ADDRESS`, when set. The cluster's nodes declare
    /// their own resources, so the resources set here are then ignored (with one warning).
    ///
    /// ```no_run
    /// ray::init(ray::Config::default().address("10.0.0.1:6380"))?;
    /// # Ok::<(), ray::Error>(())
    /// ```
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The cluster's token (default: `RAY_RS_AUTH_TOKEN`). It proves this driver belongs to the
    /// cluster; it never crosses the network and never appears in errors or logs.
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(Secret(token.into()));
        self
    }

    /// How many finished tasks and actor calls the node keeps for the state API
    /// ([`ray::state`](crate::state)) and the timeline (default
    /// [`DEFAULT_TASK_EVENTS_MAX`](crate::state::DEFAULT_TASK_EVENTS_MAX)); the oldest are
    /// forgotten first. 0 keeps none.
    pub fn task_events_max(mut self, n: usize) -> Self {
        self.task_events_max = Some(n);
        self
    }

    /// Serves the dashboard (web page, JSON state API, Prometheus `/metrics`) at `addr`, e.g.
    /// `"127.0.0.1:8265"` (port 0 picks a free one); `ray::init` prints its URL, and
    /// [`dashboard_url`](crate::dashboard_url) returns it. The environment variable
    /// `RAY_RS_DASHBOARD` does the same when this is not set. Needs the `dashboard` feature
    /// (`ray::init` fails with a message saying so without it). The dashboard is read-only.
    pub fn dashboard(mut self, addr: impl Into<String>) -> Self {
        self.dashboard = Some(addr.into());
        self
    }

    /// The job's namespace: where its actor names live unless an actor's options name another
    /// (Ray's `ray.init(namespace=..)`). Default: an anonymous namespace of the job's own.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The GPU count set with [`num_gpus`](Self::num_gpus), if any.
    pub fn gpus(&self) -> Option<usize> {
        self.num_gpus
    }
}
