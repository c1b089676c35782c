//! The cause of a failed CSV or JSON file write, which DataFusion 55 drops.
//!
//! DataFusion's CSV and JSON sinks (`COPY ... TO`, `INSERT INTO` an external table) write each
//! file through an object-store buffered writer. A file smaller than the writer's buffer is
//! stored by one `put` when the writer is shut down, and a larger one's multipart upload is
//! completed there; DataFusion maps any error of that shutdown to the internal error "Error
//! encountered while finalizing writes!", dropping the store's own error
//! (`datafusion-datasource`'s `write/orchestration.rs`). So a missing bucket, a refused
//! credential, a full disk or a path under a regular file all read as "a bug in DataFusion".
//!
//! This module puts the cause back:
//!
//! * [`RecordingStore`] wraps each object store of a session ([`crate::formats::ObjectStores`]:
//!   the local file system and every store built for an object-store URL) and records in the
//!   session's [`WriteFailures`] the error of every failed `put` and multipart completion, with
//!   the path written;
//! * [`report_write_failures`] wraps, in every physical plan the session makes, the CSV and JSON
//!   sinks in a [`ReportedSink`], which replaces the internal error by the recorded cause of a
//!   write under the sink's output path ("writing 's3://bucket/x.csv' failed: ... NoSuchBucket").
//!
//! Nothing else changes: the sink writes exactly as before, and an error this module cannot
//! explain (no failure recorded under the output path) is returned as DataFusion gave it.
//! Invariant: [`WriteFailures`] holds at most [`WriteFailures::CAPACITY`] entries (the oldest
//! go first), so a session that never reads them stays bounded.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::file_format::csv::CsvSink;
use datafusion::datasource::file_format::json::JsonSink;
use datafusion::datasource::physical_plan::{FileSink, FileSinkConfig};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use parking_lot::Mutex;

/// The text by which DataFusion 55 reports a failed writer shutdown (see the module docs).
const FINALIZE_ERROR: &str = "Error encountered while finalizing writes";

/// The recent failed writes of a session's object stores: the path and the store's error.
/// A session config extension, shared by the session's [`RecordingStore`]s and read by its
/// [`ReportedSink`]s.
#[derive(Debug, Default)]
pub struct WriteFailures {
    recent: Mutex<VecDeque<(Path, String)>>,
}

impl WriteFailures {
    /// Most failures kept; older ones are forgotten first.
    pub const CAPACITY: usize = 64;

    fn record(&self, location: &Path, error: &object_store::Error) {
        let mut recent = self.recent.lock();
        if recent.len() == Self::CAPACITY {
            recent.pop_front();
        }
        recent.push_back((location.clone(), error.to_string()));
        debug_assert!(recent.len() <= Self::CAPACITY);
    }

    /// Removes and returns the newest failure of a write at or under `prefix` (an empty prefix
    /// is the store's root), with its path.
    pub fn take_under(&self, prefix: &Path) -> Option<(Path, String)> {
        let mut recent = self.recent.lock();
        let index = recent
            .iter()
            .rposition(|(location, _)| location.prefix_matches(prefix))?;
        recent.remove(index)
    }
}

/// An object store that records the errors of its failed writes in a [`WriteFailures`] and is
/// otherwise its inner store.
#[derive(Debug)]
pub struct RecordingStore {
    inner: Arc<dyn ObjectStore>,
    failures: Arc<WriteFailures>,
}

impl RecordingStore {
    /// `inner`, recording its failed writes in `failures`.
    pub fn new(inner: Arc<dyn ObjectStore>, failures: Arc<WriteFailures>) -> Self {
        Self { inner, failures }
    }

    fn recorded<T>(
        &self,
        location: &Path,
        result: object_store::Result<T>,
    ) -> object_store::Result<T> {
        if let Err(error) = &result {
            self.failures.record(location, error);
        }
        result
    }
}

impl fmt::Display for RecordingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl ObjectStore for RecordingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await;
        self.recorded(location, result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await;
        let upload = self.recorded(location, upload)?;
        Ok(Box::new(RecordingUpload {
            inner: upload,
            location: location.clone(),
            failures: Arc::clone(&self.failures),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload of a [`RecordingStore`]: records the error of a failed part or
/// completion.
#[derive(Debug)]
struct RecordingUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    failures: Arc<WriteFailures>,
}

#[async_trait]
impl MultipartUpload for RecordingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let location = self.location.clone();
        let failures = Arc::clone(&self.failures);
        Box::pin(async move {
            let result = part.await;
            if let Err(error) = &result {
                failures.record(&location, error);
            }
            result
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await;
        if let Err(error) = &result {
            self.failures.record(&self.location, error);
        }
        result
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

/// `plan` with every CSV and JSON sink wrapped in a [`ReportedSink`].
pub fn report_write_failures(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(exec) = node.downcast_ref::<DataSinkExec>() else {
            return Ok(Transformed::no(node));
        };
        // DataSinkExec lends its sink only by reference: the same sink is built again from
        // its configuration and writer options.
        let sink = exec.sink();
        let (inner, config): (Arc<dyn DataSink>, FileSinkConfig) =
            if let Some(csv) = sink.downcast_ref::<CsvSink>() {
                let config = csv.config().clone();
                let options = csv.writer_options().clone();
                (Arc::new(CsvSink::new(config.clone(), options)), config)
            } else if let Some(json) = sink.downcast_ref::<JsonSink>() {
                let config = json.config().clone();
                let options = json.writer_options().clone();
                (Arc::new(JsonSink::new(config.clone(), options)), config)
            } else {
                return Ok(Transformed::no(node));
            };
        let reported = DataSinkExec::new(
            Arc::clone(exec.input()),
            Arc::new(ReportedSink { inner, config }),
            exec.sort_order().clone(),
        );
        Ok(Transformed::yes(
            Arc::new(reported) as Arc<dyn ExecutionPlan>
        ))
    })
    .map(|transformed| transformed.data)
}

/// A CSV or JSON sink whose "finalizing writes" error is replaced by the recorded cause (see
/// the module docs). Displays, and writes, as its inner sink.
#[derive(Debug)]
pub struct ReportedSink {
    inner: Arc<dyn DataSink>,
    config: FileSinkConfig,
}

impl ReportedSink {
    /// The recorded cause of a failed write under this sink's output paths, as an error naming
    /// the output; `None` if there is none.
    fn cause(&self, context: &TaskContext) -> Option<DataFusionError> {
        let failures = context.session_config().get_extension::<WriteFailures>()?;
        self.config.table_paths.iter().find_map(|url| {
            let (path, error) = failures.take_under(url.prefix())?;
            Some(DataFusionError::Execution(format!(
                "writing '{}' failed: could not store '{path}': {error}",
                self.config.original_url
            )))
        })
    }
}

impl DisplayAs for ReportedSink {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_as(t, f)
    }
}

#[async_trait]
impl DataSink for ReportedSink {
    fn metrics(&self) -> Option<MetricsSet> {
        self.inner.metrics()
    }

    fn schema(&self) -> &arrow::datatypes::SchemaRef {
        self.inner.schema()
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        match self.inner.write_all(data, context).await {
            Err(error) if error.to_string().contains(FINALIZE_ERROR) => {
                Err(self.cause(context).unwrap_or(error))
            }
            result => result,
        }
    }
}
