//! Dedicated threads that run work inside network namespaces.
//!
//! These threads exist only for this: they enter a namespace, run one job and
//! come back home, so no other code ever runs on a thread that is in a decky's
//! namespace. (tokio's blocking pool is shared, so it must not be used.)

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::NetError;
use crate::netns::Netns;

type Job = Box<dyn FnOnce() + Send>;

/// A handle on the executor's threads; cheap to clone.
#[derive(Clone)]
pub struct NetnsExecutor {
    jobs: Sender<Job>,
}

impl std::fmt::Debug for NetnsExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetnsExecutor")
    }
}

impl NetnsExecutor {
    /// Starts `threads` worker threads. They end when every handle is dropped.
    pub fn start(threads: usize) -> Self {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("netns-{i}"))
                .spawn(move || worker(&queue))
                .expect("spawning a netns worker thread");
        }
        Self { jobs }
    }

    /// Runs `work` inside `ns` (or in the host's namespace for `None`) and
    /// waits for it asynchronously.
    pub async fn run<R, F>(&self, ns: Option<Arc<Netns>>, work: F) -> Result<R, NetError>
    where
        R: Send + 'static,
        F: FnOnce() -> Result<R, NetError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(Box::new(move || {
            let _ = tx.send(in_netns(ns.as_deref(), work));
        }))?;
        rx.await.map_err(|_| gone())?
    }

    /// Runs `work` inside `ns` and blocks until it is done.
    pub fn run_blocking<R, F>(&self, ns: Option<Arc<Netns>>, work: F) -> Result<R, NetError>
    where
        R: Send + 'static,
        F: FnOnce() -> Result<R, NetError> + Send + 'static,
    {
        let (tx, rx) = channel();
        self.submit(Box::new(move || {
            let _ = tx.send(in_netns(ns.as_deref(), work));
        }))?;
        rx.recv().map_err(|_| gone())?
    }

    fn submit(&self, job: Job) -> Result<(), NetError> {
        self.jobs.send(job).map_err(|_| gone())
    }
}

fn in_netns<R>(ns: Option<&Netns>, work: impl FnOnce() -> Result<R, NetError>) -> Result<R, NetError> {
    match ns {
        Some(ns) => {
            let guard = ns.enter()?;
            let result = work();
            guard.leave()?;
            result
        }
        None => work(),
    }
}

fn worker(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let Ok(queue) = queue.lock() else { return };
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        job();
    }
}

fn gone() -> NetError {
    NetError::io("netns executor", std::io::Error::other("worker threads are gone"))
}
