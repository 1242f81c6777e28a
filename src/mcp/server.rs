//! The rmcp server: tool routing, resources, subscriptions. Each tool runs its [`super::tools`]
//! or [`super::queue`] function on a blocking thread with a freshly opened [`Project`].

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, Implementation, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig, SubscribeRequestParams,
    UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData as McpError, Json, RoleServer, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::queue::NewTask;
use super::resources::Watcher;
use super::tools::{self, ToolError};
use crate::repo::Project;

/// A tool's structured result: always a JSON object.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Out(pub Value);

impl JsonSchema for Out {
    fn schema_name() -> Cow<'static, str> {
        "Result".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "object" })
    }
}

type ToolResult = std::result::Result<Json<Out>, CallToolResult>;

#[derive(Clone)]
pub struct HybridServer {
    root: Arc<Projects>,
    tool_router: ToolRouter<Self>,
    watcher: Arc<Watcher>,
}

type Stamp = Option<(u64, std::time::SystemTime)>;

/// Opened projects kept between calls (opening one is most of a small call's cost). A project
/// is reused only while `hybrid.toml` is unchanged (size and modification time), so a call
/// always sees the configuration as it is on disk; refs and objects are read fresh anyway.
pub struct Projects {
    root: PathBuf,
    idle: std::sync::Mutex<Vec<(Project, Stamp)>>,
}

impl Projects {
    fn stamp(&self) -> Stamp {
        let m = std::fs::metadata(self.root.join(crate::config::FILE_NAME)).ok()?;
        Some((m.len(), m.modified().ok()?))
    }

    fn take(&self) -> Result<(Project, Stamp)> {
        let now = self.stamp();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((p, stamp)) = idle.pop() {
            if stamp == now {
                return Ok((p, stamp));
            }
        }
        drop(idle);
        Ok((Project::open(&self.root)?, now))
    }

    fn give(&self, p: Project, stamp: Stamp) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 4 {
            idle.push((p, stamp));
        }
    }
}

/// Runs `f` on a blocking thread with a freshly opened project; maps errors to tool errors.
async fn call<F>(projects: Arc<Projects>, f: F) -> ToolResult
where
    F: FnOnce(&Project) -> std::result::Result<Value, Box<ToolError>> + Send + 'static,
{
    run_blocking(projects, false, f).await
}

/// [`call`] for the read-only tools polled often (`status`, `task_log`, `task_diff`): reuses
/// an opened project.
async fn call_read<F>(projects: Arc<Projects>, f: F) -> ToolResult
where
    F: FnOnce(&Project) -> std::result::Result<Value, Box<ToolError>> + Send + 'static,
{
    run_blocking(projects, true, f).await
}

async fn run_blocking<F>(projects: Arc<Projects>, reuse: bool, f: F) -> ToolResult
where
    F: FnOnce(&Project) -> std::result::Result<Value, Box<ToolError>> + Send + 'static,
{
    let joined = tokio::task::spawn_blocking(move || {
        if !reuse {
            let project = Project::open(&projects.root).map_err(|e| ToolError::boxed(&e))?;
            return f(&project);
        }
        let (project, stamp) = projects.take().map_err(|e| ToolError::boxed(&e))?;
        let result = f(&project);
        projects.give(project, stamp);
        result
    })
    .await;
    let result =
        joined.unwrap_or_else(|e| Err(Box::new(ToolError::with_code(format!("internal error: {e}"), 1, None))));
    match result {
        Ok(v) => Ok(Json(Out(v))),
        Err(t) => Err(CallToolResult::structured_error(serde_json::to_value(&t).unwrap_or_default())),
    }
}

fn plain<T>(r: Result<T>) -> std::result::Result<T, Box<ToolError>> {
    r.map_err(|e| ToolError::boxed(&e))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DispatchArgs {
    /// The tasks to add; validated together with the tasks dispatched before, exactly as a
    /// `[[task]]` plan file.
    pub tasks: Vec<NewTask>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RetryArgs {
    pub task: String,
    /// Attempt number (default 1).
    pub attempt: Option<u32>,
    /// Extra instructions for the agent, added to the resume preamble of the new run.
    pub instructions: Option<String>,
}

#[tool_router]
impl HybridServer {
    pub fn new(root: PathBuf, common_dir: PathBuf) -> HybridServer {
        HybridServer {
            watcher: Arc::new(Watcher::new(common_dir)),
            root: Arc::new(Projects { root, idle: std::sync::Mutex::new(Vec::new()) }),
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Add tasks and run them with agents in the background (a detached dispatcher; a running \
        one adds them to the tasks it runs). Returns at once with the task ids and their states. Validated exactly \
        as a plan file: unique ids, existing dependencies, no cycles, runnable agents.")]
    async fn dispatch(&self, Parameters(a): Parameters<DispatchArgs>) -> ToolResult {
        call(self.root.clone(), move |p| plain(super::queue::dispatch(p, a.tasks))).await
    }

    #[tool(description = "Every task (or one): state, attempt, runs, elapsed seconds, last progress line, blocked \
        reason, last commit, merge SHA, conflicts, failure; tasks queued by dispatch show as `queued`; the running \
        dispatcher if any.")]
    async fn status(&self, Parameters(a): Parameters<tools::StatusArgs>) -> ToolResult {
        call_read(self.root.clone(), move |p| plain(tools::status(p, a))).await
    }

    #[tool(description = "A byte range of a task run's progress.md, blocked.md, stdout.log, stderr.log or verify.log \
        (default: the tail of progress.md). Pass the returned `next_offset` as `offset` to read only what is new.")]
    async fn task_log(&self, Parameters(a): Parameters<tools::TaskLogArgs>) -> ToolResult {
        call_read(self.root.clone(), move |p| plain(tools::task_log(p, a))).await
    }

    #[tool(description = "What landing the task now would change on the target: files with insertions/deletions \
        and the patch (size-capped), or the conflicting paths. Changes nothing.")]
    async fn task_diff(&self, Parameters(a): Parameters<tools::TaskDiffArgs>) -> ToolResult {
        call_read(self.root.clone(), move |p| plain(tools::task_diff(p, a))).await
    }

    #[tool(description = "Land one task, or several as a train, as squash commits on the target (the same call as \
        `git hybrid merge`: catch-up, compare-and-swap, checked-out target moved safely).")]
    async fn land(&self, Parameters(a): Parameters<tools::LandArgs>) -> ToolResult {
        call(self.root.clone(), move |p| tools::land(p, a)).await
    }

    #[tool(description = "Merge the target branch into a task branch (conflicts are reported by path; nothing \
        changes then).")]
    async fn sync(&self, Parameters(a): Parameters<tools::TaskArgs>) -> ToolResult {
        call(self.root.clone(), move |p| plain(tools::sync(p, a))).await
    }

    #[tool(description = "Run a failed (or conflicted) task dispatched through MCP again, in its worktree, with \
        your extra instructions added to the agent's resume preamble.")]
    async fn retry(&self, Parameters(a): Parameters<RetryArgs>) -> ToolResult {
        call(self.root.clone(), move |p| {
            plain(super::queue::retry(p, &a.task, a.attempt.unwrap_or(1), a.instructions.as_deref()))
        })
        .await
    }

    #[tool(description = "Stop a running task's agent (its worktree and commits are kept; the task becomes \
        failed and can be retried), or take a task that has not started out of the queue.")]
    async fn cancel(&self, Parameters(a): Parameters<tools::TaskArgs>) -> ToolResult {
        call(self.root.clone(), move |p| plain(super::queue::cancel(p, &a.task, a.attempt.unwrap_or(1)))).await
    }

    #[tool(description = "Remove task worktrees and branches that hold no unlanded work (never forced).")]
    async fn clean(&self, Parameters(a): Parameters<tools::CleanArgs>) -> ToolResult {
        call(self.root.clone(), move |p| tools::clean(p, a)).await
    }

    #[tool(description = "Diff-similarity labels (Jaccard, difflib ratio) of landed tasks' attempts against what \
        landed.")]
    async fn labels(&self, Parameters(a): Parameters<tools::LabelsArgs>) -> ToolResult {
        call(self.root.clone(), move |p| plain(tools::labels(p, a))).await
    }

    #[tool(description = "Check the squash landings on the target (trailers, trees, claims), like the CI job.")]
    async fn verify(&self, Parameters(a): Parameters<tools::VerifyArgs>) -> ToolResult {
        call(self.root.clone(), move |p| tools::verify(p, a)).await
    }
}

#[allow(deprecated)] // resources/subscribe is the subscription method of the protocol versions clients speak today
#[tool_handler(router = self.tool_router)]
impl ServerHandler for HybridServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder().enable_tools().enable_resources().enable_resources_subscribe().build(),
        )
        .with_server_info(Implementation::new("git-hybrid", crate::VERSION))
        .with_instructions(super::INSTRUCTIONS)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListResourcesResult, McpError> {
        let root = self.root.root.clone();
        let list = tokio::task::spawn_blocking(move || super::resources::list(&root))
            .await
            .map_err(|e| McpError::internal_error(e.to_string(), None))?
            .map_err(|e| McpError::internal_error(format!("{e:#}"), None))?;
        Ok(ListResourcesResult::with_all_items(list))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(super::resources::templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ReadResourceResponse, McpError> {
        let root = self.root.root.clone();
        let uri = request.uri.clone();
        let result = tokio::task::spawn_blocking(move || super::resources::read(&root, &uri))
            .await
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        result.map(Into::into)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<(), McpError> {
        super::resources::parse_uri(&request.uri)?;
        self.watcher.subscribe(request.uri, context.peer.clone());
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<(), McpError> {
        self.watcher.unsubscribe(&request.uri);
        Ok(())
    }
}

/// Serves on stdin/stdout until the client disconnects.
pub async fn run(root: PathBuf, common_dir: PathBuf) -> Result<()> {
    let server = HybridServer::new(root, common_dir);
    let service = server.serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}
