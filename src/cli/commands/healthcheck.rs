//! `explo-shim healthcheck`: exit 0 when the admin `/readyz` answers 200, 1 otherwise. It lets
//! a container image probe itself without curl or a shell.

use super::admin_get;

/// Probes `{admin}/readyz`; the error says why the shim is not ready.
pub async fn run(admin: &str) -> Result<(), String> {
    let url = format!("{admin}/readyz");
    let (status, body) = admin_get(&url, None).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        ))
    }
}
