//! An open-loop (fixed-rate) HTTP/1.1 load generator for `benches/run.sh`.
//!
//! Request *i* is due at `start + i / rate`, whether or not earlier ones have finished, and its
//! latency is measured from when it was due: queueing behind a slow reply counts, so there is
//! no coordinated omission (what wrk2 does; Debian ships only wrk). Prints one JSON line.
//!
//!   loadgen --url http://127.0.0.1:8080/api/update_user_group/ --rate 5000 --duration 10 \
//!           --connections 64 [--method POST --body '{"user_group_id": "example_1"}']

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

struct Options {
    url: http::Uri,
    method: http::Method,
    body: Bytes,
    rate: f64,
    duration: Duration,
    connections: usize,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut method, mut body) = (None, http::Method::GET, Bytes::new());
    let (mut rate, mut duration, mut connections) = (1000.0, Duration::from_secs(10), 64);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?.parse().map_err(|e| format!("--url: {e}"))?),
            "--method" => method = value()?.parse().map_err(|e| format!("--method: {e}"))?,
            "--body" => body = Bytes::from(value()?),
            "--rate" => rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--duration" => {
                duration = Duration::from_secs_f64(
                    value()?.parse().map_err(|e| format!("--duration: {e}"))?,
                )
            }
            "--connections" => {
                connections = value()?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?
            }
            "--bench" => {}
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    Ok(Options {
        url,
        method,
        body,
        rate,
        duration,
        connections,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options = match options() {
        Ok(options) => Arc::new(options),
        Err(error) => {
            eprintln!("loadgen: {error}");
            std::process::exit(64);
        }
    };
    let total = (options.rate * options.duration.as_secs_f64()) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds"),
    ));
    let start = Instant::now() + Duration::from_millis(100);
    let mut workers = Vec::new();
    for _ in 0..options.connections {
        let (options, next, errors, histogram) = (
            options.clone(),
            next.clone(),
            errors.clone(),
            histogram.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut sender = None;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return;
                }
                let due = start + Duration::from_secs_f64(index as f64 / options.rate);
                tokio::time::sleep_until(due.into()).await;
                if sender.is_none() {
                    sender = connect(&options.url).await;
                }
                let Some(request_sender) = sender.as_mut() else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let request = http::Request::builder()
                    .method(options.method.clone())
                    .uri(options.url.path_and_query().map_or("/", |p| p.as_str()))
                    .header(
                        "host",
                        options.url.authority().map_or("localhost", |a| a.as_str()),
                    )
                    .header("content-type", "application/json")
                    .header("explo-authorization", "Token bench")
                    .body(Full::new(options.body.clone()))
                    .expect("request");
                let ok = match request_sender.send_request(request).await {
                    Ok(response) => {
                        let success = response.status().is_success();
                        response.into_body().collect().await.is_ok() && success
                    }
                    Err(_) => false,
                };
                if ok {
                    let micros = due.elapsed().as_micros().max(1) as u64;
                    let _ = histogram.lock().await.record(micros.min(60_000_000));
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    sender = None;
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let histogram = histogram.lock().await;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{{\"requests\": {}, \"errors\": {}, \"seconds\": {:.3}, \"rps\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"p999_ms\": {:.3}}}",
        histogram.len(),
        errors.load(Ordering::Relaxed),
        elapsed,
        histogram.len() as f64 / elapsed,
        ms(0.5),
        ms(0.99),
        ms(0.999)
    );
}

async fn connect(url: &http::Uri) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let authority = url.authority()?.as_str().to_owned();
    let stream = TcpStream::connect(authority).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(sender)
}
