//! The background log writer: lines formatted on the serving threads wait in a queue, and a
//! thread of its own writes them out in batches (many lines per `write` under load).
//!
//! The queue is bounded in bytes, not in lines: one access line can carry a 16 KB query, and
//! the queue fills exactly when its reader has stalled (a log collector that stopped reading
//! the pipe, a full disk). A line that would take it past its capacity is dropped and counted
//! ([`DropCounter`]); a request never waits for the log. Once the sink takes bytes again, the
//! writer empties the queue and new lines are taken again.
//!
//! On the hot path a line costs one copy, two atomic additions and a channel send.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// What one queued line costs besides its own bytes, in bytes: the line's `Vec`, its slot in
/// the channel and the allocator's rounding. Counted, so that a flood of short lines is
/// bounded by the same capacity as a few long ones.
const LINE_OVERHEAD_BYTES: usize = 64;

/// How long the writer is given, at exit, to write out the lines still queued: a stalled pipe
/// must not hold the exit.
pub const FLUSH_ON_EXIT: Duration = Duration::from_secs(1);

enum Message {
    Line(Vec<u8>),
    /// Write out what is queued, then say so and end.
    Stop(mpsc::SyncSender<()>),
}

/// What the queue holds and what it dropped, shared by the writers and the writer thread.
#[derive(Debug)]
struct Occupancy {
    capacity_bytes: usize,
    queued_bytes: AtomicUsize,
    dropped_lines: AtomicU64,
}

impl Occupancy {
    /// Reserves room for a line of `cost` bytes; false when there is none.
    fn reserve(&self, cost: usize) -> bool {
        // Reserved first and given back on failure, so that writers racing for the last room
        // cannot overshoot together.
        let before = self.queued_bytes.fetch_add(cost, Ordering::AcqRel);
        if before.saturating_add(cost) <= self.capacity_bytes {
            return true;
        }
        self.release(cost);
        false
    }

    fn release(&self, cost: usize) {
        self.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
    }

    fn dropped(&self) {
        self.dropped_lines.fetch_add(1, Ordering::Relaxed);
    }
}

/// The queue's end the subscriber writes to: each `write` is one whole line, as
/// tracing-subscriber's formatter hands them over.
#[derive(Clone, Debug)]
pub struct QueueWriter {
    lines: mpsc::Sender<Message>,
    occupancy: Arc<Occupancy>,
}

/// The lines the queue dropped, for `/metrics`.
#[derive(Clone, Debug)]
pub struct DropCounter(Arc<Occupancy>);

impl DropCounter {
    pub fn dropped_lines(&self) -> u64 {
        self.0.dropped_lines.load(Ordering::Relaxed)
    }
}

/// Keeps the writer thread; dropping it writes out what is queued, waiting at most
/// [`FLUSH_ON_EXIT`].
#[must_use = "dropping the guard stops the log writer"]
pub struct QueueGuard {
    lines: mpsc::Sender<Message>,
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        let (done, finished) = mpsc::sync_channel(1);
        if self.lines.send(Message::Stop(done)).is_ok() {
            let _ = finished.recv_timeout(FLUSH_ON_EXIT);
        }
    }
}

/// Starts the writer thread on `sink`, with room for `capacity_bytes` of queued lines.
pub fn start(
    sink: impl Write + Send + 'static,
    capacity_bytes: usize,
    thread_name: &str,
) -> std::io::Result<(QueueWriter, QueueGuard)> {
    let (lines, queued) = mpsc::channel();
    let occupancy = Arc::new(Occupancy {
        capacity_bytes,
        queued_bytes: AtomicUsize::new(0),
        dropped_lines: AtomicU64::new(0),
    });
    let released = Arc::clone(&occupancy);
    std::thread::Builder::new()
        .name(thread_name.to_owned())
        .spawn(move || write_out(&queued, &released, sink))?;
    Ok((
        QueueWriter {
            lines: lines.clone(),
            occupancy,
        },
        QueueGuard { lines },
    ))
}

impl QueueWriter {
    pub fn drop_counter(&self) -> DropCounter {
        DropCounter(Arc::clone(&self.occupancy))
    }

    /// Queues `line`, or drops and counts it when the queue has no room for it.
    fn queue(&self, line: &[u8]) {
        let cost = line.len() + LINE_OVERHEAD_BYTES;
        if !self.occupancy.reserve(cost) {
            self.occupancy.dropped();
            return;
        }
        if self.lines.send(Message::Line(line.to_vec())).is_err() {
            // The writer has stopped (the process is exiting).
            self.occupancy.release(cost);
            self.occupancy.dropped();
        }
    }
}

impl Write for &QueueWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.queue(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for QueueWriter {
    type Writer = &'a QueueWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// The writer thread: takes every line queued, writes it, and flushes whenever the queue is
/// empty, so a burst becomes few large writes. A line's room is given back once the sink has
/// taken it: while the sink blocks, the line in hand still counts.
fn write_out(queued: &mpsc::Receiver<Message>, occupancy: &Occupancy, mut sink: impl Write) {
    while let Ok(first) = queued.recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => {
                    // A line the sink refused (a closed pipe, a full disk) is lost: counted
                    // with the dropped ones, the only place left to report it.
                    if sink.write_all(&line).is_err() {
                        occupancy.dropped();
                    }
                    occupancy.release(line.len() + LINE_OVERHEAD_BYTES);
                }
                Message::Stop(done) => {
                    while let Ok(Message::Line(line)) = queued.try_recv() {
                        if sink.write_all(&line).is_err() {
                            occupancy.dropped();
                        }
                        occupancy.release(line.len() + LINE_OVERHEAD_BYTES);
                    }
                    let _ = sink.flush();
                    let _ = done.send(());
                    return;
                }
            }
            next = queued.try_recv().ok();
        }
        let _ = sink.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;

    /// A sink that takes nothing until the test opens it, like a pipe nobody reads.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Gate {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }

        fn written(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Gate {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let (open, opened) = &*self.open;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_stalled_sink_fills_the_queue_to_its_bytes_then_lines_are_dropped_and_counted() {
        let gate = Gate::default();
        let line = vec![b'x'; 1000];
        let cost = line.len() + LINE_OVERHEAD_BYTES;
        let (writer, _guard) = start(gate.clone(), 10 * cost, "log-queue-test").unwrap();
        for _ in 0..100 {
            (&writer).write_all(&line).unwrap();
        }
        // Ten fit; the writer thread may hold the first in hand, still counted.
        assert_eq!(writer.drop_counter().dropped_lines(), 90);
        assert!(writer.occupancy.queued_bytes.load(Ordering::Acquire) <= 10 * cost);

        gate.open();
        until("the queue did not empty", || {
            writer.occupancy.queued_bytes.load(Ordering::Acquire) == 0
        });
        assert_eq!(gate.written().len(), 10 * line.len());
        // Room again: lines flow.
        (&writer).write_all(b"after\n").unwrap();
        until("the new line was not written", || {
            gate.written().ends_with("after\n")
        });
        assert_eq!(writer.drop_counter().dropped_lines(), 90);
    }

    #[test]
    fn a_line_larger_than_the_queue_is_dropped_whole() {
        let gate = Gate::default();
        gate.open();
        let (writer, guard) = start(gate.clone(), 100, "log-queue-test").unwrap();
        (&writer).write_all(&[b'x'; 200]).unwrap();
        (&writer).write_all(b"short\n").unwrap();
        drop(guard);
        assert_eq!(gate.written(), "short\n");
        assert_eq!(writer.drop_counter().dropped_lines(), 1);
    }

    #[test]
    fn dropping_the_guard_writes_out_what_is_queued() {
        let gate = Gate::default();
        gate.open();
        let (writer, guard) = start(gate.clone(), 1 << 20, "log-queue-test").unwrap();
        for index in 0..100 {
            (&writer)
                .write_all(format!("line {index}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        assert_eq!(gate.written().lines().count(), 100);
        assert!(gate.written().ends_with("line 99\n"));
    }
}
