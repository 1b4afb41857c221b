//! `explo-shim --demo`: the shim in front of the in-process Customer API emulator, so a
//! newcomer sees a legacy call answered on a fresh machine with no Explo account.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{Config, UpstreamUrl};
use crate::emulator::{self, Emulator};

/// The token the printed calls use; the emulator accepts any `Token …` value.
pub const DEMO_TOKEN: &str = "Token demo";

/// Starts the emulator on a free loopback port, on a thread and runtime of its own, and
/// points `config` at it. Not on the coordinating thread: whatever holds that one up (a slow
/// reload, a busy admin listener) must not hold up the demo's upstream too.
pub fn start_emulator(config: &mut Config) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("explo-shim-emulator".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => {
                        emulator::serve(
                            listener,
                            Arc::new(Emulator::new(None)),
                            std::future::pending(),
                        )
                        .await;
                    }
                    Err(error) => tracing::error!(%error, "cannot serve the demo emulator"),
                }
            });
        })?;
    config.upstream.url = UpstreamUrl {
        scheme: http::uri::Scheme::HTTP,
        authority: addr
            .to_string()
            .parse()
            .map_err(|error| std::io::Error::other(format!("{error}")))?,
        path_prefix: String::new(),
    };
    Ok(addr)
}

/// What the demo prints once it listens: where things are and calls to paste.
pub fn banner(listen: SocketAddr, admin: SocketAddr, emulator: SocketAddr) -> String {
    let base = format!("http://{listen}");
    let call = |method: &str, endpoint: &str, body: &str| {
        format!(
            "curl -s -X {method} '{base}/api/{endpoint}/' -H 'Content-Type: application/json' \
             -H 'Explo-Authorization: {DEMO_TOKEN}' -d '{body}'\n"
        )
    };
    let mut text = format!(
        "explo-shim demo: legacy clients -> http://{listen} -> in-memory Customer API on http://{emulator}\n\
         Admin: http://{admin}/metrics  http://{admin}/usage   (Ctrl-C to stop)\n\n\
         Create the group, then update it with the Update User Group doc's own example:\n\n"
    );
    text.push_str(&call(
        "POST",
        "create_user_group",
        r#"{"user_group_id": "example_1", "name": "Example 1"}"#,
    ));
    text.push_str(&call(
        "POST",
        "update_user_group",
        r#"{"user_group_id": "example_1", "name": "Example 1", "mapping": {"40": "213", "134": "386"}, "properties": {"filterValue": "value"}}"#,
    ));
    text.push_str(
        "\nRotate its token (paste the token from the reply above), then delete it by id:\n\n",
    );
    text.push_str(&call(
        "POST",
        "refresh_user_group_token",
        r#"{"current_token": "<token>"}"#,
    ));
    text.push_str(&call(
        "DELETE",
        "delete_user_group",
        r#"{"user_group_id": "example_1"}"#,
    ));
    text.push_str(&format!(
        "\nWho still calls the legacy API: explo-shim usage --admin http://{admin}\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_names_every_legacy_call_at_the_shim() {
        let text = banner(
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:9901".parse().unwrap(),
            "127.0.0.1:40000".parse().unwrap(),
        );
        for endpoint in [
            "create_user_group",
            "update_user_group",
            "refresh_user_group_token",
            "delete_user_group",
        ] {
            assert!(
                text.contains(&format!("'http://127.0.0.1:8080/api/{endpoint}/'")),
                "{endpoint}\n{text}"
            );
        }
        assert!(text.contains(r#""mapping": {"40": "213", "134": "386"}"#));
    }
}
