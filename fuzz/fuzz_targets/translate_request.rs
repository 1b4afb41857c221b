//! Any bytes as a legacy body, on every route: parse, translate, never panic; a successful
//! translation is valid JSON, create/update never carry `user_group_id`, and delete/refresh
//! never carry a legacy-only key.
#![no_main]

use explo_shim::legacy::route::LegacyRoute;
use explo_shim::legacy::request::{CustomerCall, translate_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for route in LegacyRoute::ALL {
        if let Ok(translated) = translate_request(route, data) {
            match translated.plan {
                CustomerCall::Send(customer) => {
                    let customer: serde_json::Value =
                        serde_json::from_slice(&customer).expect("translation writes valid JSON");
                    assert!(customer.get("user_group_id").is_none());
                    assert!(customer.get("provided_id").is_some_and(|id| id.is_string()));
                }
                CustomerCall::ByToken(call) => {
                    let customer: serde_json::Value = serde_json::from_slice(&call.body(Some("t")))
                        .expect("translation writes valid JSON");
                    for key in ["user_group_id", "data_source_id", "data_source_provided_id"] {
                        assert!(customer.get(key).is_none(), "{key} sent");
                    }
                    assert!(customer.get("current_token").is_some_and(|t| t.is_string()));
                }
            }
        }
    }
});
