//! Any bytes as a Customer API reply: the legacy reply is built without panicking and never
//! carries a `customer` key.
#![no_main]

use explo_shim::legacy::LegacyRoute;
use explo_shim::legacy::reply::{ReplyOptions, customer_token, legacy_error_reply, legacy_success_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let options = ReplyOptions { team_id: Some(3.into()), extra_customer_keys: data.len() % 2 == 0, ..ReplyOptions::default() };
    for route in LegacyRoute::ALL {
        let legacy = legacy_success_reply(route, reply.clone(), &options);
        if route != LegacyRoute::DeleteUserGroup && reply.is_object() {
            assert!(legacy.get("customer").is_none());
        }
        let _ = serde_json::to_vec(&legacy).expect("serialisable");
    }
    let error = legacy_error_reply(reply.clone());
    assert!(error.get("customer").is_none() || !reply.is_object());
    let _ = customer_token(&reply);
});
