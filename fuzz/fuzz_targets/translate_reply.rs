//! Any bytes as a Customer API reply: the legacy reply is built without panicking, is valid
//! JSON, and never carries a `customer` key.
#![no_main]

use explo_shim::legacy::route::LegacyRoute;
use explo_shim::legacy::reply::{ReplyOptions, customer_token, legacy_error_reply, legacy_success_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let reply = bytes::Bytes::copy_from_slice(data);
    let options = ReplyOptions { team_id: Some(3.into()), extra_customer_keys: data.len() % 2 == 0, ..ReplyOptions::default() };
    let is_object = serde_json::from_slice::<serde_json::Value>(data).is_ok_and(|v| v.is_object());
    for route in LegacyRoute::ALL {
        let Ok(legacy) = legacy_success_reply(route, &reply, &options) else { continue };
        let legacy: serde_json::Value = serde_json::from_slice(&legacy.body).expect("valid JSON");
        if route != LegacyRoute::DeleteUserGroup && is_object {
            assert!(legacy.get("customer").is_none());
        }
    }
    if let Some(error) = legacy_error_reply(data) {
        let error: serde_json::Value = serde_json::from_slice(&error).expect("valid JSON");
        assert!(error.get("customer").is_none());
    }
    let _ = customer_token(data);
});
