//! Runs independent units of training work (the trees of a forest, the
//! folds and trials of a search) on several threads, while the calling
//! thread keeps answering for interrupts.
//!
//! Only the calling thread may call the `Interrupts` hook: in a Postgres
//! backend it reaches into the server, which is single-threaded. Workers
//! see a stop flag instead, which the calling thread raises when its hook
//! fails (or unwinds, as a Postgres error does), or a worker's job fails;
//! every job checks its hook often, so all stop promptly. Workers block
//! every signal, so the process's handlers (Postgres's) run on the calling
//! thread only.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use super::{Interrupts, MlError, MlResult};

/// The error a job's hook returns once the run is stopping (another job
/// failed, or the caller was interrupted).
pub const STOPPED: &str = "stopped";

/// How often the calling thread asks its hook while workers run.
const POLL: Duration = Duration::from_millis(20);

/// The threads to use when the caller leaves it to us: every core.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Runs `job(0..n_jobs)` on up to `threads` threads (the caller's among
/// them) and returns the results in job order, so the outcome does not
/// depend on scheduling. The first error wins; the others stop.
pub fn run<T, F>(
    n_jobs: usize,
    threads: usize,
    interrupts: &Interrupts<'_>,
    job: F,
) -> MlResult<Vec<T>>
where
    T: Send,
    F: Fn(usize, &Interrupts<'_>) -> MlResult<T> + Sync,
{
    let workers = threads.min(n_jobs).saturating_sub(1);
    if workers == 0 {
        return (0..n_jobs).map(|i| job(i, interrupts)).collect();
    }
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<MlResult<T>>>> = Mutex::new((0..n_jobs).map(|_| None).collect());
    let stopped = || {
        if stop.load(Ordering::Relaxed) {
            Err(MlError::invalid(STOPPED))
        } else {
            Ok(())
        }
    };
    // `in_worker`: a job that panics there fails like one that errs, and
    // stops the rest. On the caller's thread a panic is Postgres's error
    // unwinding (from the interrupt check), and must go on unwinding.
    let take_jobs = |hook: &Interrupts<'_>, in_worker: bool| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n_jobs || stop.load(Ordering::Relaxed) {
            break;
        }
        let result = if in_worker {
            panic::catch_unwind(AssertUnwindSafe(|| job(i, hook))).unwrap_or_else(|payload| {
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(MlError::invalid(format!("a training thread failed: {why}")))
            })
        } else {
            job(i, hook)
        };
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        if let Ok(mut slots) = results.lock() {
            slots[i] = Some(result);
        }
    };
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let caller = std::thread::scope(|scope| {
        {
            // Restored when this block ends, however it ends.
            let _blocked = SignalsBlocked::new();
            for _ in 0..workers {
                let done = done_tx.clone();
                let take_jobs = &take_jobs;
                let stopped = &stopped;
                let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
                    take_jobs(&Interrupts::new(stopped), true);
                    let _ = done.send(());
                });
                // No more threads to be had (a process limit): the caller
                // and the workers already started do the jobs.
                if spawned.is_err() {
                    break;
                }
            }
        }
        drop(done_tx);
        // The caller takes jobs too, asking both its own hook and the flag;
        // then it waits for the workers, still asking its hook.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| -> MlResult<()> {
            let both = || {
                interrupts.check()?;
                stopped()
            };
            take_jobs(&Interrupts::new(&both), false);
            loop {
                match done_rx.recv_timeout(POLL) {
                    Ok(()) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                    Err(mpsc::RecvTimeoutError::Timeout) => interrupts.check()?,
                }
            }
        }));
        if !matches!(outcome, Ok(Ok(()))) {
            stop.store(true, Ordering::Relaxed);
        }
        outcome
    });
    match caller {
        Err(unwinding) => panic::resume_unwind(unwinding),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => {
            let slots = results
                .into_inner()
                .map_err(|_| MlError::invalid("a training thread failed"))?;
            // A job that failed for its own reason is the error to report,
            // not the "stopped" of the jobs it stopped.
            let mut out = Vec::with_capacity(n_jobs);
            let mut first_stop = None;
            for slot in slots {
                match slot {
                    Some(Ok(v)) => out.push(v),
                    Some(Err(e)) if e.message == STOPPED => {
                        first_stop.get_or_insert(e);
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        first_stop.get_or_insert(MlError::invalid(STOPPED));
                    }
                }
            }
            match first_stop {
                Some(e) => Err(e),
                None => Ok(out),
            }
        }
    }
}

/// Every signal blocked on the calling thread while it lives, so threads
/// started meanwhile inherit the mask; the previous mask comes back when it
/// is dropped, also on unwinding.
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn new() -> Self {
        // SAFETY: sigfillset initialises the set; pthread_sigmask only
        // changes this thread's mask and writes the old one into `previous`.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
            SignalsBlocked(previous)
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: the mask was read from this thread by `new`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn results_come_back_in_job_order() {
        let out = run(50, 3, &Interrupts::none(), |i, _| Ok(i * 2)).unwrap();
        assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_failing_job_stops_the_rest_and_is_the_error() {
        let started = AtomicU32::new(0);
        let err = run(1000, 2, &Interrupts::none(), |i, hook| {
            started.fetch_add(1, Ordering::Relaxed);
            if i == 3 {
                return Err(MlError::insufficient("job 3 failed"));
            }
            for _ in 0..100 {
                hook.check()?;
                std::thread::sleep(Duration::from_micros(100));
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.message, "job 3 failed");
        assert!(started.load(Ordering::Relaxed) < 1000);
    }

    #[test]
    fn a_panicking_job_is_an_error_that_stops_the_rest_and_the_mask_comes_back() {
        let mask = || {
            std::fs::read_to_string("/proc/thread-self/status")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("SigBlk:"))
                .map(str::to_string)
        };
        let before = mask();
        // Jobs panic on the workers (unnamed threads) and take a while on
        // the caller (the test's named thread), so the workers get some.
        let err = run(8, 3, &Interrupts::none(), |i, _| {
            if std::thread::current().name().is_none() {
                panic!("boom");
            }
            std::thread::sleep(Duration::from_millis(20));
            Ok(i)
        })
        .unwrap_err();
        assert!(
            err.message.contains("a training thread failed: boom"),
            "{}",
            err.message
        );
        assert_eq!(mask(), before, "the caller's signal mask is restored");
    }

    #[test]
    fn the_callers_hook_stops_the_workers() {
        let asked = AtomicU32::new(0);
        let cancel_on_third = || {
            if asked.fetch_add(1, Ordering::Relaxed) >= 2 {
                Err(MlError::invalid("canceled"))
            } else {
                Ok(())
            }
        };
        let started = std::time::Instant::now();
        let err = run(4, 4, &Interrupts::new(&cancel_on_third), |_, hook| {
            // Each job would take 20 s if nothing stopped it.
            for _ in 0..20_000 {
                hook.check()?;
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.message, "canceled");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_panicking_hook_unwinds_after_the_workers_stop() {
        let finished = AtomicU32::new(0);
        let panics = || -> MlResult<()> { panic!("a Postgres error") };
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            run(3, 3, &Interrupts::new(&panics), |_, hook| {
                for _ in 0..20_000 {
                    hook.check()?;
                    std::thread::sleep(Duration::from_millis(1));
                }
                finished.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
        }));
        assert!(caught.is_err());
        assert_eq!(finished.load(Ordering::Relaxed), 0);
    }
}
