//! Any bytes as a legacy body, on every route: parse, translate, never panic; a successful
//! create/update translation never carries `user_group_id`.
#![no_main]

use explo_shim::legacy::LegacyRoute;
use explo_shim::legacy::json::parse_without_duplicate_keys;
use explo_shim::legacy::request::{CustomerCall, translate_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_without_duplicate_keys(data) else { return };
    for route in LegacyRoute::ALL {
        if let Ok(translated) = translate_request(route, body.clone()) {
            if let CustomerCall::Send(customer) = translated.plan {
                if matches!(route, LegacyRoute::CreateUserGroup | LegacyRoute::UpdateUserGroup) {
                    assert!(customer.get("user_group_id").is_none());
                    assert!(customer.get("provided_id").is_some_and(|id| id.is_string()));
                }
                let _ = serde_json::to_vec(&customer).expect("serialisable");
            }
        }
    }
});
