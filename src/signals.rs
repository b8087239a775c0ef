//! Interruptions of a run holding the lock: Ctrl-C (SIGINT), SIGTERM and SIGHUP (a closed
//! terminal, a dropped SSH session to a bastion).
//!
//! Owns: listening for them and telling the run. Must not: stop anything itself. A signal
//! never kills shipit mid-switch: waits (the health gate, verification, the smoke burst) end
//! at once, a switch in flight finishes, and then the run undoes exactly what it did and
//! releases the lock, as for any other failure.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::error::Error;

/// Cancellation, set once by the first signal.
#[derive(Clone)]
pub struct Cancel {
    rx: watch::Receiver<Option<&'static str>>,
}

/// Fires a [`Cancel::manual`].
pub struct Trigger {
    tx: watch::Sender<Option<&'static str>>,
}

impl Trigger {
    pub fn fire(&self, reason: &'static str) {
        let _ = self.tx.send(Some(reason));
    }
}

/// The listener; dropping it stops listening.
pub struct Listener {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cancel {
    /// Start listening for SIGINT, SIGTERM and SIGHUP.
    pub fn listen() -> (Cancel, Listener) {
        let (tx, rx) = watch::channel(None);
        // Registered here, before returning: a signal from now on is caught, not fatal.
        let streams = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
        ]
        .into_iter()
        .filter_map(|(kind, name)| signal(kind).ok().map(|s| (s, name)))
        .collect::<Vec<_>>();
        let task = tokio::spawn(async move {
            let name = first_signal(streams).await;
            crate::ui::warn(&format!(
                "{name} received: stopping safely (the commands in flight finish, what this run changed is undone, the lock is released)"
            ));
            let _ = tx.send(Some(name));
        });
        (Cancel { rx }, Listener { task })
    }

    /// A cancellation fired by hand, with [`Trigger::fire`].
    pub fn manual() -> (Cancel, Trigger) {
        let (tx, rx) = watch::channel(None);
        (Cancel { rx }, Trigger { tx })
    }

    /// A cancellation that never fires (dry runs, tests).
    pub fn never() -> Cancel {
        let (tx, rx) = watch::channel(None);
        // Keep the sender alive for ever, so `cancelled` stays pending rather than ending.
        std::mem::forget(tx);
        Cancel { rx }
    }

    /// The signal received, if any.
    pub fn signal(&self) -> Option<&'static str> {
        *self.rx.borrow()
    }

    /// `Err(Interrupted)` once a signal came.
    pub fn check(&self) -> Result<(), Error> {
        match self.signal() {
            Some(signal) => Err(Error::Interrupted {
                signal,
                switched: false,
            }),
            None => Ok(()),
        }
    }

    /// Resolves when a signal comes.
    pub async fn cancelled(&self) -> &'static str {
        let mut rx = self.rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or("a signal"),
            // The listener is gone: no signal will ever come.
            Err(_) => std::future::pending().await,
        }
    }

    /// Run `f` until it ends or a signal comes (then `Err(Interrupted)`; `f` is dropped).
    pub async fn guard<T>(&self, f: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        self.check()?;
        tokio::select! {
            r = f => r,
            signal = self.cancelled() => Err(Error::Interrupted { signal, switched: false }),
        }
    }
}

async fn first_signal(streams: Vec<(tokio::signal::unix::Signal, &'static str)>) -> &'static str {
    let waits: Vec<_> = streams
        .into_iter()
        .map(|(mut s, name)| {
            Box::pin(async move {
                s.recv().await;
                name
            })
        })
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(waits).await.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_interrupts_a_guarded_wait_and_is_remembered() {
        let (cancel, _listener) = Cancel::listen();
        assert!(cancel.check().is_ok());
        let waiting = cancel.guard(async {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            Ok(())
        });
        let sender = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let _ = std::process::Command::new("kill")
                .args(["-HUP", &std::process::id().to_string()])
                .status();
        };
        let (result, ()) = tokio::join!(waiting, sender);
        assert!(
            matches!(
                result,
                Err(Error::Interrupted {
                    signal: "SIGHUP",
                    ..
                })
            ),
            "{result:?}"
        );
        assert!(matches!(
            cancel.check(),
            Err(Error::Interrupted {
                signal: "SIGHUP",
                ..
            })
        ));
    }
}
