//! [`Stopping`]: how the server tells its stream tasks to end.

use tokio::sync::watch;

/// A signal every stream task holds a copy of; it fires once, when the server stops.
#[derive(Clone, Debug)]
pub struct Stopping(watch::Receiver<bool>);

/// Fires the [`Stopping`] signal.
#[derive(Debug)]
pub struct Stop(watch::Sender<bool>);

impl Stopping {
    /// A signal not fired yet, and what fires it.
    pub fn new() -> (Stop, Stopping) {
        let (stop, stopping) = watch::channel(false);
        (Stop(stop), Stopping(stopping))
    }

    /// Completes once the server stops (at once if it already has, or if the [`Stop`] is gone).
    pub async fn stopped(&mut self) {
        // An error means the sender is gone: stopped too.
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}

impl Stop {
    /// Fires the signal.
    pub fn stop(self) {
        // No receiver left is fine: nothing to tell.
        let _ = self.0.send(true);
    }
}
