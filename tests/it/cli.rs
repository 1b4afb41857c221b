//! The subcommands through the real binary: `translate` on every legacy example of the API
//! reference, `usage` and `healthcheck` against a running shim, `fingerprint`, `completions`,
//! `man` and `--version`.

use crate::support::*;
use serde_json::{Value, json};

fn translate(args: &[&str], stdin: &str) -> Value {
    let mut full = vec!["translate", "--json"];
    full.extend_from_slice(args);
    let output = run_binary_with_stdin(&full, &[], stdin);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn translate_turns_every_legacy_example_into_the_right_customer_call() {
    // ../shared/reference/explo-api.md §2.1 to §2.4, request examples.
    let create = translate(
        &["--endpoint", "create_user_group"],
        r#"{"user_group_id": "example_1", "name": "Example 1",
            "mapping": {"40": "213", "134": "386"}, "properties": {"filterValue": "value"}}"#,
    );
    assert_eq!(create["calls"][0]["method"], "POST");
    assert_eq!(
        create["calls"][0]["url"],
        "https://api.explo.co/api/create_customer/"
    );
    assert_eq!(
        create["calls"][0]["body"],
        json!({"provided_id": "example_1", "name": "Example 1",
               "mapping": {"40": "213", "134": "386"}, "properties": {"filterValue": "value"}})
    );

    let update = translate(
        &["--endpoint", "update_user_group"],
        &doc_fixture("update_user_group.request.json").to_string(),
    );
    assert_eq!(
        update["calls"][0]["url"],
        "https://api.explo.co/api/update_customer/"
    );
    assert_eq!(update["calls"][0]["body"]["provided_id"], "example_1");

    let token = "a".repeat(64);
    let delete = translate(
        &["--endpoint", "delete_user_group"],
        &json!({"current_token": token}).to_string(),
    );
    assert_eq!(delete["calls"][0]["method"], "DELETE");
    assert_eq!(
        delete["calls"][0]["url"],
        "https://api.explo.co/api/delete_customer/"
    );
    assert_eq!(delete["calls"][0]["body"], json!({"current_token": token}));
    assert!(
        delete["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("CASCADE"))
    );

    // S3's delete example names the group by id as well as by token.
    let delete_s3 = translate(
        &["--endpoint", "delete_user_group"],
        &json!({"current_token": token, "user_group_id": "example_1"}).to_string(),
    );
    // The id is checked against the token first, and never sent to the Customer delete.
    assert_eq!(delete_s3["calls"].as_array().unwrap().len(), 2);
    assert_eq!(
        delete_s3["calls"][0]["url"],
        "https://api.explo.co/api/get_customer/"
    );
    assert_eq!(
        delete_s3["calls"][1]["body"],
        json!({"current_token": token})
    );

    let delete_by_id = translate(
        &["--endpoint", "delete"],
        r#"{"user_group_id": "example_1"}"#,
    );
    assert_eq!(
        delete_by_id["calls"][0]["url"],
        "https://api.explo.co/api/get_customer/"
    );
    assert_eq!(
        delete_by_id["calls"][0]["body"],
        json!({"provided_id": "example_1"})
    );
    assert_eq!(delete_by_id["calls"][1]["method"], "DELETE");

    let refresh = translate(
        &["--endpoint", "refresh_user_group_token"],
        &json!({"current_token": token}).to_string(),
    );
    assert_eq!(
        refresh["calls"][0]["url"],
        "https://api.explo.co/api/refresh_customer_token/"
    );
    assert_eq!(refresh["calls"][0]["body"], json!({"current_token": token}));
}

#[test]
fn translate_reads_the_seed_docs_curl_command() {
    // ../shared/reference/000_d5eb2b5954fced9c.txt, "Example Request".
    let curl = include_str!("../fixtures/update_user_group.curl.txt");
    let output = run_binary_with_stdin(&["translate"], &[], curl);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("curl --request POST 'https://api.explo.co/api/update_customer/'"),
        "{text}"
    );
    assert!(
        text.contains("'Explo-Authorization: Token <token>'"),
        "{text}"
    );
    assert!(text.contains("\"provided_id\": \"example_1\""), "{text}");
    assert!(text.contains("Differences to know:"), "{text}");

    // The oldest docs' host and /embed/ path are recognised too.
    let oldest = curl.replace(
        "https://api.explo.co/api/update_user_group/",
        "https://embeddo.herokuapp.com/embed/update_user_group/",
    );
    let json = translate(&[], &oldest);
    assert_eq!(
        json["calls"][0]["url"],
        "https://api.explo.co/api/update_customer/"
    );
}

#[test]
fn translate_explains_bad_input() {
    for (args, stdin, expected) in [
        (vec!["translate"], r#"{"user_group_id": "a"}"#, "--endpoint"),
        (
            vec!["translate", "--endpoint", "create"],
            r#"{"user_group_id": "a", "data_source_id": 3}"#,
            "mapping",
        ),
        (vec!["translate"], "not json", "neither"),
    ] {
        let output = run_binary_with_stdin(&args, &[], stdin);
        assert_eq!(output.status.code(), Some(65), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(expected),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = run_binary_with_stdin(&["translate", "--endpoint", "bogus"], &[], "{}");
    assert_eq!(output.status.code(), Some(64));
}

#[tokio::test]
async fn usage_and_healthcheck_talk_to_a_running_shim() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("example_1", "t")}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "example_1"}),
    )
    .await;
    let admin = shim.admin.to_string();

    let output = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || run_binary(&["usage", "--admin", &admin], &[])
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(table.starts_with("CLIENT"), "{table}");
    assert!(
        table.contains("update_user_group")
            && table.contains("update_customer")
            && table.contains("example_1"),
        "{table}"
    );

    let healthy = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || run_binary(&["healthcheck"], &[("EXPLO_SHIM_ADMIN", &admin)])
    })
    .await
    .unwrap();
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );

    drop(shim);
    let down =
        tokio::task::spawn_blocking(move || run_binary(&["healthcheck", "--admin", &admin], &[]))
            .await
            .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("readyz"));
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The fingerprint `explo-shim fingerprint` prints for `token` on stdin.
fn fingerprint_from_the_binary(token: &str) -> String {
    let output = run_binary_with_stdin(&["fingerprint"], &[], &format!("{token}\n"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    stdout(&output).trim_end_matches('\n').to_owned()
}

#[tokio::test]
async fn usage_json_is_the_report_filtered_and_sorted_and_fingerprint_matches_it() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("example_1", "t")}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    // The busier client gets the later fingerprint, so that the report's own order (by
    // fingerprint) and the order by calls differ.
    let mut tokens = [
        (
            "Token team-one",
            fingerprint_from_the_binary("Token team-one"),
        ),
        (
            "Token team-two",
            fingerprint_from_the_binary("Token team-two"),
        ),
    ];
    tokens.sort_by(|a, b| a.1.cmp(&b.1));
    let [(quiet, quiet_fingerprint), (busy, busy_fingerprint)] = tokens;
    for (token, calls) in [(quiet, 1), (busy, 3)] {
        for _ in 0..calls {
            let got = send(
                "POST",
                &shim.url("/api/update_user_group/"),
                &[("content-type", "application/json"), (TOKEN_HEADER, token)],
                json!({"user_group_id": "example_1"}).to_string(),
            )
            .await;
            assert_eq!(got.status, 200);
        }
    }
    let served = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    let admin = shim.admin.to_string();
    let usage = |args: &[&str]| {
        let mut full = vec!["usage", "--admin", &admin];
        full.extend_from_slice(args);
        let output = run_binary(&full, &[]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        stdout(&output)
    };
    let clients = |report: &Value| -> Vec<String> {
        report["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|client| client["client_fingerprint"].as_str().unwrap().to_owned())
            .collect()
    };

    // `fingerprint` prints what /usage shows.
    assert_eq!(
        clients(&served),
        [quiet_fingerprint.clone(), busy_fingerprint.clone()]
    );
    // --json alone is /usage as served, pretty-printed.
    let printed = usage(&["--json"]);
    assert!(printed.starts_with("{\n  \""), "{printed}");
    assert!(printed.ends_with("}\n"), "{printed}");
    assert_eq!(serde_json::from_str::<Value>(&printed).unwrap(), served);
    // --sort calls puts the busy client first, in the JSON and in the table.
    let by_calls: Value = serde_json::from_str(&usage(&["--json", "--sort", "calls"])).unwrap();
    assert_eq!(
        clients(&by_calls),
        [busy_fingerprint.clone(), quiet_fingerprint.clone()]
    );
    assert_eq!(by_calls["clients"][0]["endpoints"][0]["count"], 3);
    let table = usage(&["--sort", "calls"]);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert!(rows[0].starts_with(&busy_fingerprint), "{table}");
    assert!(rows[1].starts_with(&quiet_fingerprint), "{table}");
    // --sort last_seen is accepted; the busy client called last.
    let by_last_seen: Value =
        serde_json::from_str(&usage(&["--json", "--sort", "last_seen"])).unwrap();
    assert_eq!(clients(&by_last_seen).len(), 2);
    // Both were seen within the hour.
    let recent: Value = serde_json::from_str(&usage(&["--json", "--since", "1h"])).unwrap();
    assert_eq!(recent, served);
}

#[test]
fn usage_with_a_bad_since_or_sort_exits_64_naming_the_flag() {
    // Checked before any shim is asked: nothing listens on this port.
    for (args, named) in [
        (vec!["--since", "seven days"], "--since"),
        (vec!["--since", "7"], "--since"),
        (vec!["--sort", "count"], "--sort"),
    ] {
        let mut full = vec!["usage", "--admin", "127.0.0.1:9"];
        full.extend_from_slice(&args);
        let output = run_binary(&full, &[]);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(named),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn fingerprint_prints_the_twelve_hex_digits_the_logs_show_for_the_credential_on_stdin() {
    // sha256("Token abc") starts 64cc961af68c (src/message/fingerprint.rs); one newline is dropped,
    // \n or \r\n.
    for input in ["Token abc", "Token abc\n", "Token abc\r\n"] {
        let output = run_binary_with_stdin(&["fingerprint"], &[], input);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{input:?}: {}",
            stderr(&output)
        );
        assert_eq!(stdout(&output), "64cc961af68c\n", "{input:?}");
        assert_eq!(stderr(&output), "", "{input:?}");
    }
}

#[test]
fn fingerprint_of_a_blank_credential_exits_65_saying_it_counts_as_anonymous() {
    for input in ["", "\n", " \t\r\n"] {
        let output = run_binary_with_stdin(&["fingerprint"], &[], input);
        assert_eq!(output.status.code(), Some(65), "{input:?}");
        assert_eq!(stdout(&output), "", "{input:?}");
        let message = stderr(&output);
        assert!(
            message.contains("blank credential has no fingerprint")
                && message.contains("anonymous"),
            "{input:?}: {message}"
        );
    }
    // Two lines are not one credential.
    let output = run_binary_with_stdin(&["fingerprint"], &[], "Token a\nToken b\n");
    assert_eq!(output.status.code(), Some(65));
}

#[test]
fn fingerprint_takes_no_credential_on_the_command_line() {
    let output = run_binary_with_stdin(&["fingerprint", "Token abc"], &[], "");
    assert_eq!(output.status.code(), Some(64));
    assert_eq!(stdout(&output), "");
    let help = stdout(&run_binary(&["fingerprint", "--help"], &[]));
    assert!(help.contains("stdin") && help.contains("history"), "{help}");
}

#[test]
fn completions_for_bash_zsh_and_fish_name_the_subcommands_and_flags() {
    // Fish names a long flag `-l upstream`; bash and zsh spell it out.
    for (shell, long) in [("bash", "--"), ("zsh", "--"), ("fish", "-l ")] {
        let output = run_binary(&["completions", shell], &[]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr(&output)
        );
        let script = stdout(&output);
        for flag in ["upstream", "admin", "since", "sort"] {
            let flag = format!("{long}{flag}");
            assert!(script.contains(&flag), "{shell} script lacks {flag}");
        }
        for word in ["usage", "fingerprint", "completions", "last_seen"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
}

#[test]
fn completions_for_an_unknown_shell_exit_64() {
    let output = run_binary(&["completions", "tcsh"], &[]);
    assert_eq!(output.status.code(), Some(64));
    assert_eq!(stdout(&output), "");
    assert!(stderr(&output).contains("tcsh"), "{}", stderr(&output));
}

#[test]
fn man_prints_a_roff_page_that_opens_with_th_and_names_the_flags() {
    let output = run_binary(&["man"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let page = stdout(&output);
    assert!(page.starts_with(".TH explo-shim 1 "), "{page}");
    // roff escapes each dash of a flag: `\-\-upstream`.
    for flag in ["upstream", "admin", "config", "check\\-config"] {
        assert!(
            page.contains(&format!("\\-\\-{flag}")),
            "{flag} missing:\n{page}"
        );
    }
    assert!(page.contains("EXPLO_SHIM_UPSTREAM"), "{page}");
    for subcommand in ["usage", "fingerprint", "completions", "translate"] {
        assert!(page.contains(subcommand), "{subcommand} missing:\n{page}");
    }
}

#[test]
fn version_names_the_package_version_and_the_commit_it_was_built_from() {
    let output = run_binary(&["--version"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let version = stdout(&output);
    let expected = format!("explo-shim {}", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected), "{version}");
    // Built in the same `cargo` run as this test, so with the same environment.
    match option_env!("EXPLO_SHIM_COMMIT").filter(|commit| !commit.is_empty()) {
        Some(commit) => assert_eq!(version, format!("{expected} (commit {commit})\n")),
        None => assert_eq!(version, format!("{expected}\n")),
    }
}

/// Values no operator can mean stop start-up with exit 64 and a message
/// naming the key, never a panic (exit 101) or a silent reinterpretation.
#[test]
fn config_that_cannot_be_meant_exits_64_and_names_the_key() {
    for (file, key, says) in [
        (
            "[deprecation]\nbrownouts = [\"2026-12-01T00:00:00Z/P30000000000000W\"]",
            "deprecation.brownouts",
            "too long",
        ),
        (
            "[deprecation]\nbrownouts = [\"2026-12-01T00:00:00Z/P1000000W\"]",
            "deprecation.brownouts",
            "9999-12-31T23:59:59Z",
        ),
        (
            "[deprecation]\nbrownouts = [\"2026-12-01T23:59:60Z/PT1H\"]",
            "deprecation.brownouts",
            "second 60",
        ),
        (
            "[deprecation]\nsunset = \"2026-12-31T23:59:60Z\"",
            "deprecation.sunset",
            "second 60",
        ),
        (
            "[deprecation]\nexempt_clients = [\"anonymous\"]",
            "deprecation.exempt_clients",
            "leaving the header out",
        ),
        (
            "[upstream]\ntimeout = \"18446744073709551615s\"",
            "upstream.timeout",
            "at most 1day",
        ),
        (
            "[shutdown]\ngrace = \"584942417355y\"",
            "shutdown.grace",
            "number is too large",
        ),
        (
            "[rate_limit]\nmax_wait = \"1000000000h\"",
            "rate_limit.max_wait",
            "at most",
        ),
        (
            "[rate_limit]\nmax_upstream_hold = \"2h\"",
            "rate_limit.max_upstream_hold",
            "at most 1h",
        ),
    ] {
        let config = TempConfig::new(file);
        let output = start_up_output(config.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{file}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(says),
            "{file}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{file}: {stderr}");
    }
    // The same checks hold for values given by flag or variable.
    for (env, value) in [
        ("EXPLO_SHIM_EXEMPT_CLIENTS", "anonymous"),
        (
            "EXPLO_SHIM_BROWNOUTS",
            "2026-12-01T00:00:00Z/P30000000000000W",
        ),
        ("EXPLO_SHIM_UPSTREAM_TIMEOUT", "18446744073709551615s"),
    ] {
        let output = run_binary(&["--check-config"], &[(env, value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{env}: {stderr}");
        assert!(stderr.contains(env), "{env}: {stderr}");
    }
}

#[test]
fn a_brownout_window_wholly_in_the_past_is_a_warning_at_start_up_not_an_error() {
    let config = TempConfig::new(
        "[deprecation]\nbrownouts = [\"2020-12-01T15:00:00Z/PT1H\", \"2999-12-01T15:00:00Z/PT1H\"]\n",
    );
    let shim = Shim::start("http://127.0.0.1:9", &["--config", config.path()]);
    let warnings: Vec<Value> = shim
        .events("explo_shim")
        .into_iter()
        .filter(|event| {
            event["level"] == "WARN"
                && event["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("wholly in the past")
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", shim.logs());
    let windows = warnings[0]["windows"].as_str().unwrap();
    assert!(windows.contains("2020-12-01T15:00:00Z/PT1H"), "{windows}");
    assert!(!windows.contains("2999"), "{windows}");
}

#[test]
fn the_binary_is_built_with_jemalloc_background_threads_and_a_one_second_decay() {
    // jemalloc prints its options at exit when asked; the settings come from
    // `.cargo/config.toml` at build time, so a build without them fails here, not in a pod
    // that keeps a burst's memory for good.
    let output = run_binary(&["--version"], &[("_RJEM_MALLOC_CONF", "stats_print:true")]);
    assert!(output.status.success());
    let report = String::from_utf8_lossy(&output.stderr);
    for option in [
        "opt.background_thread: true",
        "opt.dirty_decay_ms: 1000",
        "opt.muzzy_decay_ms: 0",
        "opt.tcache_gc_incr_bytes: 1048576",
    ] {
        assert!(report.contains(option), "{option} missing from:\n{report}");
    }
}

/// Each line of `--check-config`'s output without its source comment (and the padding before
/// it), so two runs that differ only in where the values came from compare equal.
fn without_sources(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            line.rsplit_once("  # ")
                .map_or(line, |(body, _)| body.trim_end())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `--check-config` prints the resolved configuration as a config file (stdout alone,
/// so `> effective.toml` works), each value with its source, the Redis password redacted; fed
/// back with `--config`, it prints the same settings.
#[test]
fn check_config_prints_a_config_file_that_reads_back_the_same() {
    let config = TempConfig::new(
        "workers = 2\n[limits]\nmax_headers = 50\n[legacy]\nteam_id = 113\n\
         [legacy.api_environment_tag]\nProduction = \"Customer\"\n\
         [deprecation]\nsunset = \"2027-03-01\"\nbrownouts = [\"2026-12-08T15:00:00Z/PT5M\"]\n",
    );
    let output = run_binary(
        &[
            "--config",
            config.path(),
            "--check-config",
            "--listen",
            "127.0.0.1:1111",
        ],
        &[
            ("EXPLO_SHIM_UPSTREAM_TIMEOUT", "7s"),
            (
                "EXPLO_SHIM_RATE_LIMIT_REDIS_URL",
                "redis://ops:hunter2@127.0.0.1:6379/0",
            ),
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("explo-shim: configuration is valid"),
        "{stderr}"
    );
    assert!(!stdout.contains("configuration is valid"), "{stdout}");
    let table: toml::Table = stdout.parse().expect("stdout is TOML");
    assert_eq!(table["workers"].as_integer(), Some(2));
    assert_eq!(table["upstream"]["timeout"].as_str(), Some("7s"));
    assert_eq!(table["legacy"]["team_id"].as_integer(), Some(113));
    assert_eq!(
        table["legacy"]["api_environment_tag"]["Production"].as_str(),
        Some("Customer")
    );
    assert_eq!(
        table["deprecation"]["sunset"].as_str(),
        Some("2027-03-01T00:00:00Z")
    );
    assert_eq!(
        table["rate_limit"]["redis_url"].as_str(),
        Some("redis://ops:<redacted>@127.0.0.1:6379/0")
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
    let file = format!("# file {}", config.path());
    for (starts, source) in [
        ("listen = \"127.0.0.1:1111\"", "# flag --listen"),
        ("timeout = \"7s\"", "# env EXPLO_SHIM_UPSTREAM_TIMEOUT"),
        ("max_headers = 50", file.as_str()),
        ("max_in_flight = 1024", "# default"),
        ("brownouts = [\"2026-12-08T15:00:00Z/PT5M\"]", file.as_str()),
    ] {
        assert!(
            stdout
                .lines()
                .any(|line| line.starts_with(starts) && line.ends_with(source)),
            "no `{starts} … {source}` in:\n{stdout}"
        );
    }

    let effective = TempConfig::new(&stdout);
    let again = run_binary(&["--config", effective.path(), "--check-config"], &[]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        without_sources(&again.stdout),
        without_sources(&output.stdout)
    );
    // Every value now comes from that file (but `RUST_LOG`, should the tests run with it).
    let again = String::from_utf8_lossy(&again.stdout);
    let effective_file = format!("# file {}", effective.path());
    assert!(
        again
            .lines()
            .filter(|line| line.contains(" = "))
            .all(|line| line.ends_with(&effective_file) || line.ends_with("# env RUST_LOG")),
        "{again}"
    );
}

/// An `EXPLO_SHIM_*` variable that names no setting is a warning naming it (and the
/// variable it was probably meant to be), in the log and in `--check-config`.
#[test]
fn an_unknown_explo_shim_variable_is_a_warning_that_names_it() {
    let typo = [("EXPLO_SHIM_LISTN", "127.0.0.1:1111")];
    let shim = Shim::start_with_env("http://127.0.0.1:9", &[], &typo);
    let warnings: Vec<Value> = shim
        .events("explo_shim")
        .into_iter()
        .filter(|event| {
            event["level"] == "WARN"
                && event["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("EXPLO_SHIM_LISTN ")
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", shim.logs());
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean EXPLO_SHIM_LISTEN?"),
        "{warnings:?}"
    );

    let output = run_binary(&["--check-config"], &typo);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("explo-shim: warning:")
                && line.contains("EXPLO_SHIM_LISTN ")
                && line.contains("did you mean EXPLO_SHIM_LISTEN?")),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("EXPLO_SHIM_LISTN"));
}

/// `--check-config` names the limits that are not settings too, as comments, so that the file
/// it prints still reads back as the same configuration.
#[test]
fn check_config_names_the_fixed_limits_as_comments() {
    let output = run_binary(&["--check-config", "--upstream", "http://127.0.0.1:9"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let fixed = stdout
        .split("# Fixed limits (not settings):")
        .nth(1)
        .expect("a fixed-limits section");
    for expected in [
        "the log queue holds at most 4096 KiB",
        "explo_shim_log_lines_dropped_total",
        "heads up to 8 KiB (431 past it)",
        "reports not yet read by their clients share 65536 KiB",
        "the fleet's usage queue to Redis: 65536 events and 4096 KiB",
        "after 10 failed credentials within 1m an address gets 429 for 1m",
        "64 KiB of a collector's reply",
        "read within 3s and up to 1024 KiB",
    ] {
        assert!(fixed.contains(expected), "{expected:?} in {fixed}");
    }
    assert!(
        fixed
            .lines()
            .all(|line| line.is_empty() || line.starts_with('#')),
        "comments only: {fixed}"
    );
    // The settings beside them.
    assert!(stdout.contains("send_timeout = \"30s\""), "{stdout}");
    assert!(stdout.contains("admin_allowed_hosts = []"), "{stdout}");
}
