//! `herald doctor` against fixture Laravel projects and a running Herald:
//! the verdict of every check, in order, and the exit status.

mod common;

use std::process::Command;

use common::Server;

/// Runs the doctor with only `env` of the broadcasting variables; returns
/// its exit code and what it printed.
fn doctor_output(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.arg("doctor").args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("PUSHER_")
            || name.starts_with("REVERB_")
            || name.starts_with("BROADCAST_")
            || name.starts_with("VITE_")
        {
            cmd.env_remove(name);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run herald doctor");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs the doctor; returns its exit code and, per check, `✓ title` or
/// `✗ title`, with the title cut before its first " (" (socket ids and
/// latencies vary).
fn doctor(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Vec<String>) {
    let (code, text) = doctor_output(args, env);
    let verdicts = text
        .lines()
        .filter(|l| l.starts_with('✓') || l.starts_with('✗'))
        .map(|l| l.split(" (").next().unwrap_or(l).to_owned())
        .collect();
    (code, verdicts)
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/laravel/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

const LIVE_OK: [&str; 7] = [
    "✓ Herald answers at",
    "✓ app id, key and secret match an app of Herald",
    "✓ a WebSocket connects with PUSHER_APP_KEY",
    "✓ an event triggered through the API arrives",
    "✓ a private channel signed with PUSHER_APP_SECRET is accepted",
    "✓ the HTTP fallback",
    "✓ the JSON polling endpoint answers",
];

fn expect(verdicts: &[String], expected: &[&str]) {
    assert_eq!(verdicts.len(), expected.len(), "{verdicts:#?}");
    for (got, want) in verdicts.iter().zip(expected) {
        assert!(
            got.starts_with(want),
            "expected {want:?}, got {got:?} in {verdicts:#?}"
        );
    }
}

#[test]
fn fixture_projects_get_exact_verdicts() {
    let server = Server::start();
    let url = format!("http://127.0.0.1:{}", server.port);

    let (code, verdicts) = doctor(&["--laravel", &fixture("laravel-10"), "--url", &url], &[]);
    let mut expected = vec![
        "✓ BROADCAST_DRIVER is pusher",
        "✓ PUSHER_APP_ID, PUSHER_APP_KEY and PUSHER_APP_SECRET are set",
        "✓ PUSHER_HOST, PUSHER_PORT and PUSHER_SCHEME point at Herald",
        "✓ the PHP side sends to PUSHER_HOST",
        "✓ the frontend",
    ];
    expected.extend(LIVE_OK);
    expect(&verdicts, &expected);
    assert_eq!(code, Some(0));

    let (code, verdicts) = doctor(&["--laravel", &fixture("laravel-11"), "--url", &url], &[]);
    expected[0] = "✓ BROADCAST_CONNECTION is pusher";
    expect(&verdicts, &expected);
    assert_eq!(code, Some(0));

    // Laravel 8's stock config goes to Pusher's cloud; Mix has no address.
    let (code, verdicts) = doctor(&["--laravel", &fixture("laravel-8"), "--url", &url], &[]);
    let mut eight = vec![
        "✓ BROADCAST_DRIVER is pusher",
        "✓ PUSHER_APP_ID",
        "✓ PUSHER_HOST",
        "✗ the PHP side sends to PUSHER_HOST",
        "✗ the frontend",
    ];
    eight.extend(LIVE_OK);
    expect(&verdicts, &eight);
    assert_eq!(code, Some(1));

    let (code, verdicts) = doctor(&["--laravel", &fixture("wrong-secret"), "--url", &url], &[]);
    expect(
        &verdicts,
        &[
            "✓",
            "✓",
            "✓",
            "✓",
            "✓",
            "✓ Herald answers at",
            "✗ app id, key and secret match",
            "✓ a WebSocket connects",
            "✗ an event triggered through the API arrives",
            "✗ a private channel signed with PUSHER_APP_SECRET",
            "✓ the HTTP fallback",
            "✗ the JSON polling endpoint answers",
        ],
    );
    assert_eq!(code, Some(1));

    // No --url: the project's own PUSHER_PORT, where nothing listens.
    let (code, verdicts) = doctor(&["--laravel", &fixture("wrong-port")], &[]);
    expect(
        &verdicts,
        &[
            "✓",
            "✓",
            "✓",
            "✓",
            "✓",
            "✗ Herald answers at http://127.0.0.1:1",
        ],
    );
    assert_eq!(code, Some(1));

    // Without a project: the PUSHER_* variables of the environment.
    let port = server.port.to_string();
    let (code, verdicts) = doctor(
        &[],
        &[
            ("PUSHER_APP_ID", "app-id"),
            ("PUSHER_APP_KEY", "app-key"),
            ("PUSHER_APP_SECRET", "app-secret"),
            ("PUSHER_HOST", "127.0.0.1"),
            ("PUSHER_PORT", &port),
            ("PUSHER_SCHEME", "http"),
            ("BROADCAST_CONNECTION", "pusher"),
            ("VITE_PUSHER_APP_KEY", "app-key"),
            ("VITE_PUSHER_HOST", "127.0.0.1"),
            ("VITE_PUSHER_PORT", &port),
            ("VITE_PUSHER_SCHEME", "http"),
        ],
    );
    let mut from_env = vec![
        "✓ BROADCAST_CONNECTION is pusher",
        "✓",
        "✓",
        "✓ the frontend",
    ];
    from_env.extend(LIVE_OK);
    expect(&verdicts, &from_env);
    assert_eq!(code, Some(0));
}

/// The live checks, named as a Reverb project has its variables.
fn live_ok_reverb() -> Vec<String> {
    LIVE_OK
        .iter()
        .map(|check| check.replace("PUSHER_", "REVERB_"))
        .collect()
}

#[test]
fn a_laravel_11_app_on_reverb_is_checked_with_its_reverb_variables() {
    let server = Server::start();
    let url = format!("http://127.0.0.1:{}", server.port);
    let live = live_ok_reverb();
    let live: Vec<&str> = live.iter().map(String::as_str).collect();

    let (code, verdicts) = doctor(
        &["--laravel", &fixture("laravel-11-reverb"), "--url", &url],
        &[],
    );
    let mut expected = vec![
        "✓ BROADCAST_CONNECTION is reverb",
        "✓ REVERB_APP_ID, REVERB_APP_KEY and REVERB_APP_SECRET are set",
        "✓ REVERB_HOST, REVERB_PORT and REVERB_SCHEME point at Herald",
        "✓ the PHP side sends to REVERB_HOST",
        "✓ the frontend",
    ];
    expected.extend(&live);
    expect(&verdicts, &expected);
    assert_eq!(code, Some(0));

    // Reverb restricted origins; Herald does not: a warning, not a failure.
    let (code, text) = doctor_output(
        &["--laravel", &fixture("reverb-origins"), "--url", &url],
        &[],
    );
    assert!(
        text.contains("! config/reverb.php restricts allowed_origins")
            && text.contains("https://shop.example.com"),
        "{text}"
    );
    assert_eq!(code, Some(0), "{text}");

    let (code, verdicts) = doctor(
        &["--laravel", &fixture("reverb-wrong-secret"), "--url", &url],
        &[],
    );
    expect(
        &verdicts,
        &[
            "✓",
            "✓",
            "✓",
            "✓",
            "✓",
            "✓ Herald answers at",
            "✗ app id, key and secret match",
            "✓ a WebSocket connects with REVERB_APP_KEY",
            "✗ an event triggered through the API arrives",
            "✗ a private channel signed with REVERB_APP_SECRET",
            "✓ the HTTP fallback",
            "✗ the JSON polling endpoint answers",
        ],
    );
    assert_eq!(code, Some(1));

    // No --url: the project's own REVERB_PORT, where nothing listens.
    let (code, verdicts) = doctor(&["--laravel", &fixture("reverb-wrong-port")], &[]);
    expect(
        &verdicts,
        &[
            "✓",
            "✓",
            "✓",
            "✓",
            "✓",
            "✗ Herald answers at http://127.0.0.1:1",
        ],
    );
    assert_eq!(code, Some(1));
}

#[test]
fn with_php_present_laravel_resolves_the_config() {
    let server = Server::start();
    let url = format!("http://127.0.0.1:{}", server.port);
    let (code, text) = doctor_output(
        &["--laravel", &fixture("resolved-by-php"), "--url", &url],
        &[],
    );
    // The .env says BROADCAST_DRIVER=log, but what counts is what Laravel
    // resolves (the fixture's stand-in resolves "pusher", host 127.0.0.1).
    assert!(text.contains("✓ BROADCAST_DRIVER is pusher"), "{text}");
    assert!(
        text.contains(
            "✓ the PHP side sends to PUSHER_HOST (Laravel's resolved config (php artisan))"
        ),
        "{text}"
    );
    assert_eq!(code, Some(0), "{text}");
}

/// A stand-in for the Laravel app: answers every request with `status`.
fn app_answering(status: u16) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, handle)
}

#[test]
fn the_app_side_of_private_channels_is_checked() {
    let server = Server::start();
    let url = format!("http://127.0.0.1:{}", server.port);
    let mut base = vec![
        "✓ BROADCAST_DRIVER is pusher",
        "✓ PUSHER_APP_ID",
        "✓ PUSHER_HOST",
        "✓ the PHP side sends to PUSHER_HOST",
    ];

    // The provider commented out, as the Laravel 8/9/10 skeletons ship it.
    let (code, verdicts) = doctor(&["--laravel", &fixture("provider-off"), "--url", &url], &[]);
    let mut expected = base.clone();
    expected.push("✓ the frontend");
    expected.push("✗ the app registers its broadcast routes");
    expected.extend(LIVE_OK);
    expect(&verdicts, &expected);
    assert_eq!(code, Some(1));

    // The encryption option without its key: every broadcast would fail.
    let (code, verdicts) = doctor(
        &["--laravel", &fixture("encryption-unset"), "--url", &url],
        &[],
    );
    let mut expected = base.clone();
    expected.push("✓ the frontend");
    expected.push("✗ PUSHER_ENCRYPTION_MASTER_KEY_BASE64 is a 32-byte key");
    expected.extend(LIVE_OK);
    expect(&verdicts, &expected);
    assert_eq!(code, Some(1));

    // useTLS => true beside an explicit http scheme works (the SDK uses the
    // scheme): no false alarm.
    let (code, verdicts) = doctor(
        &["--laravel", &fixture("use-tls-with-http"), "--url", &url],
        &[],
    );
    base.push("✓ the frontend");
    let mut expected = base.clone();
    expected.extend(LIVE_OK);
    expect(&verdicts, &expected);
    assert_eq!(code, Some(0));

    // The app's own /broadcasting/auth: a 404 fails, a 403 (a guest) is
    // a route that exists.
    for (status, verdict, exit) in [(404, "✗", 1), (403, "✓", 0)] {
        let (app_url, app) = app_answering(status);
        let (code, verdicts) = doctor(
            &[
                "--laravel",
                &fixture("laravel-10"),
                "--url",
                &url,
                "--app-url",
                &app_url,
            ],
            &[],
        );
        let mut expected = base.clone();
        expected.extend(LIVE_OK);
        let last = format!("{verdict} the app's /broadcasting/auth answers");
        expected.push(&last);
        expect(&verdicts, &expected);
        assert_eq!(code, Some(exit), "{status}");
        app.join().expect("the app was asked");
    }

    // An app that cannot be reached is a warning, not a failure.
    let (code, text) = doctor_output(
        &[
            "--laravel",
            &fixture("laravel-10"),
            "--url",
            &url,
            "--app-url",
            "http://127.0.0.1:1",
        ],
        &[],
    );
    assert!(
        text.contains("! the app at http://127.0.0.1:1 could not be asked"),
        "{text}"
    );
    assert_eq!(code, Some(0), "{text}");
}
