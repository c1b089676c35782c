//! File formats beyond DataFusion's defaults: ORC (read), through `datafusion-orc`.
//!
//! [`register`] adds to a session:
//!
//! * the `orc` file format ([`OrcFormatFactory`], a `FileFormatFactory` around
//!   `datafusion_orc::OrcFormat`, which ships none), so that
//!   `CREATE EXTERNAL TABLE t STORED AS ORC LOCATION 'file.orc' | 'dir/'` makes a listing
//!   table over ORC files (schema read from the files' footers, merged over every file);
//! * the `ORC` table factory (DataFusion's default listing-table factory);
//! * the table function `read_orc('path')` over a local ORC file or a directory of `.orc`
//!   files, for queries without a `CREATE EXTERNAL TABLE` first.
//!
//! [`ObjectStores`] is the session's object-store registry: besides local files, it answers an
//! object-store URL (`CREATE EXTERNAL TABLE ... LOCATION 's3://...'`, `COPY ... TO
//! 'gs://...'`, in every format; `s3://`, `gs://`, `az://` and the other schemes
//! [`strata_engine::storage::StoreUrl`] knows) with a store for the bucket, built on first use
//! from the environment as datafusion-cli does, by the engine's own code for database URLs
//! ([`StoreUrl::build_store`]: `AmazonS3Builder::from_env`, `GoogleCloudStorageBuilder::from_env`,
//! `MicrosoftAzureBuilder::from_env`, which read `AWS_*`, `GOOGLE_*` and `AZURE_*`).
//!
//! Avro is read by DataFusion itself (`STORED AS AVRO`; this crate enables its `avro`
//! feature). Neither format can be written: `COPY ... STORED AS ORC` fails with DataFusion's
//! "not implemented" error. Rust callers can also use `datafusion_orc`'s
//! [`SessionContextOrcExt`] (`read_orc`, `register_orc`), re-exported here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::GetExt;
use datafusion::datasource::file_format::{FileFormat, FileFormatFactory};
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider::DefaultTableFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{
    DefaultObjectStoreRegistry, ObjectStoreRegistry, ObjectStoreUrl,
};
use datafusion::prelude::SessionContext;
pub use datafusion_orc::{OrcFormat, OrcReadOptions, SessionContextOrcExt};
use object_store::ObjectStore;
use object_store::client::ReqwestConnector;
use object_store::local::LocalFileSystem;
use parking_lot::Mutex;
use strata_engine::storage::StoreUrl;
use url::Url;

use crate::functions::string_arg;
use crate::write_errors::{RecordingStore, WriteFailures};

/// The file extension (and `STORED AS` name, case-insensitive) of ORC files.
pub const ORC_EXTENSION: &str = "orc";

/// Registers the extra file formats, their `CREATE EXTERNAL TABLE` factories and the
/// `read_orc` table function in `ctx`.
pub fn register(ctx: &SessionContext) -> Result<()> {
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        state.register_file_format(Arc::new(OrcFormatFactory), true)?;
        state
            .table_factories_mut()
            .insert("ORC".to_string(), Arc::new(DefaultTableFactory::new()));
    }
    ctx.register_udtf("read_orc", Arc::new(ReadOrcFunction));
    Ok(())
}

/// The object-store registry of a session: DataFusion's default one (local files, stores
/// registered by hand), plus a store per bucket for object-store URLs ([`StoreUrl`]: `s3://`,
/// `gs://`, `az://`, ...), built from the environment the first time a URL of the bucket is
/// used. The local file system and the built stores record their failed writes in the
/// session's [`WriteFailures`] ([`crate::write_errors`]).
#[derive(Debug)]
pub struct ObjectStores {
    inner: DefaultObjectStoreRegistry,
    /// Stores built for object-store URLs, by [`StoreUrl::root`] (which, unlike DataFusion's
    /// registry key, keeps the container of `abfs://container@account.host` URLs).
    built: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    failures: Arc<WriteFailures>,
}

impl ObjectStores {
    /// A registry with only the local file system registered, whose stores record their
    /// failed writes in `failures`.
    pub fn new(failures: Arc<WriteFailures>) -> Self {
        // DataFusion's default registry holds the local file system under `file://`; this one
        // holds the same store, recording.
        let inner = DefaultObjectStoreRegistry::new();
        let local = ObjectStoreUrl::local_filesystem();
        let store = Arc::new(LocalFileSystem::new());
        inner.register_store(
            local.as_ref(),
            Arc::new(RecordingStore::new(store, Arc::clone(&failures))),
        );
        Self {
            inner,
            built: Mutex::default(),
            failures,
        }
    }
}

impl ObjectStoreRegistry for ObjectStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.inner.get_store(url) {
            return Ok(store);
        }
        if !strata_engine::storage::is_url(Path::new(url.as_str())) {
            return self.inner.get_store(url);
        }
        let parsed =
            StoreUrl::parse(url.as_str()).map_err(|e| DataFusionError::Plan(e.to_string()))?;
        let mut built = self.built.lock();
        if let Some(store) = built.get(parsed.root()) {
            return Ok(Arc::clone(store));
        }
        let store = parsed
            .build_store(ReqwestConnector::default())
            .map_err(|e| DataFusionError::Plan(e.to_string()))?;
        let store: Arc<dyn ObjectStore> =
            Arc::new(RecordingStore::new(store, Arc::clone(&self.failures)));
        built.insert(parsed.root().to_string(), Arc::clone(&store));
        Ok(store)
    }
}

/// A `FileFormatFactory` for ORC. ORC has no format options: a `format.*` option given in
/// `CREATE EXTERNAL TABLE ... OPTIONS (...)` is rejected by name.
#[derive(Debug, Default)]
pub struct OrcFormatFactory;

impl GetExt for OrcFormatFactory {
    fn get_ext(&self) -> String {
        ORC_EXTENSION.to_string()
    }
}

impl FileFormatFactory for OrcFormatFactory {
    fn create(
        &self,
        _state: &dyn Session,
        format_options: &HashMap<String, String>,
    ) -> Result<Arc<dyn FileFormat>> {
        if let Some(key) = format_options.keys().find(|k| k.starts_with("format.")) {
            return Err(DataFusionError::Configuration(format!(
                "ORC has no format options, got '{key}'"
            )));
        }
        Ok(Arc::new(OrcFormat))
    }

    fn default(&self) -> Arc<dyn FileFormat> {
        Arc::new(OrcFormat)
    }
}

/// `read_orc('path')`: the ORC file at a local `path`, or every `.orc` file in the directory
/// `path`, as a table. The schema is read from the file footers when the query is planned.
#[derive(Debug, Default)]
pub struct ReadOrcFunction;

impl TableFunctionImpl for ReadOrcFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "read_orc";
        if args.exprs().len() != 1 {
            return Err(DataFusionError::Plan(format!(
                "{NAME} takes 1 argument (a path), got {}",
                args.exprs().len()
            )));
        }
        let path = PathBuf::from(string_arg(NAME, args.exprs(), 0)?);
        let files = orc_files(&path)?;
        let schema = infer_schema(&files)?;
        let location = std::path::absolute(&path)
            .map_err(|e| DataFusionError::Plan(format!("{NAME}: {}: {e}", path.display())))?;
        let mut url = location.to_string_lossy().to_string();
        if path.is_dir() && !url.ends_with('/') {
            url.push('/');
        }
        let options = ListingOptions::new(Arc::new(OrcFormat)).with_file_extension(ORC_EXTENSION);
        let config = ListingTableConfig::new(ListingTableUrl::parse(&url)?)
            .with_listing_options(options)
            .with_schema(schema);
        Ok(Arc::new(ListingTable::try_new(config)?))
    }
}

/// The ORC files `path` names: itself, or the `.orc` files of the directory, sorted.
fn orc_files(path: &Path) -> Result<Vec<PathBuf>> {
    let metadata = std::fs::metadata(path).map_err(|e| {
        DataFusionError::Plan(format!("read_orc: cannot open '{}': {e}", path.display()))
    })?;
    if metadata.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| {
        DataFusionError::Plan(format!("read_orc: cannot list '{}': {e}", path.display()))
    })? {
        let entry = entry.map_err(|e| DataFusionError::Plan(format!("read_orc: {e}")))?;
        let file = entry.path();
        if file.is_file() && file.extension().is_some_and(|e| e == ORC_EXTENSION) {
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(DataFusionError::Plan(format!(
            "read_orc: no .orc files in '{}'",
            path.display()
        )));
    }
    files.sort();
    Ok(files)
}

/// The merged Arrow schema of `files` (the way `OrcFormat::infer_schema` merges).
fn infer_schema(files: &[PathBuf]) -> Result<SchemaRef> {
    let mut schemas = Vec::with_capacity(files.len());
    for file in files {
        let mut reader = std::fs::File::open(file).map_err(|e| {
            DataFusionError::Plan(format!("read_orc: cannot open '{}': {e}", file.display()))
        })?;
        let metadata = orc_rust::reader::metadata::read_metadata(&mut reader).map_err(|e| {
            DataFusionError::Plan(format!(
                "read_orc: '{}' is not a readable ORC file: {e}",
                file.display()
            ))
        })?;
        schemas.push(
            metadata
                .root_data_type()
                .create_arrow_schema(&HashMap::default()),
        );
    }
    Ok(Arc::new(Schema::try_merge(schemas)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn orc_is_registered_as_a_format() {
        let ctx = SessionContext::new();
        register(&ctx).unwrap();
        let state = ctx.state();
        let factory = state.get_file_format_factory("ORC").unwrap();
        assert_eq!(factory.get_ext(), "orc");
        assert!(state.table_factories().contains_key("ORC"));
        let e = ctx
            .sql("SELECT * FROM read_orc('/definitely/not/here.orc')")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("read_orc: cannot open"), "{e}");
    }
}
