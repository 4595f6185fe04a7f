//! The limit on concurrent `POST /invocations`: at most `running` requests past admission (reading the
//! body, decoding, inference), at most `queue` more waiting for a place, and a 503 beyond. Admission comes
//! before the body is read, so a request holds no body memory until it has a place; the ticket travels
//! into the blocking decode-and-inference task, so a client that hangs up does not free its place before
//! the work it started is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Admission {
    running: Arc<Semaphore>,
    /// Requests admitted or waiting.
    places: AtomicUsize,
    capacity: usize,
}

/// A place past admission; dropping it lets the next request in.
pub struct Ticket {
    _running: OwnedSemaphorePermit,
    _place: Place,
}

struct Place(Arc<Admission>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.places.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    pub fn new(running: usize, queue: usize) -> Arc<Self> {
        let running = running.max(1);
        Arc::new(Admission {
            running: Arc::new(Semaphore::new(running)),
            places: AtomicUsize::new(0),
            capacity: running + queue,
        })
    }

    /// Waits for a place when fewer than `running + queue` requests are admitted or waiting; `None` (answer
    /// 503) otherwise.
    pub async fn admit(self: &Arc<Self>) -> Option<Ticket> {
        if self.places.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.places.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let place = Place(Arc::clone(self));
        // The semaphore is never closed, so acquiring fails never.
        let running = Arc::clone(&self.running).acquire_owned().await.ok()?;
        Some(Ticket { _running: running, _place: place })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_running_one_waiting_then_refused() {
        let a = Admission::new(1, 1);
        let first = a.admit().await.expect("a free place");
        let a2 = Arc::clone(&a);
        let waiting = tokio::spawn(async move { a2.admit().await.is_some() });
        // Let the second request reach the queue.
        while a.places.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        assert!(a.admit().await.is_none(), "the queue is full");
        drop(first);
        assert!(waiting.await.unwrap(), "the waiting request gets the freed place");
        // Everything released: a new request is admitted at once.
        assert!(a.admit().await.is_some());
        assert_eq!(a.places.load(Ordering::SeqCst), 0);
    }
}
