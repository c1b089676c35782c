//! [`CachedStore`]: a read-only `object_store::ObjectStore` over a database's [`Storage`], so
//! readers outside the engine (DataFusion's Parquet reader) read SST objects the way the
//! engine does.
//!
//! Every ranged read goes through [`Storage::read_range`]: from the disk cache
//! ([`crate::disk_cache`]) when it holds the bytes, else with a ranged GET, counted in the
//! database's metrics (`object_gets`, `object_get_bytes`, `disk_cache_hits`, ...). The engine's
//! reads are blocking, so each runs on a `tokio::task::spawn_blocking` thread; the operation
//! tracked on the calling thread when the read was asked for ([`crate::metrics::track_reads`])
//! is tracked on that thread too, so a query's reads are counted for the query.
//!
//! Invariants:
//! * only immutable objects are read through it (SSTs: an object path is never rewritten), so
//!   an object's metadata (size, e-tag) is looked up once per process and kept in the
//!   storage's [`KnownObjects`], shared by every read store of the storage (one per query) and
//!   filled by the engine's own opening of an SST ([`Storage::open`]), which comes first: a
//!   query verifies each file before its Parquet reader opens it, so a query's reads send no
//!   HEAD (at most [`KNOWN_OBJECTS`] entries; the map is emptied when full);
//! * writes, deletes, copies and listings return `Error::NotSupported`.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    PutResult,
};

use crate::disk_cache::ObjectId;
use crate::metrics::{ReadStats, current_reads, track_reads};
use crate::storage::Storage;

/// Most object metadata entries kept.
pub const KNOWN_OBJECTS: usize = 1 << 16;

const NAME: &str = "Strata";

/// A read-only object store reading a database's objects through its disk cache (see the
/// module doc).
#[derive(Debug, Clone)]
pub struct CachedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    storage: Storage,
}

/// Metadata of the immutable objects (SSTs) of a database already looked up, by object path
/// (at most [`KNOWN_OBJECTS`]; emptied when full).
#[derive(Debug, Default)]
pub(crate) struct KnownObjects {
    map: Mutex<HashMap<String, ObjectMeta>>,
}

impl KnownObjects {
    /// The metadata of the object at `path`, if known.
    pub(crate) fn get(&self, path: &str) -> Option<ObjectMeta> {
        self.map.lock().ok()?.get(path).cloned()
    }

    /// Remembers `meta` as the metadata of the object at `path`.
    pub(crate) fn insert(&self, path: &str, meta: ObjectMeta) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= KNOWN_OBJECTS {
                map.clear();
            }
            map.insert(path.to_string(), meta);
            debug_assert!(map.len() <= KNOWN_OBJECTS);
        }
    }
}

fn not_supported(operation: &str) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("{operation}: the Strata read store only reads").into(),
    }
}

fn generic(error: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: NAME,
        source: Box::new(error),
    }
}

impl CachedStore {
    /// The read store of `storage`.
    pub fn new(storage: Storage) -> Self {
        CachedStore {
            inner: Arc::new(Inner { storage }),
        }
    }
}

impl Inner {
    /// The metadata of the object at `location` (known, else one HEAD; blocking).
    fn meta(&self, location: &Path) -> object_store::Result<ObjectMeta> {
        let key = location.to_string();
        let known = self.storage.known_objects();
        if let Some(meta) = known.get(&key) {
            return Ok(meta);
        }
        let store = self.storage.object_store();
        let path = location.clone();
        let head = self
            .storage
            .block_on(async move { store.head(&path).await })
            .map_err(generic)??;
        // Named as asked (a prefixed store may answer with its full path).
        let meta = ObjectMeta {
            location: location.clone(),
            ..head
        };
        known.insert(&key, meta.clone());
        Ok(meta)
    }

    /// Bytes `range` of the object `meta` describes, through the disk cache (blocking).
    fn read(&self, meta: &ObjectMeta, range: Range<u64>) -> object_store::Result<Bytes> {
        debug_assert!(range.start < range.end && range.end <= meta.size);
        let object = ObjectId {
            path: meta.location.to_string(),
            size: meta.size,
            e_tag: meta.e_tag.clone().unwrap_or_default(),
        };
        self.storage.read_range(&object, range).map_err(generic)
    }

    /// [`ObjectStore::get_opts`], blocking.
    fn get(&self, location: &Path, options: &GetOptions) -> object_store::Result<GetResult> {
        if options.version.is_some() {
            return Err(not_supported("get of an object version"));
        }
        let meta = self.meta(location)?;
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(range) => range.as_range(meta.size).map_err(generic)?,
            None => 0..meta.size,
        };
        let bytes = if options.head || range.is_empty() {
            Bytes::new()
        } else {
            self.read(&meta, range.clone())?
        };
        let payload = futures::stream::once(async move { Ok(bytes) }).boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(payload),
            meta,
            range,
            attributes: Attributes::default(),
        })
    }
}

/// Runs blocking `f` on a blocking thread, tracked for `stats` when given.
async fn blocking<T: Send + 'static>(
    stats: Option<Arc<ReadStats>>,
    f: impl FnOnce() -> object_store::Result<T> + Send + 'static,
) -> object_store::Result<T> {
    tokio::task::spawn_blocking(move || match &stats {
        Some(stats) => track_reads(stats, f),
        None => f(),
    })
    .await
    .map_err(|e| object_store::Error::JoinError { source: e })?
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{NAME}({})", self.inner.storage.root().display())
    }
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        _location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(not_supported("put"))
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(not_supported("multipart put"))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let stats = current_reads();
        let inner = Arc::clone(&self.inner);
        let location = location.clone();
        blocking(stats, move || inner.get(&location, &options)).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let stats = current_reads();
        let inner = Arc::clone(&self.inner);
        let location = location.clone();
        let ranges = ranges.to_vec();
        blocking(stats, move || {
            let meta = inner.meta(&location)?;
            ranges
                .into_iter()
                .map(|range| {
                    let range = object_store::GetRange::Bounded(range)
                        .as_range(meta.size)
                        .map_err(generic)?;
                    inner.read(&meta, range)
                })
                .collect()
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations.map(|_| Err(not_supported("delete"))).boxed()
    }

    fn list(&self, _prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        futures::stream::once(async { Err(not_supported("list")) }).boxed()
    }

    async fn list_with_delimiter(
        &self,
        _prefix: Option<&Path>,
    ) -> object_store::Result<ListResult> {
        Err(not_supported("list"))
    }

    async fn copy_opts(
        &self,
        _from: &Path,
        _to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(not_supported("copy"))
    }
}
