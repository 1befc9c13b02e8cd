//! `mini worker`: serve a Remote Execution API server's Bots service as a
//! build worker, building in this store (`--store`) with the sandbox of
//! local builds (`mini-remote`'s worker).

use std::path::Path;

use clap::Args;
use mini_build::BuildOptions;
use mini_remote::endpoint::Endpoint;
use mini_remote::worker::{self, WorkerOptions};
use mini_store::store::Store;

use crate::{failure, Outcome};

#[derive(Args)]
pub struct WorkerArgs {
    /// The server: grpc://HOST:PORT (an instance may follow, as /INSTANCE).
    #[arg(long, value_name = "URL")]
    server: String,
    /// The server's instance to take work from (default: the URL's, or the
    /// default instance).
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// Build this many derivations at once, each in a bot session of its own.
    #[arg(short = 'j', long, value_name = "N", default_value_t = 1)]
    jobs: usize,
    /// Kill a build that runs longer than this, whatever its Action asks
    /// (an Action's own timeout applies when shorter).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Kill a build that prints nothing for this long.
    #[arg(long, value_name = "SECS")]
    max_silent_time: Option<u64>,
}

pub fn worker(store_root: &Path, args: WorkerArgs) -> Outcome {
    let mut endpoint = Endpoint::parse(&args.server)?;
    if let Some(instance) = args.instance {
        if !endpoint.instance.is_empty() && endpoint.instance != instance {
            return Err(failure(format!(
                "--instance {instance} contradicts the instance '{}' of --server {}",
                endpoint.instance, args.server
            )));
        }
        endpoint = endpoint.with_instance(&instance)?;
    }
    // Clients' inputs are imported into the worker's store: never the
    // user's own.
    if store_root == Store::default_root() {
        return Err(failure(
            "mini worker needs a store of its own: give one with --store DIR (mini --store DIR worker …)",
        ));
    }
    let store = Store::open(store_root)?;
    let sessions = args.jobs.max(1);
    let mut build = BuildOptions::default();
    build.cores = (build.cores / sessions).max(1);
    build.timeout = args.timeout.map(std::time::Duration::from_secs);
    build.max_silent_time = args.max_silent_time.map(std::time::Duration::from_secs);
    worker::run(store, WorkerOptions { endpoint, sessions, build })?;
    Ok(std::process::ExitCode::SUCCESS)
}
