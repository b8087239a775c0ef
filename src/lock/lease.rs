//! Keeping the lock's lease while a run holds it, and the holder's self-check.
//!
//! Owns: renewing the lease on every host every fifth of it, noticing that this process went
//! half a lease without a renewal (stopped with SIGSTOP, a laptop suspended, its network cut),
//! holding the run's work until a renewal proves the lock is still its own, and stopping the
//! run when another shipit took it over. Must not: take, take over or release the lock.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::Config;
use crate::error::Error;
use crate::fleet::Fleet;
use crate::remote::scripts;
use crate::state::LockInfo;

/// Milliseconds on `CLOCK_BOOTTIME`: unlike the monotonic clock it keeps counting while the
/// machine is suspended, and unlike the wall clock it is never set back.
fn boottime_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on every Linux since
    // 2.6.39. On failure `ts` stays zero, which only makes a renewal look recent.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1000
        + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000
}

/// When the lease was last proven ours, and the run's work waiting for that proof.
struct Fence {
    lease_ms: u64,
    proven_at: Mutex<u64>,
    parked: Mutex<Option<Waker>>,
    doubt: Notify,
}

impl Fence {
    fn new(lease: Duration) -> Fence {
        Fence {
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
            proven_at: Mutex::new(boottime_ms()),
            parked: Mutex::new(None),
            doubt: Notify::new(),
        }
    }

    /// Half a lease or more since the last proof: another shipit may be about to take the lock
    /// (or have taken it, when this process was stopped longer than the lease).
    fn in_doubt(&self) -> bool {
        let proven = *self.proven_at.lock().unwrap_or_else(|e| e.into_inner());
        boottime_ms().saturating_sub(proven) >= self.lease_ms / 2
    }

    /// A whole lease since the last proof.
    fn expired(&self) -> bool {
        let proven = *self.proven_at.lock().unwrap_or_else(|e| e.into_inner());
        boottime_ms().saturating_sub(proven) >= self.lease_ms
    }

    fn proven(&self) {
        *self.proven_at.lock().unwrap_or_else(|e| e.into_inner()) = boottime_ms();
        if let Some(w) = self.parked.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }
}

/// The run's work, polled only while the lease is not in doubt.
struct Fenced<F> {
    work: Pin<Box<F>>,
    fence: Arc<Fence>,
}

impl<F: Future> Future for Fenced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if this.fence.in_doubt() {
            *this.fence.parked.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            // Checked again once parked: a proof that came in between would not wake us.
            if this.fence.in_doubt() {
                this.fence.doubt.notify_one();
                return Poll::Pending;
            }
        }
        this.work.as_mut().poll(cx)
    }
}

/// Run `work` while renewing the lock `id`'s lease of `lease` on every host. Returns the work's
/// result, or `Error::LockLost` as soon as a renewal finds another holder (the work is then
/// dropped: nothing more is changed on any host).
pub async fn keep_renewed<T>(
    fleet: &Fleet,
    config: &Config,
    id: &str,
    lease: Duration,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let fence = Arc::new(Fence::new(lease));
    let fenced = Fenced {
        work: Box::pin(work),
        fence: fence.clone(),
    };
    let renewing = async {
        let every = lease / 5;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = fence.doubt.notified() => {}
            }
            if fence.in_doubt() {
                crate::ui::warn(&format!(
                    "this shipit went more than half its lock's lease ({}) without renewing it (stopped, suspended or cut off): checking that the lock is still its own before going on",
                    humantime::format_duration(lease)
                ));
            }
            match renew(fleet, config, id, every).await {
                Ok(true) => fence.proven(),
                // No host answered for a whole lease: another shipit may hold the lock now.
                // Waiting on would hang the run (its work is held) for as long as the hosts
                // stay out of reach.
                Ok(false) if fence.expired() => {
                    return Error::LockLost {
                        host: "every host".into(),
                        why: "no host answered its renewals for a whole lease, so another shipit may have taken it".into(),
                        lease: humantime::format_duration(lease).to_string(),
                        environment: config.environment.clone(),
                    };
                }
                Ok(false) => {}
                Err(lost) => return lost,
            }
        }
    };
    tokio::select! {
        r = fenced => r,
        lost = renewing => Err(lost),
    }
}

/// One renewal on every host: `Ok(true)` when at least one host renewed (a host that did not
/// answer in `timeout` is traced and tried again next time), `Err` when a host has another
/// holder now.
async fn renew(fleet: &Fleet, config: &Config, id: &str, timeout: Duration) -> Result<bool, Error> {
    let dir = config.site().lock_dir();
    let cmd = scripts::RenewLock { lock_dir: &dir, id }.command();
    let results = fleet
        .each(|host| {
            let cmd = &cmd;
            async move { tokio::time::timeout(timeout, host.check(cmd)).await }
        })
        .await;
    let mut renewed = fleet.hosts.is_empty();
    let mut failed = Vec::new();
    for (host, r) in fleet.hosts.iter().zip(results) {
        match r {
            Ok(Ok(out)) => {
                let text = String::from_utf8_lossy(&out);
                let text = text.trim();
                if text == "renewed" {
                    renewed = true;
                } else if let Some(details) = text.strip_prefix("lost") {
                    let holder = base64::Engine::decode(
                        &base64::engine::general_purpose::STANDARD,
                        details.trim(),
                    )
                    .ok()
                    .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok());
                    return Err(Error::LockLost {
                        host: format!("`{}`", host.spec),
                        why: holder.as_ref().map_or(
                            "another shipit took it and has released it since".into(),
                            |h| format!("it was taken over by {}", super::describe(h)),
                        ),
                        lease: humantime::format_duration(config.deploy.lock_lease).to_string(),
                        environment: config.environment.clone(),
                    });
                } else {
                    tracing::warn!(host = %host.spec, answer = text, "unexpected answer to the lease renewal");
                }
            }
            Ok(Err(e)) => failed.push((host.spec.to_string(), e.to_string())),
            Err(_) => failed.push((
                host.spec.to_string(),
                format!("no answer within {}", humantime::format_duration(timeout)),
            )),
        }
    }
    crate::ui::warn_hosts("could not renew the lock's lease", &failed);
    Ok(renewed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_clock_moves_forward() {
        let a = boottime_ms();
        std::thread::sleep(Duration::from_millis(20));
        let b = boottime_ms();
        assert!(a > 0 && b >= a + 20, "{a} {b}");
    }

    #[tokio::test]
    async fn work_waits_while_the_lease_is_in_doubt_and_goes_on_once_proven() {
        let fence = Arc::new(Fence::new(Duration::from_millis(100)));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let fenced = Fenced {
            work: Box::pin(async move {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }),
            fence: fence.clone(),
        };
        // Half the lease goes by without a proof: the work is not even started.
        std::thread::sleep(Duration::from_millis(60));
        assert!(fence.in_doubt());
        let task = tokio::spawn(fenced);
        fence.doubt.notified().await;
        assert!(!done.load(std::sync::atomic::Ordering::SeqCst));
        // A renewal proves the lock ours: the work runs.
        fence.proven();
        task.await.unwrap();
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
