//! A timer for the timeouts set on every request (hyper's HTTP/1 header read timeout, the
//! upstream timeout), cheap enough to arm per request.
//!
//! hyper arms the header read timeout each time it waits for a request head and drops it once
//! the head is in: on a keep-alive connection, once per request. With tokio's timer that is a
//! timer-wheel entry registered and cancelled per request, about 2,600 instructions, or 6% of a
//! passed-through request (callgrind). A timeout of seconds does not need millisecond
//! precision, so here a waiting sleep is a slot in its thread's registry, and one ticker task
//! per thread wakes, every [`TICK`], the sleeps whose deadline has passed. A timeout therefore
//! fires up to one tick late, never early.
//!
//! Each serving thread has its own registry (a thread-local), so threads never share a lock;
//! a sleep keeps a handle to the registry it was put in, so it stays correct wherever it is
//! polled or dropped. Whether a sleep has ended is decided by the clock whenever it is polled;
//! the ticker only makes sure it is polled.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;
use tokio::sync::Notify;

/// How late a timeout may fire.
pub const TICK: Duration = Duration::from_millis(100);

/// hyper's [`hyper::rt::Timer`] backed by the calling thread's registry.
#[derive(Clone, Copy, Debug, Default)]
pub struct CoarseTimer;

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoarseSleep::until(deadline))
    }

    fn now(&self) -> Instant {
        now()
    }
}

/// tokio's clock, so tests with a paused clock see the same time as the ticker.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The sleeps of one thread that are waiting, and the ticker that wakes them.
struct Registry {
    waiting: Mutex<Slab<Waiting>>,
    /// Wakes the ticker when the first sleep starts waiting; it rests while none does.
    someone_waits: Notify,
    /// Whether a ticker task runs for this registry. It ends with its runtime; the next sleep
    /// that waits starts another on the runtime then current.
    ticker_running: AtomicBool,
}

struct Waiting {
    deadline: Instant,
    waker: Waker,
}

thread_local! {
    static THIS_THREAD: Arc<Registry> = Registry::start();
}

impl Registry {
    fn of_this_thread() -> Arc<Registry> {
        THIS_THREAD.with(Arc::clone)
    }

    fn start() -> Arc<Registry> {
        Arc::new(Registry {
            waiting: Mutex::new(Slab::new()),
            someone_waits: Notify::new(),
            ticker_running: AtomicBool::new(false),
        })
    }

    /// Starts a ticker on the current tokio runtime unless one runs. Outside a runtime there
    /// is none: sleeps still end when polled after their deadline, but nothing wakes them.
    fn ensure_ticker(self: &Arc<Self>) {
        if self.ticker_running.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let running = TickerRunning(Arc::clone(self));
                runtime.spawn(tick(running));
            }
            Err(_) => self.ticker_running.store(false, Ordering::Release),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slab<Waiting>> {
        // A panic while holding the lock leaves the slab consistent (every operation on it is
        // a single call), so a poisoned lock is still usable.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every sleep whose deadline has passed.
    fn wake_expired(&self, now: Instant) {
        for (_, waiting) in self.lock().iter() {
            if waiting.deadline <= now {
                waiting.waker.wake_by_ref();
            }
        }
    }
}

/// The ticker's hold on its registry; marks the ticker gone when its task is dropped (its
/// runtime shut down). The registry is a thread-local, so holding it keeps nothing alive for
/// longer than its thread.
struct TickerRunning(Arc<Registry>);

impl Drop for TickerRunning {
    fn drop(&mut self) {
        self.0.ticker_running.store(false, Ordering::Release);
    }
}

/// The ticker: rests while nothing waits, otherwise wakes expired sleeps every [`TICK`].
async fn tick(running: TickerRunning) {
    let registry = &running.0;
    loop {
        let someone_waits = registry.someone_waits.notified();
        if registry.lock().is_empty() {
            someone_waits.await;
            continue;
        }
        tokio::time::sleep(TICK).await;
        registry.wake_expired(now());
    }
}

/// `future` gave up on after `limit` (at most one [`TICK`] late), like `tokio::time::timeout`
/// for limits of seconds that are set on every request.
pub async fn timeout<F: Future>(limit: Duration, future: F) -> Result<F::Output, TimedOut> {
    let mut future = std::pin::pin!(future);
    let mut deadline = CoarseSleep::until(now() + limit);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut deadline).poll(cx).map(|()| Err(TimedOut))
    })
    .await
}

/// The error of [`timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// One timeout. Waiting, it holds a slot in its registry; ending or dropped, it gives it back.
/// Polled, it wakes the polling task once its deadline has passed (at most one [`TICK`] late).
pub(crate) struct CoarseSleep {
    deadline: Instant,
    registry: Arc<Registry>,
    slot: Option<usize>,
}

impl CoarseSleep {
    /// A sleep in this thread's registry; it takes a slot only once it has to wait.
    pub(crate) fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            registry: Registry::of_this_thread(),
            slot: None,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    fn leave(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.registry.lock().try_remove(slot);
        }
    }
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if now() >= self.deadline {
            self.leave();
            return Poll::Ready(());
        }
        let this = &mut *self;
        let mut waiting = this.registry.lock();
        match this.slot.and_then(|slot| waiting.get_mut(slot)) {
            Some(entry) => {
                if !entry.waker.will_wake(cx.waker()) {
                    entry.waker = cx.waker().clone();
                }
            }
            None => {
                let first = waiting.is_empty();
                this.slot = Some(waiting.insert(Waiting {
                    deadline: this.deadline,
                    waker: cx.waker().clone(),
                }));
                drop(waiting);
                this.registry.ensure_ticker();
                if first {
                    this.registry.someone_waits.notify_one();
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        self.leave();
    }
}

impl hyper::rt::Sleep for CoarseSleep {}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    fn waiting_here() -> usize {
        Registry::of_this_thread().lock().len()
    }

    #[tokio::test(start_paused = true)]
    async fn fires_after_the_deadline_and_at_most_a_tick_late() {
        let started = tokio::time::Instant::now();
        CoarseTimer.sleep(Duration::from_millis(750)).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(750), "{took:?}");
        assert!(took <= Duration::from_millis(750) + TICK, "{took:?}");
        assert_eq!(waiting_here(), 0, "an ended sleep gives its slot back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_sleep_gives_its_slot_back() {
        let sleep = CoarseTimer.sleep(Duration::from_secs(10));
        let outcome = tokio::time::timeout(Duration::from_millis(300), sleep).await;
        assert!(outcome.is_err(), "ended early");
        assert_eq!(waiting_here(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn many_sleeps_each_fire_in_deadline_order() {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        for seconds in [3u64, 1, 2] {
            let sender = sender.clone();
            tokio::spawn(async move {
                CoarseTimer.sleep(Duration::from_secs(seconds)).await;
                let _ = sender.send(seconds);
            });
        }
        drop(sender);
        let mut order = Vec::new();
        while let Some(seconds) = receiver.recv().await {
            order.push(seconds);
        }
        assert_eq!(order, [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ticker_rests_and_resumes() {
        CoarseTimer.sleep(Duration::from_millis(200)).await;
        // Nothing waits: the ticker rests until the next sleep, which it still wakes.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let started = tokio::time::Instant::now();
        CoarseTimer.sleep(Duration::from_millis(200)).await;
        assert!(started.elapsed() <= Duration::from_millis(200) + TICK);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_gives_the_output_or_gives_up() {
        let quick = timeout(Duration::from_secs(1), async { 7 }).await;
        assert_eq!(quick, Ok(7));
        let started = tokio::time::Instant::now();
        let slow = timeout(Duration::from_secs(1), std::future::pending::<()>()).await;
        assert_eq!(slow, Err(TimedOut));
        assert!(started.elapsed() <= Duration::from_secs(1) + TICK);
        assert_eq!(waiting_here(), 0);
    }

    #[test]
    fn a_past_deadline_ends_at_once_even_without_a_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let deadline = runtime.block_on(async { now() });
        let mut sleep = CoarseTimer.sleep_until(deadline);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(sleep.as_mut().poll(&mut cx).is_ready());
    }
}
