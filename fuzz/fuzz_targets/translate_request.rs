//! Any bytes as a legacy body, on every route: parse, translate, never panic; a successful
//! translation is valid JSON, and create/update never carry `user_group_id`.
#![no_main]

use explo_shim::legacy::LegacyRoute;
use explo_shim::legacy::request::{CustomerCall, translate_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for route in LegacyRoute::ALL {
        if let Ok(translated) = translate_request(route, data) {
            if let CustomerCall::Send(customer) = translated.plan {
                let customer: serde_json::Value =
                    serde_json::from_slice(&customer).expect("translation writes valid JSON");
                if matches!(route, LegacyRoute::CreateUserGroup | LegacyRoute::UpdateUserGroup) {
                    assert!(customer.get("user_group_id").is_none());
                    assert!(customer.get("provided_id").is_some_and(|id| id.is_string()));
                }
            }
        }
    }
});
