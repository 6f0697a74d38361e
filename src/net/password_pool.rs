//! Password hashing off the event-loop thread (issue #12: PBKDF2 stalled every client for
//! its duration): a few worker threads fed over a bounded crossbeam channel; each result goes
//! back over another channel and wakes the loop through its `mio::Waker`.
//!
//! The pool decides nothing: the core says which check runs when
//! (`Broker::poll_password_check`, after the read pass and `handle_timeout`) and takes the
//! results (`Broker::handle_password_checked`, drained once per turn after the events).

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::warn;
use mio::Waker;

use crate::broker::PasswordTicket;
use crate::credentials::PasswordCheck;

/// Worker threads: the machine has two cores and the loop needs one.
pub(crate) const PASSWORD_WORKERS: usize = 2;

/// Checks waiting for a worker at most; the core's budget keeps it far below this, and a
/// check that does not fit is answered SERVER_BUSY at its handshake deadline.
const QUEUED_CHECKS: usize = 1_024;

type Job = (PasswordTicket, PasswordCheck);

/// The worker pool.
pub(crate) struct PasswordPool {
    jobs: Option<Sender<Job>>,
    results: Receiver<(PasswordTicket, bool)>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PasswordPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordPool")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl PasswordPool {
    /// Starts `workers` threads; each result wakes the loop through `waker`.
    ///
    /// # Errors
    /// The OS error if a thread cannot be started.
    pub(crate) fn new(workers: usize, waker: Arc<Waker>) -> io::Result<PasswordPool> {
        let (jobs, job_queue) = crossbeam_channel::bounded::<Job>(QUEUED_CHECKS);
        let (result_sender, results) = crossbeam_channel::unbounded();
        let mut handles = Vec::with_capacity(workers);
        for index in 0..workers.max(1) {
            let job_queue = job_queue.clone();
            let result_sender = result_sender.clone();
            let waker = Arc::clone(&waker);
            let handle = std::thread::Builder::new()
                .name(format!("weir-password-{index}"))
                .spawn(move || {
                    for (ticket, check) in job_queue {
                        let is_match = check.run();
                        if result_sender.send((ticket, is_match)).is_err() {
                            return;
                        }
                        let _ = waker.wake();
                    }
                })?;
            handles.push(handle);
        }
        Ok(PasswordPool {
            jobs: Some(jobs),
            results,
            workers: handles,
        })
    }

    /// Hands a check to the workers.
    pub(crate) fn submit(&self, ticket: PasswordTicket, check: PasswordCheck) {
        if let Some(jobs) = &self.jobs {
            if let Err(TrySendError::Full(_)) = jobs.try_send((ticket, check)) {
                warn!("password check queue full: a HELLO will be answered SERVER_BUSY");
            }
        }
    }

    /// The next result, if one is in.
    pub(crate) fn try_result(&self) -> Option<(PasswordTicket, bool)> {
        self.results.try_recv().ok()
    }
}

impl Drop for PasswordPool {
    fn drop(&mut self) {
        // Closing the job channel ends the workers once they finish their check.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
