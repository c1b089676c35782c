//! Queries over Strata tables on datafusion-distributed workers (cargo feature
//! `distributed`, on by default).
//!
//! The coordinator is the ordinary [`crate::StrataSession`]: with `strata.workers` set (`SET
//! strata.workers = 'host1:port,host2:port'`, [`crate::StrataSession::set_workers`], or
//! `strata --workers ...`), each query is planned by [`StrataDistributedPlanner`]. It plans
//! the query locally first; when every Strata scan of the plan can be shipped and every other
//! node can be serialized, datafusion-distributed's planner cuts the plan into stages whose
//! tasks run on the workers; otherwise the query runs in this process, as without workers
//! (DML, table functions, point lookups, a scan the engine must merge).
//!
//! **What a shipped scan carries** ([`exec`], [`codec`]): a pinned snapshot, fixed when the
//! query is planned: the SST objects the scan reads (paths on the database's storage, size and
//! crc32c from the manifest), each file's deleted rows (its deletion vector plus the base rows
//! the memtable overlay hides) as a Roaring bitmap, the row range of each file every partition
//! reads (made a Parquet row selection on the worker), the read sequence, and the **overlay
//! itself**: the memtables' live rows at the read sequence travel in the plan of task 0.
//! Writes not yet flushed are thus read by distributed queries exactly as by local ones (the
//! overlay is bounded by the memtable budget, small next to the table); `EXPLAIN` shows
//! `StrataShippedScanExec: ... overlay=shipped (rows=N)` per task. A scan whose overlay the
//! engine could not resolve against the base files (keys too large for the key cache: the
//! anti-join) is not shipped; the query runs locally.
//!
//! **The task split** ([`split`]): the base files, in key order, are cut into as many groups
//! of whole files as there are tasks, by live rows (disjoint files make disjoint key ranges);
//! inside a task the live rows are cut into the scan's partitions. Every live base row is read
//! by exactly one task, and the overlay's rows are output once, by task 0. When the local scan
//! declares the key order (disjoint files, no overlay row), every partition of every task is in
//! key order too (contiguous files, contiguous slices), so a sort-preserving merge planned on
//! that order stays right.
//!
//! **Workers** ([`serve_worker`], `strata worker --listen ADDR [DATABASE]`): a
//! datafusion-distributed `Worker` whose sessions decode Strata scans with [`StrataCodec`].
//! Executing a scan opens the database's storage (a directory every worker sees, or an `s3://`
//! prefix) without a lock and without reading the manifest. With a worker token
//! ([`channel::WORKER_TOKEN_ENV`]) in its environment, a worker refuses calls that do not carry
//! it.
//!
//! **Connections** ([`channel`]): the coordinator and the workers reach workers through
//! [`StrataChannelResolver`]: a lost worker (killed, frozen, its machine or network gone) fails
//! the query in bounded time (HTTP/2 keepalive) with an error naming it, never a hang.
//!
//! **Leases**: before the plan leaves the coordinator, a lease object names the SSTs the
//! query reads ([`strata_engine::lease`]); compaction's deletions skip them until the plan is
//! dropped. The lease's time-to-live is the session's `strata.lease_ttl_secs` (default an
//! hour); the coordinator renews it every third of that while the plan lives, however long
//! the query (or a client reading its results) takes, and a coordinator that dies leaves a
//! lease that expires one time-to-live after its last renewal.

pub mod channel;
pub mod codec;
pub mod exec;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{LogicalPlan, PlanType, StringifiedPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::explain::ExplainExec;
use datafusion_distributed::{
    DesiredTaskCountEvent, DesiredTaskCountEventResponse, DistributedExec, DistributedExt,
    DistributedLeafExec, ScaleUpLeafNodeEvent, ScaleUpLeafNodeEventResponse,
    SessionStateBuilderExt, Worker, WorkerQueryContext, WorkerResolver, display_plan_ascii,
};
use datafusion_proto::physical_plan::{
    AsExecutionPlan, PhysicalExtensionCodec, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalPlanNode;
use strata_engine::lease::Lease;

pub use channel::StrataChannelResolver;
pub use codec::StrataCodec;
/// datafusion-distributed's own options (buffer budget per worker connection, compression,
/// tasks per stage...): insert one into a coordinator session's config extensions
/// (`SessionContext::state_ref`) to change them; [`statement_state`] keeps it.
pub use datafusion_distributed::DistributedConfig;
pub use exec::{Piece, ShippedFile, ShippedScan, ShippedScanExec};

use crate::catalog::{StrataConfig, lease_ttl, parse_workers};
use crate::provider::{ScanParts, StrataScanExec};
use crate::session::engine_error;

/// True when the session's `strata.workers` names at least one worker.
pub fn workers_configured(state: &dyn Session) -> bool {
    state
        .config()
        .options()
        .extensions
        .get::<StrataConfig>()
        .and_then(|c| c.workers.as_deref())
        .is_some_and(|w| !w.trim().is_empty())
}

/// A fixed list of workers.
#[derive(Debug, Clone)]
pub struct StaticWorkers(Vec<url::Url>);

impl StaticWorkers {
    /// The workers of a `strata.workers` value.
    pub fn parse(value: &str) -> Result<Self> {
        let urls = parse_workers(value)?
            .iter()
            .map(|u| url::Url::parse(u).map_err(|e| DataFusionError::Configuration(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(StaticWorkers(urls))
    }
}

impl WorkerResolver for StaticWorkers {
    fn get_urls(&self) -> Result<Vec<url::Url>> {
        Ok(self.0.clone())
    }
}

/// The state a statement is planned and run with: `state` itself without workers; with
/// `strata.workers` set, `state` with datafusion-distributed's planner, the workers, Strata's
/// codec and task handlers, behind [`StrataDistributedPlanner`].
pub fn statement_state(state: SessionState) -> Result<SessionState> {
    let workers = state
        .config()
        .options()
        .extensions
        .get::<StrataConfig>()
        .and_then(|c| c.workers.clone())
        .filter(|w| !w.trim().is_empty());
    let Some(workers) = workers else {
        return Ok(state);
    };
    let resolver = StaticWorkers::parse(&workers)?;
    let channels = StrataChannelResolver::for_runtime(state.runtime_env());
    let local = Arc::clone(state.query_planner());
    let mut builder = SessionStateBuilder::new_from_existing(state)
        .with_distributed_planner()
        .with_distributed_worker_resolver(resolver)
        .with_distributed_channel_resolver(channels)
        .with_distributed_user_codec(StrataCodec::new())
        .with_distributed_desired_task_count_handler(desired_task_count)
        .with_distributed_scale_up_leaf_node_handler(scale_up_leaf_node);
    let distributed = builder.query_planner().clone().ok_or_else(|| {
        DataFusionError::Internal("datafusion-distributed set no query planner".into())
    })?;
    Ok(builder
        .with_query_planner(Arc::new(StrataDistributedPlanner { local, distributed }))
        .build())
}

/// Plans a query locally, and again with datafusion-distributed's planner when it can run on
/// the workers (see the module docs). `EXPLAIN` of such a query shows the distributed plan.
#[derive(Debug)]
pub struct StrataDistributedPlanner {
    local: Arc<dyn QueryPlanner + Send + Sync>,
    distributed: Arc<dyn QueryPlanner + Send + Sync>,
}

#[async_trait]
impl QueryPlanner for StrataDistributedPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let LogicalPlan::Explain(explain) = logical_plan
            && !explain.verbose
        {
            let inner = Box::pin(self.create_physical_plan(&explain.plan, session)).await?;
            if inner.is::<DistributedExec>() {
                let mut plans: Vec<StringifiedPlan> = explain
                    .stringified_plans
                    .iter()
                    .filter(|p| matches!(p.plan_type, PlanType::FinalLogicalPlan))
                    .cloned()
                    .collect();
                plans.push(StringifiedPlan::new(
                    PlanType::FinalPhysicalPlan,
                    display_plan_ascii(inner.as_ref(), false),
                ));
                return Ok(Arc::new(ExplainExec::new(
                    Arc::clone(explain.schema.inner()),
                    plans,
                    false,
                )));
            }
        }
        let local = self
            .local
            .create_physical_plan(logical_plan, session)
            .await?;
        if !shippable(&local) {
            return Ok(local);
        }
        self.distributed
            .create_physical_plan(logical_plan, session)
            .await
    }
}

/// True when `plan` reads at least one Strata table, every Strata scan in it can be shipped
/// and every other node serializes (DataFusion's own nodes do; Strata's DML and table
/// functions do not, and run where the session is).
pub fn shippable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let (mut scans, mut unshippable) = (0usize, 0usize);
    let _ = plan.apply(|node| {
        if let Some(scan) = node.downcast_ref::<StrataScanExec>() {
            scans += 1;
            if scan.scan_parts().is_none() {
                unshippable += 1;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    scans > 0
        && unshippable == 0
        && PhysicalPlanNode::try_from_physical_plan(Arc::clone(plan), &ProbeCodec).is_ok()
}

/// Serializes a Strata scan as nothing (the real bytes are made per task) and refuses every
/// other node the default codec does not know.
#[derive(Debug)]
struct ProbeCodec;

impl PhysicalExtensionCodec for ProbeCodec {
    fn try_decode(
        &self,
        _buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Internal(
            "the probe codec decodes nothing".into(),
        ))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        _buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if node.is::<StrataScanExec>() {
            Ok(())
        } else {
            Err(DataFusionError::NotImplemented(node.name().to_string()))
        }
    }
}

/// A shipped Strata scan asks for a task per base file (the planner caps it at the number of
/// workers); any other Strata scan cannot be distributed.
fn desired_task_count(
    event: DesiredTaskCountEvent,
) -> Option<Result<DesiredTaskCountEventResponse>> {
    let scan = event.plan.downcast_ref::<StrataScanExec>()?;
    Some(Ok(match scan.scan_parts() {
        Some(parts) => {
            DesiredTaskCountEventResponse::desired(parts.shipped.scan.scan.files.len().max(1))
        }
        None => DesiredTaskCountEventResponse::maximum(1),
    }))
}

/// Replaces a Strata scan by one [`ShippedScanExec`] per task, all holding one lease over the
/// scan's files (renewed while they live, time-to-live `strata.lease_ttl_secs`).
fn scale_up_leaf_node(event: ScaleUpLeafNodeEvent) -> Option<Result<ScaleUpLeafNodeEventResponse>> {
    let scan = event.plan.downcast_ref::<StrataScanExec>()?;
    let plan = (|| {
        let parts = scan.scan_parts().ok_or_else(|| {
            DataFusionError::Plan("this Strata scan cannot run on workers".into())
        })?;
        let storage = exec::storage_for(&parts.shipped.location)?;
        let ttl = lease_ttl(event.session_config.options());
        let lease =
            Lease::acquire(&storage, parts.shipped.scan.objects(), ttl).map_err(engine_error)?;
        let lease = Arc::new(lease);
        let variants = split(&parts, event.task_count.max(1))?
            .into_iter()
            .map(|task| {
                ShippedScanExec::new(task, Some(Arc::clone(&lease)))
                    .map(|e| Arc::new(e) as Arc<dyn ExecutionPlan>)
            })
            .collect::<Result<Vec<_>>>()?;
        let leaf = DistributedLeafExec::try_new(Arc::clone(event.plan), variants)?;
        Ok(ScaleUpLeafNodeEventResponse::new(Arc::new(leaf)))
    })();
    Some(plan)
}

/// Cuts a shipped scan into `tasks` tasks (see the module docs): whole base files in key
/// order, grouped by live rows; each task's live rows cut into the scan's partitions; the
/// overlay's rows in task 0.
pub fn split(parts: &ScanParts, tasks: usize) -> Result<Vec<ShippedScan>> {
    let tasks = tasks.max(1);
    let partitions = parts.partitions.max(1);
    let base = &parts.shipped.scan.scan;
    let total: u64 = base.base_live_rows();
    let mut groups: Vec<Vec<&strata_engine::BaseFile>> = vec![Vec::new(); tasks];
    let mut before = 0u64;
    for file in &base.files {
        let live = file.live_rows();
        let middle = before + live / 2;
        let group = if total == 0 {
            0
        } else {
            ((u128::from(middle) * tasks as u128 / u128::from(total)) as usize).min(tasks - 1)
        };
        groups[group].push(file);
        before += live;
    }
    let overlay = base
        .overlay
        .rows()
        .project(&parts.read_columns)
        .and_then(|rows| rows.concat())
        .map_err(engine_error)?;
    let overlay_rows_total = overlay.as_ref().map_or(0, |r| r.num_rows());
    let mut out = Vec::with_capacity(tasks);
    for (task, files) in groups.into_iter().enumerate() {
        let task_total: u64 = files.iter().map(|f| f.live_rows()).sum();
        let bound =
            |p: usize| -> u64 { (u128::from(task_total) * p as u128 / partitions as u128) as u64 };
        let mut pieces: Vec<Vec<Piece>> = vec![Vec::new(); partitions];
        let mut first_live = 0u64;
        let shipped_files: Vec<ShippedFile> = files
            .iter()
            .map(|f| ShippedFile {
                object: f.meta.object_path(),
                size: f.meta.size_bytes,
                crc32c: f.meta.crc32c,
                rows: f.meta.rows,
                deleted: f.deleted().cloned(),
            })
            .collect();
        for (index, f) in files.into_iter().enumerate() {
            let live = f.live_rows();
            for (p, group) in pieces.iter_mut().enumerate() {
                let (lo, hi) = (
                    first_live.max(bound(p)),
                    (first_live + live).min(bound(p + 1)),
                );
                if lo >= hi {
                    continue;
                }
                let start = crate::direct::position_of_live(f, lo - first_live);
                let end = crate::direct::position_of_live(f, hi - first_live);
                group.push(Piece {
                    file: index,
                    start,
                    end,
                });
            }
            first_live += live;
        }
        debug_assert_eq!(first_live, task_total);
        out.push(ShippedScan {
            location: parts.shipped.location.clone(),
            table_name: parts.table_name.clone(),
            user: Arc::clone(&parts.user),
            read_columns: parts.read_columns.clone(),
            projection_len: parts.projection_len,
            residual: parts.residual.clone(),
            predicate: parts.shipped.predicate.clone(),
            limit: parts.limit,
            batch_rows: parts.batch_rows,
            read_seq: parts.read_seq,
            task,
            tasks,
            files: shipped_files,
            partitions: pieces,
            overlay: if task == 0 { overlay.clone() } else { None },
            overlay_rows_total,
        });
    }
    Ok(out)
}

/// The location workers name a database by: an object-store URL as Strata spells it, or a
/// directory made absolute.
pub fn database_location(database: &str) -> Result<String> {
    let path = std::path::Path::new(database);
    if strata_engine::storage::is_url(path) {
        let storage =
            strata_engine::storage::Storage::for_path(path, None).map_err(engine_error)?;
        Ok(storage.root().display().to_string())
    } else {
        Ok(std::path::absolute(path)
            .map_err(|e| DataFusionError::Execution(format!("{database}: {e}")))?
            .display()
            .to_string())
    }
}

/// A datafusion-distributed worker that runs Strata scans (of `database` only, when given).
pub fn worker(database: Option<&str>) -> Result<Worker> {
    let codec = match database {
        Some(database) => StrataCodec::for_database(database_location(database)?),
        None => StrataCodec::new(),
    };
    // The worker's connections to other workers (stages reading stages), shared by its
    // queries.
    let channels = StrataChannelResolver::default();
    Ok(Worker::from_session_builder(
        move |ctx: WorkerQueryContext| {
            let (codec, channels) = (codec.clone(), channels.clone());
            async move {
                Ok(ctx
                    .builder
                    .with_distributed_user_codec(codec)
                    .with_distributed_channel_resolver(channels)
                    .build())
            }
        },
    ))
}

/// Serves a worker ([`worker`]) on `listener` until `shutdown` completes.
pub async fn serve_worker(
    listener: tokio::net::TcpListener,
    database: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let worker = worker(database)?;
    // With a worker token, every call must carry it (compared in constant time).
    let expected = channel::worker_token().map(|token| format!("Bearer {token}"));
    let check = move |request: tonic::Request<()>| -> std::result::Result<_, tonic::Status> {
        let Some(expected) = &expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, expected.as_bytes()) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated(format!(
                "this Strata worker requires the worker token ({}) on every call",
                channel::WORKER_TOKEN_ENV
            )))
        }
    };
    tonic::transport::Server::builder()
        .add_service(tonic::service::interceptor::InterceptedService::new(
            worker.into_worker_server(),
            check,
        ))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

/// Whether `a` equals `b`, in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}
