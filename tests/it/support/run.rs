//! The binary run to completion: subcommands, `--check-config`, and start-ups that must fail.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Starts the server with `config_file` on port 0 and expects it to refuse to start.
pub fn start_up_output(config_file: &str) -> Output {
    run_binary(
        &[
            "--config",
            config_file,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        &[],
    )
}

/// Runs the binary to completion (for start-up failures and --check-config).
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_binary_with_stdin(args, env, "")
}

/// Runs the binary to completion with `stdin` as its standard input; it must exit within 20 s.
pub fn run_binary_with_stdin(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_explo-shim"));
    command
        .args(args)
        .env_remove("EXPLO_SHIM_CONFIG")
        .env_remove("EXPLO_SHIM_ADMIN")
        .stdin(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A command that exits before reading its input closes the pipe; that is fine here.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    // Its output is read while it runs (a full pipe would stall it); the exit is waited on in
    // a thread of its own so that a hung binary fails the test instead of hanging it.
    let pid = child.id();
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match exited.recv_timeout(Duration::from_secs(20)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("explo-shim {args:?} did not exit");
        }
    }
}
