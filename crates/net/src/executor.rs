//! Dedicated threads that run work inside network namespaces.
//!
//! These threads exist only for this: they enter a namespace, run one job and
//! come back home, so no other code ever runs on a thread that is in a decky's
//! namespace. (tokio's blocking pool is shared, so it must not be used.)
//!
//! "Home" is the namespace the executor was started in, held open from the
//! start. After *every* job a worker returns there, whatever the job did (it
//! may have entered another namespace and not come back, or panicked: jobs
//! run under `catch_unwind`). A worker that cannot return home must not run
//! anything else: it exits, and a supervisor thread, which never runs jobs,
//! starts a replacement.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use nix::sched::{CloneFlags, setns};
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

/// What every worker shares: the job queue and the way home.
struct Shared {
    queue: Mutex<Receiver<Job>>,
    /// The namespace the executor was started in.
    home: OwnedFd,
}

/// A worker died; the replacement reports on this sender. Only workers (and
/// these messages in flight) hold senders, so the supervisor ends once every
/// worker has ended normally.
struct Death(Sender<Death>);

/// Tells the supervisor when its worker thread ends other than by the queue
/// closing, also when it unwinds.
struct Sentinel {
    deaths: Option<Sender<Death>>,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(deaths) = self.deaths.take() {
            let _ = deaths.send(Death(deaths.clone()));
        }
    }
}

impl NetnsExecutor {
    /// Starts `threads` worker threads in the calling thread's namespace
    /// (which must be the host's). They end when every handle is dropped.
    pub fn start(threads: usize) -> Self {
        let home: OwnedFd = File::open("/proc/thread-self/ns/net")
            .expect("the calling thread's network namespace can be opened")
            .into();
        let (jobs, queue) = channel::<Job>();
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            home,
        });
        let (deaths_tx, deaths) = channel::<Death>();
        for i in 0..threads.max(1) {
            spawn_worker(&shared, format!("netns-{i}"), deaths_tx.clone());
        }
        drop(deaths_tx);
        let supervisor_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("netns-supervisor".into())
            .spawn(move || supervise(&supervisor_shared, &deaths))
            .expect("spawning the netns supervisor thread");
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

/// Enters `ns` (if any) and runs `work`; a panic becomes an error. The worker
/// returns home afterwards in any case.
fn in_netns<R>(ns: Option<&Netns>, work: impl FnOnce() -> Result<R, NetError>) -> Result<R, NetError> {
    if let Some(ns) = ns {
        setns(ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::io(format!("enter netns {}", ns.name()), e.into()))?;
    }
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
        Err(NetError::io(
            format!(
                "netns job{}",
                ns.map(|ns| format!(" in {}", ns.name())).unwrap_or_default()
            ),
            std::io::Error::other("the job panicked"),
        ))
    })
}

fn spawn_worker(shared: &Arc<Shared>, name: String, deaths: Sender<Death>) {
    let shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let mut sentinel = Sentinel { deaths: Some(deaths) };
        if worker(&shared) {
            // The queue closed: a normal end, nothing to replace.
            sentinel.deaths = None;
        }
    });
    if let Err(error) = spawned {
        tracing::error!(message = "Could not start a netns worker thread.", %error);
    }
}

/// Runs jobs until the queue closes (`true`) or the thread cannot return home
/// (`false`: it must not run anything else).
fn worker(shared: &Shared) -> bool {
    // A thread inherits its creator's namespace: make sure this one starts home.
    if let Err(error) = setns(&shared.home, CloneFlags::CLONE_NEWNET) {
        tracing::error!(message = "A netns worker could not enter the host namespace.", %error);
        return false;
    }
    loop {
        let job = {
            let queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return true,
            }
        };
        // The job reports its own panics; this only guards the worker.
        let _ = catch_unwind(AssertUnwindSafe(job));
        if let Err(error) = setns(&shared.home, CloneFlags::CLONE_NEWNET) {
            tracing::error!(
                message = "A netns worker could not return to the host namespace; replacing it.",
                %error
            );
            return false;
        }
    }
}

/// Replaces workers that died, until every worker has ended normally. It runs
/// on a thread of its own that never enters a namespace, so replacements
/// start from a healthy thread (a new thread inherits its creator's
/// namespace and credentials).
fn supervise(shared: &Arc<Shared>, deaths: &Receiver<Death>) {
    let mut replaced = 0usize;
    while let Ok(Death(deaths_tx)) = deaths.recv() {
        replaced += 1;
        spawn_worker(shared, format!("netns-r{replaced}"), deaths_tx);
    }
}

fn gone() -> NetError {
    NetError::io("netns executor", std::io::Error::other("worker threads are gone"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    /// The inode of the calling thread's network namespace.
    fn current_netns() -> Result<u64, NetError> {
        std::fs::metadata("/proc/thread-self/ns/net")
            .map(|m| m.ino())
            .map_err(|e| NetError::io("stat /proc/thread-self/ns/net", e))
    }

    /// Whether the calling thread has every capability the executor relies on.
    fn has_admin_caps() -> Result<bool, NetError> {
        let status = std::fs::read_to_string("/proc/thread-self/status").map_err(|e| NetError::io("status", e))?;
        let caps = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        Ok(caps & (1 << 21) != 0 && caps & (1 << 12) != 0)
    }

    /// A throwaway namespace, removed on drop.
    struct Scratch(Arc<Netns>);

    impl Scratch {
        fn new(tag: &str) -> Option<Self> {
            if !nix::unistd::geteuid().is_root() {
                assert!(std::env::var("CI").is_err(), "CI runs as root; this test needs it");
                eprintln!("skipped: needs root");
                return None;
            }
            let name = format!("dtx{}-{tag}", std::process::id());
            let _ = Netns::delete(&name);
            Some(Self(Arc::new(Netns::create(&name).expect("create a scratch netns"))))
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = Netns::delete(self.0.name());
        }
    }

    #[test]
    fn a_panicking_job_fails_alone_and_the_worker_comes_home() {
        let Some(scratch) = Scratch::new("panic") else { return };
        let host = current_netns().unwrap();
        let exec = NetnsExecutor::start(1);
        let inside = exec.run_blocking(Some(Arc::clone(&scratch.0)), current_netns).unwrap();
        assert_ne!(inside, host);
        let panicked = exec.run_blocking(Some(Arc::clone(&scratch.0)), || -> Result<(), NetError> {
            panic!("a job panicked")
        });
        let error = panicked.unwrap_err().to_string();
        assert!(error.contains("panicked"), "{error}");
        // The same (only) worker runs the next job, at home.
        assert_eq!(exec.run_blocking(None, current_netns).unwrap(), host);
    }

    #[test]
    fn a_job_that_does_not_leave_its_namespace_is_brought_home() {
        let Some(scratch) = Scratch::new("stray") else { return };
        let host = current_netns().unwrap();
        let exec = NetnsExecutor::start(1);
        let ns = Arc::clone(&scratch.0);
        let stranded = exec
            .run_blocking(None, move || {
                // Enter and "forget" to come back.
                std::mem::forget(ns.enter()?);
                current_netns()
            })
            .unwrap();
        assert_ne!(stranded, host);
        assert_eq!(exec.run_blocking(None, current_netns).unwrap(), host);
    }

    #[test]
    #[allow(unsafe_code)]
    fn a_worker_that_cannot_come_home_is_replaced() {
        let Some(_scratch) = Scratch::new("dead") else { return };
        let host = current_netns().unwrap();
        let exec = NetnsExecutor::start(1);
        // The job gives up its thread's privileges (credentials are per
        // thread; the raw system call changes this thread's only), so the
        // worker cannot setns back home afterwards and must be replaced.
        let dropped = exec
            .run_blocking(None, || {
                // SAFETY: a plain system call with integer arguments; it
                // changes the credentials of the calling thread only.
                let rc = unsafe { nix::libc::syscall(nix::libc::SYS_setresuid, 65534, 65534, 65534) };
                Ok(rc == 0 && !has_admin_caps()?)
            })
            .unwrap();
        assert!(dropped, "the job could not drop its thread's privileges");
        for _ in 0..3 {
            let (netns, admin) = exec
                .run_blocking(None, || Ok((current_netns()?, has_admin_caps()?)))
                .unwrap();
            assert_eq!(netns, host);
            assert!(admin, "a job ran on the crippled worker");
        }
    }
}
