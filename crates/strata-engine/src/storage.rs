//! Where a database's objects live: a local directory, or a prefix of an object store
//! (`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`), and every read and
//! write of the manifest, `CURRENT`, SST and deletion-vector objects.
//!
//! A database is named by a path; a path that starts with a URL scheme this module knows
//! ([`is_url`], [`StoreUrl`]) names a database on object storage:
//!
//! | scheme | store | settings read from the environment by |
//! |---|---|---|
//! | `s3://`, `s3a://` | Amazon S3 and S3-compatible | `AmazonS3Builder::from_env` (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...) |
//! | `gs://` | Google Cloud Storage | `GoogleCloudStorageBuilder::from_env` (`GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_SERVICE_ACCOUNT_KEY`, `GOOGLE_APPLICATION_CREDENTIALS`, ...; else the instance metadata server) |
//! | `az://`, `azure://`, `adl://`, `abfs://`, `abfss://` | Azure Blob Storage | `MicrosoftAzureBuilder::from_env` (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`, `AZURE_STORAGE_USE_EMULATOR`, ...) |
//!
//! These are the schemes `object_store`'s own URL parsing (`ObjectStoreScheme::parse`) maps
//! to those three stores, and each store's builder reads the URL itself (`with_url`: the
//! bucket or container, and for `abfs[s]://container@account.dfs.core.windows.net/...` the
//! account); the part after the bucket is the database's prefix in it. One code path builds
//! all three ([`StoreUrl::build_store`]), for databases and for the SQL layer's external
//! tables and `COPY` targets alike. A database needs conditional puts (below); `object_store`
//! 0.13 sends them to S3 (`If-None-Match: *`, `If-Match`), GCS (`x-goog-if-generation-match`)
//! and Azure (`If-None-Match: *`, `If-Match`). A store configured without them (S3 with
//! `AWS_CONDITIONAL_PUT=disabled`) fails the open, the first commit, with an error saying so:
//! a database never runs there unfenced.
//!
//! ## Object layout
//!
//! The same names in both kinds of storage, relative to the directory or to the URL's prefix:
//!
//! ```text
//! CURRENT                          name of the live manifest, then "\n"
//! MANIFEST-<n:06>                  manifest (format: crate::manifest)
//! sst/t<table:06>/<file:012>.parquet    SST (format: crate::sst)
//! sst/t<table:06>/<id:012>.dv      deletion vector (format: crate::dv)
//! wal/<segment>.log                WAL segments (always on a local disk; see below)
//! LOCK                             the local lock file (local databases only)
//! ```
//!
//! On a local disk the manifest is an append-only log and `CURRENT` is replaced by rename
//! (see [`crate::manifest`]). An object store cannot append, so there every commit writes the
//! whole new state as the next manifest object, `MANIFEST-<n+1>`, a complete format-1 log of
//! one snapshot record, with a *create-if-absent* put (`If-None-Match: *`): of two writers that
//! both read manifest `n`, exactly one creates `n + 1`; the other gets
//! [`crate::Error::Fenced`]. `CURRENT` is then moved forward with a put conditional on the
//! version this writer last saw (`If-Match: <etag>`), so it never moves backwards; it may lag
//! (a crash between the two puts), and an open reads the manifest `CURRENT` names and then the
//! following numbers while they exist. The open of a writer is itself a commit (it raises the
//! manifest's writer epoch), so a newer writer fences every older one at the older one's next
//! commit. The two manifests before the live one are kept (a reader that read `CURRENT` just
//! before a commit still finds the one it names); older ones are deleted.
//!
//! The WAL stays on a local disk for a database on object storage (the *local-WAL mode*,
//! [`crate::Options::local_wal_dir`]): writes are acknowledged when the local WAL has them
//! (per [`crate::SyncMode`]), and reach the object store when their memtable is flushed. Until
//! then they exist on that one disk only: if it is lost, or the database is opened from another
//! machine (or another WAL directory), the writes not yet flushed are not there.
//! A fenced writer learns it is fenced at its next commit (a flush, a compaction, DDL): the
//! writes it acknowledged into its local WAL after the newer writer opened are not in the
//! database the newer writer sees (they stay in the fenced writer's WAL directory, and its
//! flush fails with [`crate::Error::Fenced`]). An object-store WAL, which would let the newer
//! writer replay them and fence at write time, is not implemented.
//!
//! The two costs, measured (`benches/README.md`, "The WAL on object storage";
//! `STRATA_BENCH_S3=1 cargo bench --bench sql`), per group-commit window of 4 KiB to 1 MiB:
//! the local WAL makes a window durable with an append and one `fdatasync`, a flat ~4.0 ms
//! median on the benchmark machine's disk whatever the size (~250 windows/s for one writer);
//! a WAL on the store would pay one create-if-absent PUT per window, 3.9–6.1 ms at 4 KiB,
//! 5.3–5.5 ms at 64 KiB and 9.2–9.4 ms at 1 MiB median to `moto` on loopback through this
//! module's client (no network, no replication: a floor, where AWS gives tens of milliseconds
//! for a small S3 PUT), and every write of the window would wait for it. The local WAL is
//! therefore the default and only mode; its price is the durability window described above.
//!
//! ## Requests
//!
//! Requests to an object store run on a small I/O runtime owned by the storage (two threads),
//! so they work from any thread, including the engine's own and a caller's async runtime; the
//! engine waits for them synchronously, as it does for local file I/O. Each request is retried
//! by `object_store` at most [`REMOTE_MAX_RETRIES`] times with exponential backoff (server
//! errors, throttling, timeouts), within [`REMOTE_RETRY_TIMEOUT`]; then the error is returned.
//! The fault injector ([`crate::fault`]) sits below those retries, in the HTTP client, so an
//! injected failure or throttling response is retried exactly like a real one.
//!
//! ## Reads and the disk cache
//!
//! SST bytes on an object store are read through [`Storage::read_range`]: from the
//! database's disk cache ([`crate::disk_cache`], in the local WAL directory by default) when
//! it holds them, else with a ranged GET whose chunks are then cached. Every GET (and the
//! bytes it fetched) is counted in the database's metrics (`object_gets`,
//! `object_get_bytes`) and for the operation tracked on the calling thread
//! ([`crate::metrics::track_reads`]).
//!
//! Readers outside the engine read SST objects through [`Storage::read_store`], an
//! `object_store` adapter over [`Storage::read_range`] ([`crate::cached_store`]): SQL scans
//! of a database on object storage take the base path (DataFusion's Parquet reader) through
//! it, with the same disk cache and counters as the engine's own reads.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
    SpawnedReqwestConnector,
};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig, UpdateVersion,
};

use crate::cached_store::KnownObjects;
use crate::disk_cache::{DiskCache, ObjectId};
use crate::error::{Error, Result};
use crate::fault::{self, FaultAction, FaultInjector, IoOp};
use crate::fsutil::sync_dir;
use crate::metrics::{Metrics, ReadCounter};

/// Retries of one object-store request before its error is returned.
pub const REMOTE_MAX_RETRIES: usize = 4;
/// Longest time from a request's first attempt after which it is not retried.
pub const REMOTE_RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// Least bytes of a multipart-upload part an S3-compatible store accepts (but the last).
pub const REMOTE_MIN_PART_BYTES: usize = 5 << 20;

/// The kinds of object store a database (or an external table) can live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Amazon S3 and S3-compatible stores.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage (and Data Lake Storage Gen2).
    Azure,
}

impl StoreKind {
    /// The store's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::S3 => "S3",
            StoreKind::Gcs => "Google Cloud Storage",
            StoreKind::Azure => "Azure Blob Storage",
        }
    }

    /// The main environment variables the store's builder reads, for messages.
    pub fn settings(self) -> &'static str {
        match self {
            StoreKind::S3 => {
                "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT, AWS_ALLOW_HTTP"
            }
            StoreKind::Gcs => {
                "GOOGLE_SERVICE_ACCOUNT (a key file), GOOGLE_SERVICE_ACCOUNT_KEY (its JSON), \
                 GOOGLE_APPLICATION_CREDENTIALS; else the instance metadata server"
            }
            StoreKind::Azure => {
                "AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY, \
                 AZURE_STORAGE_USE_EMULATOR"
            }
        }
    }
}

/// URL schemes naming a database on object storage, and their stores: those
/// `object_store::ObjectStoreScheme::parse` maps to S3, GCS and Azure.
const SCHEMES: [(&str, StoreKind); 8] = [
    ("s3", StoreKind::S3),
    ("s3a", StoreKind::S3),
    ("gs", StoreKind::Gcs),
    ("az", StoreKind::Azure),
    ("azure", StoreKind::Azure),
    ("adl", StoreKind::Azure),
    ("abfs", StoreKind::Azure),
    ("abfss", StoreKind::Azure),
];

/// The store kind of a URL scheme (lower case, as `url` gives it).
fn scheme_kind(scheme: &str) -> Option<StoreKind> {
    SCHEMES
        .iter()
        .find(|(name, _)| *name == scheme)
        .map(|(_, kind)| *kind)
}

/// True when `path` is an object-store URL (such as `s3://bucket/prefix`), not a directory.
pub fn is_url(path: &Path) -> bool {
    path.to_str().is_some_and(|s| {
        s.split_once("://")
            .is_some_and(|(scheme, _)| scheme_kind(&scheme.to_ascii_lowercase()).is_some())
    })
}

/// An object-store URL: the store it names, its bucket (container) and the prefix in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    kind: StoreKind,
    /// `scheme://[user@]host`: what the store's builder is given.
    root: String,
    /// The path after the bucket, without leading or trailing `/` (may be empty).
    prefix: String,
}

impl StoreUrl {
    /// Parses `text` (`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`,
    /// `abfss://container@account.dfs.core.windows.net/prefix`, ...).
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |m: &str| Error::InvalidArgument(format!("object-store URL {text}: {m}"));
        let url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
        let known = SCHEMES
            .iter()
            .map(|(name, _)| format!("{name}://"))
            .collect::<Vec<_>>()
            .join(", ");
        let kind = scheme_kind(url.scheme())
            .ok_or_else(|| invalid(&format!("unsupported scheme (use one of {known})")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no bucket name"));
        }
        if url.password().is_some() || (!url.username().is_empty() && kind != StoreKind::Azure) {
            return Err(invalid(
                "credentials in the URL are not read (they come from the environment)",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a query or fragment is not part of a store URL"));
        }
        if url.port().is_some() {
            return Err(invalid(
                "a port is not part of a store URL (set the endpoint in the environment)",
            ));
        }
        let (_, path) =
            object_store::ObjectStoreScheme::parse(&url).map_err(|e| invalid(&e.to_string()))?;
        let root = format!(
            "{}://{}",
            url.scheme(),
            &url[url::Position::BeforeUsername..url::Position::AfterHost]
        );
        Ok(StoreUrl {
            kind,
            root,
            prefix: path.as_ref().trim_matches('/').to_string(),
        })
    }

    /// The store the URL names.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// `scheme://bucket` (`scheme://container@account.host` for such Azure URLs).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The path inside the bucket (no leading or trailing `/`; empty for the whole bucket).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The URL, normalized: `root/prefix`.
    pub fn display(&self) -> String {
        match self.prefix.as_str() {
            "" => self.root.clone(),
            p => format!("{}/{p}", self.root),
        }
    }

    /// The store of the URL's bucket (not scoped to the prefix), its settings and credentials
    /// read from the environment by the store's `from_env` builder, its requests sent through
    /// `connector` and retried as [`REMOTE_MAX_RETRIES`] and [`REMOTE_RETRY_TIMEOUT`] say.
    /// Building sends no request; a missing setting the store cannot do without (a bucket, an
    /// Azure account) is an error here, missing credentials at the first request.
    pub fn build_store<C: HttpConnector>(&self, connector: C) -> Result<Arc<dyn ObjectStore>> {
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: REMOTE_MAX_RETRIES,
            retry_timeout: REMOTE_RETRY_TIMEOUT,
        };
        macro_rules! build {
            ($builder:expr) => {
                $builder
                    .with_url(self.root.as_str())
                    .with_http_connector(connector)
                    .with_retry(retry)
                    .build()
                    .map(|store| Arc::new(store) as Arc<dyn ObjectStore>)
            };
        }
        let built = match self.kind {
            StoreKind::S3 => build!(AmazonS3Builder::from_env()),
            StoreKind::Gcs => build!(GoogleCloudStorageBuilder::from_env()),
            StoreKind::Azure => build!(MicrosoftAzureBuilder::from_env()),
        };
        built.map_err(|e| {
            Error::InvalidArgument(format!(
                "object-store URL {}: cannot set up {}: {e} (settings come from the \
                 environment: {})",
                self.display(),
                self.kind.name(),
                self.kind.settings()
            ))
        })
    }
}

/// The version of an object a conditional put compares against (its e-tag and, where the
/// store versions objects, its version id).
pub type ObjectVersion = UpdateVersion;

/// What a conditional put did.
#[derive(Debug)]
pub enum PutOutcome {
    /// The object was written; its new version.
    Written(ObjectVersion),
    /// The condition failed: the object exists (create) or changed (update). Nothing written.
    Conflict,
}

/// The condition of a conditional put.
#[derive(Debug, Clone)]
pub enum PutCondition {
    /// Only if no object has the name (`If-None-Match: *`).
    Create,
    /// Only if the object is still at this version (`If-Match`).
    Matches(ObjectVersion),
}

/// A tokio runtime for object-store requests, shut down without blocking when dropped (it may
/// be dropped on an async runtime's thread, where a blocking shutdown panics).
#[derive(Debug)]
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("runtime present until dropped")
            .handle()
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Debug)]
enum Place {
    /// A local directory.
    Local(PathBuf),
    /// An object store (already scoped to the database's prefix), its kind and its I/O
    /// runtime.
    Remote {
        url: String,
        kind: StoreKind,
        io: Arc<IoRuntime>,
    },
}

/// The objects of one database (cheap to clone: shared handles).
#[derive(Debug, Clone)]
pub struct Storage {
    place: Arc<Place>,
    store: Arc<dyn ObjectStore>,
    faults: Option<Arc<FaultInjector>>,
    /// Where GETs and disk-cache hits are counted.
    metrics: Arc<Metrics>,
    /// The disk cache of SST byte ranges (object stores only; `None`: none).
    disk_cache: Option<Arc<DiskCache>>,
    /// Metadata of the SST objects opened so far (object stores only), shared with every
    /// [`Self::read_store`].
    known_objects: Arc<KnownObjects>,
}

/// The disk cache's name of object `object_path`, described by `meta`.
fn object_id(object_path: &str, meta: ObjectMeta) -> ObjectId {
    ObjectId {
        path: object_path.to_string(),
        size: meta.size,
        e_tag: meta.e_tag.unwrap_or_default(),
    }
}

fn store_error(path: &str, e: impl std::fmt::Display) -> Error {
    Error::ObjectStore {
        path: path.to_string(),
        message: e.to_string(),
    }
}

impl Storage {
    /// The storage of the database in local directory `root` (created, with `sst/`, if
    /// missing).
    pub fn new(root: &Path, faults: Option<Arc<FaultInjector>>) -> Result<Self> {
        std::fs::create_dir_all(root.join("sst")).map_err(|e| Error::io(root, e))?;
        let store = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| store_error(&root.display().to_string(), e))?;
        Ok(Storage {
            place: Arc::new(Place::Local(root.to_path_buf())),
            store: Arc::new(store),
            faults,
            metrics: Arc::default(),
            disk_cache: None,
            known_objects: Arc::default(),
        })
    }

    /// The storage of the database at object-store URL `url` ([`StoreUrl`]), with settings
    /// and credentials from the environment.
    pub fn open_url(url: &str, faults: Option<Arc<FaultInjector>>) -> Result<Self> {
        let parsed = StoreUrl::parse(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io(url, e))?;
        let io = Arc::new(IoRuntime(Some(runtime)));
        let connector = FaultConnector {
            inner: SpawnedReqwestConnector::new(io.handle().clone()),
            faults: faults.clone(),
        };
        let bucket = parsed.build_store(connector)?;
        let store: Arc<dyn ObjectStore> = match parsed.prefix() {
            "" => bucket,
            prefix => Arc::new(PrefixStore::new(bucket, prefix)),
        };
        Ok(Storage {
            place: Arc::new(Place::Remote {
                url: parsed.display(),
                kind: parsed.kind(),
                io,
            }),
            store,
            faults,
            metrics: Arc::default(),
            disk_cache: None,
            known_objects: Arc::default(),
        })
    }

    /// The storage `path` names: an object-store URL ([`is_url`]) or a local directory.
    pub fn for_path(path: &Path, faults: Option<Arc<FaultInjector>>) -> Result<Self> {
        match path.to_str() {
            Some(url) if is_url(path) => Storage::open_url(url, faults),
            _ => Storage::new(path, faults),
        }
    }

    /// This storage counting its reads in `metrics` and reading SST bytes through
    /// `disk_cache` (ignored for a local database).
    pub fn with_reads(mut self, metrics: Arc<Metrics>, disk_cache: Option<Arc<DiskCache>>) -> Self {
        self.metrics = metrics;
        self.disk_cache = disk_cache.filter(|_| self.is_remote());
        self
    }

    /// The disk cache, if the database has one.
    pub fn disk_cache(&self) -> Option<&Arc<DiskCache>> {
        self.disk_cache.as_ref()
    }

    /// True for a database on an object store.
    pub fn is_remote(&self) -> bool {
        matches!(*self.place, Place::Remote { .. })
    }

    /// The kind of object store of a database on one (`None`: a local database).
    pub fn store_kind(&self) -> Option<StoreKind> {
        match &*self.place {
            Place::Local(_) => None,
            Place::Remote { kind, .. } => Some(*kind),
        }
    }

    /// `error` of a request of a database on object storage, with a note of where the
    /// store's settings and credentials come from (a missing or wrong credential shows up as
    /// the failure of the first request); other errors as they are.
    pub fn with_settings_note(&self, error: Error) -> Error {
        match (error, self.store_kind()) {
            (Error::ObjectStore { path, message }, Some(kind)) => Error::ObjectStore {
                path,
                message: format!(
                    "{message} (settings and credentials of {} come from the environment: {})",
                    kind.name(),
                    kind.settings()
                ),
            },
            (error, _) => error,
        }
    }

    /// The local directory of a local database.
    pub fn local_root(&self) -> Option<&Path> {
        match &*self.place {
            Place::Local(root) => Some(root),
            Place::Remote { .. } => None,
        }
    }

    /// The database's directory, or its URL as a path (for messages and [`crate::Db::path`]).
    pub fn root(&self) -> PathBuf {
        match &*self.place {
            Place::Local(root) => root.clone(),
            Place::Remote { url, .. } => PathBuf::from(url),
        }
    }

    /// The `object_store` holding the objects (its paths are relative to the database root).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// A read-only `object_store` over this storage whose reads go through
    /// [`Self::read_range`] (the disk cache and the GET counters; see
    /// [`crate::cached_store`]), for readers outside the engine such as DataFusion's Parquet
    /// reader.
    pub fn read_store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(crate::cached_store::CachedStore::new(self.clone()))
    }

    /// The local path of an object of a local database; for a database on object storage,
    /// its URL (good for messages only).
    pub fn local_path(&self, object_path: &str) -> PathBuf {
        self.root().join(object_path)
    }

    /// The fault injector.
    pub(crate) fn faults(&self) -> Option<&Arc<FaultInjector>> {
        self.faults.as_ref()
    }

    /// Least bytes of a part of a multipart upload (but the last).
    pub fn min_part_bytes(&self) -> usize {
        if self.is_remote() {
            REMOTE_MIN_PART_BYTES
        } else {
            0
        }
    }

    /// Runs `future` to completion from synchronous code: on the I/O runtime for an object
    /// store (its HTTP client and retry timers need one), on this thread for a local one.
    ///
    /// The caller may be a tokio worker (a query dropping the last reference to an obsolete
    /// file deletes it from there), so the wait is exempt from tokio's cooperative budget
    /// (`tokio::task::unconstrained`): with the budget spent, tokio would defer the wake-up
    /// of the task awaited here (a local store's `spawn_blocking`, the I/O runtime's request
    /// task) until the worker returned to its scheduler, which a thread blocked here never
    /// does.
    pub fn block_on<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        match &*self.place {
            Place::Local(_) => Ok(futures::executor::block_on(tokio::task::unconstrained(
                future,
            ))),
            Place::Remote { url, io, .. } => {
                futures::executor::block_on(tokio::task::unconstrained(io.handle().spawn(future)))
                    .map_err(|e| Error::ObjectStore {
                        path: url.clone(),
                        message: format!("request task failed: {e}"),
                    })
            }
        }
    }

    /// Fails if the fault injector says `op` on `object_path` must fail now (local storage
    /// only: an object store's faults are injected in its HTTP client).
    pub(crate) fn check(&self, op: IoOp, object_path: &str) -> Result<()> {
        if self.is_remote() {
            return Ok(());
        }
        let local = self.local_path(object_path);
        fault::check(self.faults.as_deref(), op, &local).map_err(|e| Error::io(&local, e))
    }

    /// Syncs a file written through the object store, and its directory (nothing to do on an
    /// object store: a completed put is durable).
    pub fn sync_file(&self, object_path: &str) -> Result<()> {
        if self.is_remote() {
            return Ok(());
        }
        let local = self.local_path(object_path);
        File::open(&local)
            .and_then(|f| f.sync_all())
            .and_then(|()| local.parent().map_or(Ok(()), sync_dir))
            .map_err(|e| Error::io(&local, e))
    }

    /// Writes a whole object durably.
    pub fn put(&self, object_path: &str, bytes: Bytes) -> Result<()> {
        self.check(IoOp::SstWrite, object_path)?;
        let store = self.object_store();
        let path = ObjectPath::from(object_path);
        self.block_on(async move { store.put(&path, PutPayload::from(bytes)).await })?
            .map_err(|e| store_error(object_path, e))?;
        self.sync_file(object_path)
    }

    /// Writes a whole object if `condition` holds (object stores only: a local database
    /// commits through its lock file and append-only manifest).
    pub fn put_if(
        &self,
        object_path: &str,
        bytes: Bytes,
        condition: PutCondition,
    ) -> Result<PutOutcome> {
        debug_assert!(self.is_remote(), "conditional puts are for object stores");
        let store = self.object_store();
        let path = ObjectPath::from(object_path);
        let mode = match condition {
            PutCondition::Create => PutMode::Create,
            PutCondition::Matches(version) => PutMode::Update(version),
        };
        let result = self.block_on(async move {
            store
                .put_opts(&path, PutPayload::from(bytes), PutOptions::from(mode))
                .await
        })?;
        match result {
            Ok(put) => Ok(PutOutcome::Written(ObjectVersion::from(put))),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::Conflict),
            Err(
                e @ (object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. }),
            ) => Err(Error::ObjectStore {
                path: object_path.to_string(),
                message: format!(
                    "this store does not take conditional puts, which a database on object \
                     storage needs so that two writers can never both commit (for S3: leave \
                     AWS_CONDITIONAL_PUT unset, or set it to etag): {e}"
                ),
            }),
            Err(e) => Err(store_error(object_path, e)),
        }
    }

    /// Counts one GET that fetched `bytes`.
    fn count_get(&self, bytes: usize) {
        self.metrics.count_read(ReadCounter::ObjectGet, 1);
        self.metrics
            .count_read(ReadCounter::ObjectGetBytes, bytes as u64);
    }

    /// Reads a whole object and its version; `None` if it does not exist.
    pub fn get(&self, object_path: &str) -> Result<Option<(Bytes, ObjectVersion)>> {
        if self.is_remote() {
            // Counted when sent (a missing object's GET is a request too); bytes below.
            self.count_get(0);
        }
        let store = self.object_store();
        let path = ObjectPath::from(object_path);
        let result = self.block_on(async move {
            let got = store.get(&path).await?;
            let version = ObjectVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            Ok::<_, object_store::Error>((got.bytes().await?, version))
        })?;
        match result {
            Ok(got) => {
                if self.is_remote() {
                    self.metrics
                        .count_read(ReadCounter::ObjectGetBytes, got.0.len() as u64);
                }
                Ok(Some(got))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(object_path, e)),
        }
    }

    /// Reads a whole object (a local file with one read); a missing object is an I/O error
    /// (`NotFound`) on its path.
    pub fn read_all(&self, object_path: &str) -> Result<Bytes> {
        let path = self.local_path(object_path);
        if !self.is_remote() {
            return std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| Error::io(&path, e));
        }
        self.get(object_path)?
            .map(|(bytes, _)| bytes)
            .ok_or_else(|| {
                Error::io(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such object"),
                )
            })
    }

    /// The size of an object; `None` if it does not exist.
    pub fn size(&self, object_path: &str) -> Result<Option<u64>> {
        Ok(self.head(object_path)?.map(|id| id.size))
    }

    /// The size and e-tag of an object; `None` if it does not exist.
    pub fn head(&self, object_path: &str) -> Result<Option<ObjectId>> {
        Ok(self
            .head_meta(object_path)?
            .map(|meta| object_id(object_path, meta)))
    }

    /// The store's metadata of an object (one HEAD); `None` if it does not exist.
    fn head_meta(&self, object_path: &str) -> Result<Option<ObjectMeta>> {
        let store = self.object_store();
        let path = ObjectPath::from(object_path);
        match self.block_on(async move { store.head(&path).await })? {
            // Named as asked (a prefixed store may answer with its full path).
            Ok(meta) => Ok(Some(ObjectMeta {
                location: ObjectPath::from(object_path),
                ..meta
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(object_path, e)),
        }
    }

    /// The size and e-tag of an immutable SST object, from [`KnownObjects`] or one HEAD
    /// (which then teaches it to [`KnownObjects`], for the read stores); `None` if it does
    /// not exist.
    pub(crate) fn sst_object(&self, object_path: &str) -> Result<Option<ObjectId>> {
        if let Some(meta) = self.known_objects.get(object_path) {
            return Ok(Some(object_id(object_path, meta)));
        }
        let Some(meta) = self.head_meta(object_path)? else {
            return Ok(None);
        };
        self.known_objects.insert(object_path, meta.clone());
        Ok(Some(object_id(object_path, meta)))
    }

    /// The metadata of the SST objects opened so far.
    pub(crate) fn known_objects(&self) -> &KnownObjects {
        &self.known_objects
    }

    /// Bytes `range` of an object, with one GET (counted for an object store).
    pub fn get_range(&self, object_path: &str, range: Range<u64>) -> Result<Bytes> {
        let store = self.object_store();
        let path = ObjectPath::from(object_path);
        let bytes = self
            .block_on(async move { store.get_range(&path, range).await })?
            .map_err(|e| store_error(object_path, e))?;
        if self.is_remote() {
            self.count_get(bytes.len());
        }
        Ok(bytes)
    }

    /// Bytes `range` of `object` (an immutable SST object of this version): through the disk
    /// cache when the database has one, else with one GET.
    pub fn read_range(&self, object: &ObjectId, range: Range<u64>) -> Result<Bytes> {
        match &self.disk_cache {
            Some(cache) => cache.read(object, range, &self.metrics, |fetch| {
                self.get_range(&object.path, fetch)
            }),
            None => self.get_range(&object.path, range),
        }
    }

    /// Deletes an object; a missing object is not an error.
    pub fn delete(&self, object_path: &str) -> Result<()> {
        self.check(IoOp::Delete, object_path)?;
        let store = self.object_store();
        let path = ObjectPath::from(object_path);
        match self.block_on(async move { store.delete(&path).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(object_path, e)),
        }
    }

    /// Paths of every object under `prefix` (a directory-like prefix such as `sst`).
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let store = self.object_store();
        let path = ObjectPath::from(prefix);
        let listed = self.block_on(async move {
            store
                .list(Some(&path))
                .map(|item| item.map(|meta| meta.location.to_string()))
                .collect::<Vec<_>>()
                .await
        })?;
        listed
            .into_iter()
            .map(|item| item.map_err(|e| store_error(&format!("{prefix}/"), e)))
            .collect()
    }

    /// Object paths of every object at the root whose name starts with `name_prefix` (such as
    /// `MANIFEST-`), not descending into `sst/` or `wal/`.
    pub fn list_root(&self, name_prefix: &str) -> Result<Vec<String>> {
        let store = self.object_store();
        let listed = self
            .block_on(async move { store.list_with_delimiter(None).await })?
            .map_err(|e| store_error("/", e))?;
        Ok(listed
            .objects
            .into_iter()
            .map(|meta| meta.location.to_string())
            .filter(|name| name.starts_with(name_prefix))
            .collect())
    }
}

/// An HTTP connector that consults the fault injector before every request: a failure rule
/// answers `500 InternalError` (or `503 SlowDown` for [`std::io::ErrorKind::QuotaExceeded`],
/// the throttling answer), a delay rule waits first. Both are then retried by `object_store`
/// like real answers.
#[derive(Debug)]
struct FaultConnector {
    inner: SpawnedReqwestConnector,
    faults: Option<Arc<FaultInjector>>,
}

impl HttpConnector for FaultConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = self.inner.connect(options)?;
        match &self.faults {
            None => Ok(inner),
            Some(faults) => Ok(HttpClient::new(FaultService {
                inner,
                faults: Arc::clone(faults),
            })),
        }
    }
}

#[derive(Debug)]
struct FaultService {
    inner: HttpClient,
    faults: Arc<FaultInjector>,
}

/// The kind of engine operation an HTTP request to the store is part of.
fn request_op(method: &http::Method, path: &str) -> IoOp {
    let name = path.rsplit('/').next().unwrap_or_default();
    match *method {
        http::Method::DELETE => IoOp::Delete,
        http::Method::PUT | http::Method::POST
            if name.starts_with("MANIFEST-") || name == "CURRENT" =>
        {
            IoOp::ManifestWrite
        }
        http::Method::PUT | http::Method::POST => IoOp::SstWrite,
        _ => IoOp::SstRead,
    }
}

#[async_trait::async_trait]
impl HttpService for FaultService {
    async fn call(&self, req: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let path = req.uri().path().to_string();
        let op = request_op(req.method(), &path);
        match self.faults.action(op, Path::new(&path)) {
            FaultAction::Proceed => {}
            FaultAction::Delay(delay) => tokio::time::sleep(delay).await,
            FaultAction::Fail(error) => {
                let (status, code) = if error.kind() == std::io::ErrorKind::QuotaExceeded {
                    (503, "SlowDown")
                } else {
                    (500, "InternalError")
                };
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
                     <Message>{error}</Message></Error>"
                );
                let response = http::Response::builder()
                    .status(status)
                    .body(HttpResponseBody::from(body))
                    .map_err(|e| HttpError::new(object_store::client::HttpErrorKind::Unknown, e))?;
                return Ok(response);
            }
        }
        self.inner.execute(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file dropped by a query releases its version on a tokio worker, whose cooperative
    /// budget the query may have spent in that same poll; the storage call made there (list,
    /// get, delete, all awaiting `spawn_blocking` on a local store) must still complete. With
    /// the budget spent, tokio defers the wake-up of the awaited task until the worker
    /// returns to its scheduler, which a thread blocked on the call never does: the query
    /// hung forever (seen under the live-table benchmark at 10M rows, when a compaction
    /// made the query's files obsolete).
    #[test]
    fn storage_calls_complete_on_a_tokio_worker_whose_budget_is_spent() {
        use futures::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(dir.path(), None).unwrap();
        storage
            .put("sst/x.parquet", Bytes::from_static(b"x"))
            .unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let check = storage.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let outcome = rt.block_on(async move {
                tokio::spawn(async move {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                    for i in 0..1_000 {
                        tx.send(i).unwrap();
                    }
                    // Spend the task's budget without yielding to the scheduler.
                    for _ in 0..1_000 {
                        let _ = rx.recv().now_or_never();
                    }
                    let listed = storage.list("sst")?;
                    storage.delete("sst/x.parquet")?;
                    Ok::<_, Error>(listed)
                })
                .await
                .unwrap()
            });
            let _ = done.send(outcome);
        });
        let listed = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a storage call on a tokio worker with its budget spent never completed")
            .unwrap();
        assert_eq!(listed, vec!["sst/x.parquet".to_string()]);
        assert!(check.list("sst").unwrap().is_empty());
    }

    #[test]
    fn urls_are_told_from_directories() {
        for url in [
            "s3://bucket/prefix",
            "s3a://bucket",
            "gs://bucket/prefix",
            "az://container/prefix",
            "azure://container",
            "adl://container/p",
            "abfs://container/p",
            "abfss://container@account.dfs.core.windows.net/p",
            "GS://bucket/p",
        ] {
            assert!(is_url(Path::new(url)), "{url}");
        }
        for path in [
            "data/s3:",
            "/tmp/db",
            "file:///tmp/db",
            "http://host/x",
            "gcs://b/p",
        ] {
            assert!(!is_url(Path::new(path)), "{path}");
        }
        assert!(Storage::open_url("s3:///x", None).is_err());
    }

    /// The store kind, bucket root and prefix of each accepted URL form, and the URLs
    /// refused with a message (no store is built, no request sent).
    #[test]
    fn store_urls_name_their_store_bucket_and_prefix() {
        let cases = [
            ("s3://bucket/a/b", StoreKind::S3, "s3://bucket", "a/b"),
            ("s3a://bucket/", StoreKind::S3, "s3a://bucket", ""),
            ("s3://bucket", StoreKind::S3, "s3://bucket", ""),
            ("gs://my-bucket/db/", StoreKind::Gcs, "gs://my-bucket", "db"),
            ("gs://b/x%20y/z", StoreKind::Gcs, "gs://b", "x y/z"),
            (
                "az://container/wh/db",
                StoreKind::Azure,
                "az://container",
                "wh/db",
            ),
            (
                "azure://container/db",
                StoreKind::Azure,
                "azure://container",
                "db",
            ),
            (
                "adl://container/db",
                StoreKind::Azure,
                "adl://container",
                "db",
            ),
            (
                "abfs://container/db",
                StoreKind::Azure,
                "abfs://container",
                "db",
            ),
            (
                "abfss://fs@account.dfs.core.windows.net/db",
                StoreKind::Azure,
                "abfss://fs@account.dfs.core.windows.net",
                "db",
            ),
        ];
        for (text, kind, root, prefix) in cases {
            let url = StoreUrl::parse(text).unwrap();
            assert_eq!(
                (url.kind(), url.root(), url.prefix()),
                (kind, root, prefix),
                "{text}"
            );
        }
        assert_eq!(StoreUrl::parse("gs://b/p/").unwrap().display(), "gs://b/p");
        let refused = [
            ("gs:///p", "no bucket name"),
            ("s3://key:secret@bucket/p", "credentials in the URL"),
            ("gs://user@bucket/p", "credentials in the URL"),
            ("s3://bucket/p?versionId=1", "query or fragment"),
            ("s3://bucket:9000/p", "port"),
            ("gcs://bucket/p", "unsupported scheme"),
            ("file:///tmp/db", "unsupported scheme"),
        ];
        for (text, message) in refused {
            let err = StoreUrl::parse(text).unwrap_err().to_string();
            assert!(err.contains(message) && err.contains(text), "{text}: {err}");
        }
    }

    /// Building each kind of store from a URL takes the URL's bucket (container, account) as
    /// the store's builder parses it and sends no request; an Azure URL naming no account,
    /// with none in the environment, is refused at once, the message naming the settings.
    #[test]
    fn stores_are_built_from_urls_without_requests() {
        let connector = object_store::client::ReqwestConnector::default;
        for (text, shown) in [
            ("s3://bucket/p", "bucket"),
            ("gs://bucket/p", "bucket"),
            ("abfss://fs@account.dfs.core.windows.net/p", "account"),
        ] {
            let store = StoreUrl::parse(text)
                .unwrap()
                .build_store(connector())
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(store.to_string().contains(shown), "{text}: {store}");
        }
        if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_none() {
            let err = StoreUrl::parse("az://container/p")
                .unwrap()
                .build_store(connector())
                .expect_err("no Azure account")
                .to_string();
            assert!(
                err.contains("Azure Blob Storage") && err.contains("AZURE_STORAGE_ACCOUNT_NAME"),
                "{err}"
            );
        }
    }
}
