//! Connections to workers: the [`ChannelResolver`] the coordinator session and the workers
//! use to reach a worker.
//!
//! It replaces datafusion-distributed's default resolver for two reasons:
//!
//! - **A lost worker is named.** A worker that dies while its task streams rows (killed,
//!   crashed, its machine gone) surfaces in the coordinator as a bare transport error
//!   ("h2 protocol error: error reading a body from connection"). Every error of a call to a
//!   worker or of a stream it returns that is a transport failure (a `tonic::Status` that is
//!   not an encoded DataFusion error of the worker's own execution) is wrapped in a context
//!   naming the worker's URL and saying the connection was lost. Errors of the query itself
//!   raised on the worker (decoded back into the original `DataFusionError`) are left as a
//!   local query would raise them.
//! - **A worker that stops answering cannot hang the query.** The channel sends HTTP/2
//!   keepalive pings every [`KEEPALIVE_INTERVAL`] while a call is open and closes the
//!   connection when one is not answered within [`KEEPALIVE_TIMEOUT`] (a frozen process, a
//!   machine that lost power or network sends no reset, so without them a stream would wait
//!   forever); connecting gives up after [`CONNECT_TIMEOUT`]. The query then fails with the
//!   error above. A busy worker still answers pings: they are handled by its connection task,
//!   not by the query's operators.
//!
//! - **Workers can require a shared secret.** With [`WORKER_TOKEN_ENV`] set (in the
//!   coordinator's and every worker's environment), every call to a worker carries it as
//!   `authorization: Bearer <token>`, and a worker started with it ([`super::serve_worker`])
//!   refuses calls without it (`Unauthenticated`). `strata worker` refuses to listen beyond
//!   loopback without it.
//!
//! Channels are connected once per worker URL and reused, as the default resolver does: one
//! cache per coordinator `RuntimeEnv` (so per session; a cache whose `RuntimeEnv` is gone is
//! dropped) and one per worker process. A failed connection is not cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion_distributed::grpc::{BoxCloneSyncChannel, create_worker_client};
use datafusion_distributed::{
    ChannelResolver, CoordinatorToWorkerMsg, ExecuteTaskRequest, GetWorkerInfoRequest,
    GetWorkerInfoResponse, SetPlanRequest, WorkerChannel, WorkerToCoordinatorMsg,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use tonic::codegen::http::{HeaderMap, HeaderValue};
use tower::ServiceExt as _;
use url::Url;

/// Time between HTTP/2 keepalive pings on a connection with an open call.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection (and its calls) fail.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long connecting to a worker may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable holding the shared secret of a deployment's workers (see the
/// module docs).
pub const WORKER_TOKEN_ENV: &str = "STRATA_WORKER_TOKEN";

/// The worker token of this process's environment, if one is set (empty counts as unset).
pub fn worker_token() -> Option<String> {
    std::env::var(WORKER_TOKEN_ENV)
        .ok()
        .filter(|token| !token.is_empty())
}

/// Strata's [`ChannelResolver`] (see the module docs). Clones share their channels.
#[derive(Clone)]
pub struct StrataChannelResolver {
    channels: Arc<Mutex<HashMap<Url, BoxCloneSyncChannel>>>,
    /// `Bearer <token>` sent on every call, from [`WORKER_TOKEN_ENV`].
    authorization: Option<HeaderValue>,
}

impl Default for StrataChannelResolver {
    fn default() -> Self {
        StrataChannelResolver {
            channels: Arc::default(),
            authorization: worker_token()
                .and_then(|token| HeaderValue::from_str(&format!("Bearer {token}")).ok())
                .map(|mut value| {
                    value.set_sensitive(true);
                    value
                }),
        }
    }
}

impl std::fmt::Debug for StrataChannelResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let workers: Vec<String> = self
            .channels
            .lock()
            .map(|c| c.keys().map(Url::to_string).collect())
            .unwrap_or_default();
        f.debug_struct("StrataChannelResolver")
            .field("workers", &workers)
            .finish()
    }
}

impl StrataChannelResolver {
    /// The resolver of a coordinator session with `runtime`: one per live `RuntimeEnv`.
    pub fn for_runtime(runtime: &Arc<RuntimeEnv>) -> StrataChannelResolver {
        type Registry = Mutex<Vec<(Weak<RuntimeEnv>, StrataChannelResolver)>>;
        static RESOLVERS: OnceLock<Registry> = OnceLock::new();
        let mut resolvers = RESOLVERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        resolvers.retain(|(env, _)| env.strong_count() > 0);
        if let Some((_, resolver)) = resolvers
            .iter()
            .find(|(env, _)| std::ptr::eq(env.as_ptr(), Arc::as_ptr(runtime)))
        {
            return resolver.clone();
        }
        let resolver = StrataChannelResolver::default();
        resolvers.push((Arc::downgrade(runtime), resolver.clone()));
        resolver
    }

    /// The channel to `url`, connected on first use.
    async fn channel(&self, url: &Url) -> Result<BoxCloneSyncChannel> {
        if let Some(channel) = self.cached(url) {
            return Ok(channel);
        }
        let endpoint = tonic::transport::Channel::from_shared(url.to_string())
            .map_err(|e| DataFusionError::Configuration(format!("bad worker URL '{url}': {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(false)
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(|e| {
            DataFusionError::Execution(format!(
                "could not connect to worker {url}: {}",
                error_chain(e.to_string(), std::error::Error::source(&e))
            ))
        })?;
        let channel = match self.authorization.clone() {
            Some(value) => BoxCloneSyncChannel::new(channel.map_request(
                move |mut request: tonic::codegen::http::Request<tonic::body::Body>| {
                    request
                        .headers_mut()
                        .insert(tonic::codegen::http::header::AUTHORIZATION, value.clone());
                    request
                },
            )),
            None => BoxCloneSyncChannel::new(channel),
        };
        // Two calls racing to connect both succeed; the later one's channel is kept.
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(url.clone(), channel.clone());
        Ok(channel)
    }

    fn cached(&self, url: &Url) -> Option<BoxCloneSyncChannel> {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(url)
            .cloned()
    }
}

#[async_trait]
impl ChannelResolver for StrataChannelResolver {
    async fn get_worker_client_for_url(&self, url: &Url) -> Result<Box<dyn WorkerChannel>> {
        let channel = self.channel(url).await?;
        Ok(Box::new(NamedWorker {
            url: url.clone(),
            inner: create_worker_client(channel),
        }))
    }
}

/// An error's message and those of its sources, on one line.
fn error_chain(message: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut text = message;
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// A worker client whose transport errors name the worker (see the module docs).
struct NamedWorker {
    url: Url,
    inner: Box<dyn WorkerChannel>,
}

/// `error` with the worker named when it is a transport failure of the call to `url`.
fn name_worker(url: &Url, error: DataFusionError) -> DataFusionError {
    let DataFusionError::External(inner) = &error else {
        return error;
    };
    let Some(status) = inner.downcast_ref::<tonic::Status>() else {
        return error;
    };
    let detail = error_chain(
        status.message().to_string(),
        std::error::Error::source(status),
    );
    DataFusionError::Execution(format!(
        "lost the connection to worker {url} (the worker stopped, or its machine or the \
         network failed; the query's tasks are not retried): {detail}"
    ))
}

fn name_stream<T: Send + 'static>(
    url: &Url,
    stream: BoxStream<'static, Result<T>>,
) -> BoxStream<'static, Result<T>> {
    let url = url.clone();
    stream
        .map(move |item| item.map_err(|e| name_worker(&url, e)))
        .boxed()
}

#[async_trait]
impl WorkerChannel for NamedWorker {
    async fn coordinator_channel(
        &mut self,
        headers: HeaderMap,
        set_plan_request: SetPlanRequest,
        c2w_stream: BoxStream<'static, CoordinatorToWorkerMsg>,
        metrics: ExecutionPlanMetricsSet,
        task_ctx: &Arc<TaskContext>,
    ) -> Result<BoxStream<'static, Result<WorkerToCoordinatorMsg>>> {
        let stream = self
            .inner
            .coordinator_channel(headers, set_plan_request, c2w_stream, metrics, task_ctx)
            .await
            .map_err(|e| name_worker(&self.url, e))?;
        Ok(name_stream(&self.url, stream))
    }

    async fn execute_task(
        &mut self,
        headers: HeaderMap,
        request: ExecuteTaskRequest,
        metrics: ExecutionPlanMetricsSet,
        task_ctx: &Arc<TaskContext>,
    ) -> Result<Vec<BoxStream<'static, Result<RecordBatch>>>> {
        let streams = self
            .inner
            .execute_task(headers, request, metrics, task_ctx)
            .await
            .map_err(|e| name_worker(&self.url, e))?;
        Ok(streams
            .into_iter()
            .map(|s| name_stream(&self.url, s))
            .collect())
    }

    async fn get_worker_info(
        &mut self,
        request: GetWorkerInfoRequest,
    ) -> Result<GetWorkerInfoResponse> {
        self.inner
            .get_worker_info(request)
            .await
            .map_err(|e| name_worker(&self.url, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_name_the_worker_and_query_errors_stay_as_they_are() {
        let url = Url::parse("http://127.0.0.1:7000").unwrap();
        let lost = name_worker(
            &url,
            DataFusionError::External(Box::new(tonic::Status::unknown(
                "h2 protocol error: error reading a body from connection",
            ))),
        )
        .to_string();
        assert!(
            lost.contains("lost the connection to worker http://127.0.0.1:7000/")
                && lost.contains("error reading a body"),
            "{lost}"
        );
        let query = name_worker(&url, DataFusionError::Execution("Divide by zero".into()));
        assert_eq!(query.to_string(), "Execution error: Divide by zero");
    }

    #[tokio::test]
    async fn a_worker_that_cannot_be_reached_is_named() {
        // A port nothing listens on any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let resolver = StrataChannelResolver::default();
        let error = match resolver.get_worker_client_for_url(&url).await {
            Ok(_) => panic!("connected to a closed port"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains(&format!("could not connect to worker {url}")),
            "{error}"
        );
        assert!(
            resolver.cached(&url).is_none(),
            "a failed connection is not cached"
        );
    }
}
