//! TLS on the main listener, with a generated CA, and certificate reload on SIGHUP.

use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;

fn tls_config(pki: &TestPki) -> (TempConfig, TempConfig, TempConfig) {
    let cert = TempConfig::new(&pki.cert_pem);
    let key = TempConfig::new(&pki.key_pem);
    let config = TempConfig::new(&format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert.path(),
        key.path()
    ));
    (cert, key, config)
}

async fn update_over_https(
    pki: &TestPki,
    shim: &Shim,
) -> Result<(http::Version, serde_json::Value), String> {
    let request = http::Request::post(format!(
        "https://127.0.0.1:{}/api/update_user_group/",
        shim.addr.port()
    ))
    .header("content-type", "application/json")
    .body(Full::new(Bytes::from_static(
        br#"{"user_group_id": "example_1"}"#,
    )))
    .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), pki.client().request(request))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|error| format!("{error:?}"))?;
    let version = response.version();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((version, serde_json::from_slice(&body).unwrap()))
}

#[tokio::test]
async fn a_legacy_https_client_reaches_the_shim_and_negotiates_h2() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("example_1", "t")}),
    ))
    .await;
    let pki = TestPki::new();
    let (_cert, _key, config) = tls_config(&pki);
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let (version, body) = update_over_https(&pki, &shim).await.unwrap();
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(body["user_group"]["provided_id"], "example_1");
    assert_eq!(upstream.requests()[0].target, "/api/update_customer/");

    // Plain HTTP on a TLS listener gets nowhere, and the shim keeps serving.
    let reply = raw_exchange(
        shim.addr,
        b"GET /api/customers/ HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(!reply.contains("200"), "{reply}");
    assert!(update_over_https(&pki, &shim).await.is_ok());
}

#[tokio::test]
async fn a_secret_swap_of_the_certificate_is_served_with_no_signal() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("example_1", "t")}),
    ))
    .await;
    let old = TestPki::new();
    let mut secret =
        crate::watch::KubeletVolume::new(&[("tls.crt", &old.cert_pem), ("tls.key", &old.key_pem)]);
    let config = TempConfig::new(&format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        secret.path("tls.crt"),
        secret.path("tls.key")
    ));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    shim.wait_for_line("the watch was never set up", |line| {
        line.contains("watching the configured files' directories")
    })
    .await;
    assert!(update_over_https(&old, &shim).await.is_ok());

    let new = TestPki::new();
    secret.swap(&[("tls.crt", &new.cert_pem), ("tls.key", &new.key_pem)]);
    let reloaded = shim
        .wait_for_line("the certificate was not reloaded", |line| {
            line.contains("TLS certificate reloaded")
        })
        .await;
    assert!(reloaded.contains("file change"), "{reloaded}");
    assert!(update_over_https(&new, &shim).await.is_ok());
    assert!(update_over_https(&old, &shim).await.is_err());
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("example_1", "t")}),
    ))
    .await;
    let old = TestPki::new();
    let (cert, key, config) = tls_config(&old);
    // SIGHUP alone: with the file watch on, the new files would be taken without it.
    let shim = Shim::start(
        &upstream.url(),
        &["--config", config.path(), "--watch-files", "false"],
    );
    assert!(update_over_https(&old, &shim).await.is_ok());

    let new = TestPki::new();
    std::fs::write(&cert.0, &new.cert_pem).unwrap();
    std::fs::write(&key.0, &new.key_pem).unwrap();
    assert!(
        update_over_https(&new, &shim).await.is_err(),
        "the new CA is not trusted before the reload"
    );
    shim.signal("HUP");
    shim.wait_for_line("the certificate was not reloaded", |line| {
        line.contains("TLS certificate reloaded")
    })
    .await;
    assert!(update_over_https(&new, &shim).await.is_ok());

    // A broken pair on reload keeps the working certificate.
    std::fs::write(&key.0, "not a key").unwrap();
    shim.signal("HUP");
    shim.wait_for_metric(
        r#"explo_shim_config_reloads_total{result="failure"} 1"#,
        "the broken pair was not refused",
    )
    .await;
    assert!(update_over_https(&new, &shim).await.is_ok());
}

#[test]
fn an_unreadable_certificate_stops_start_up() {
    let config = TempConfig::new(
        "[tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n",
    );
    let output = start_up_output(config.path());
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("tls.cert_file"));
}
