//! TLS on the main port: `wss://` and a signed `https://` API request
//! against a certificate made for the test, and a renewed certificate
//! served after SIGHUP while a connection made before stays open.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::certificate::make_certificate;
use common::{Client, Server, APP_ID, KEY, SECRET};
use serde_json::json;

/// An HTTP client that trusts only the CA in `ca`.
fn trusting(ca: &Path) -> awc::Client {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(config)))
        .timeout(common::TIMEOUT)
        .finish()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "herald-tls-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[actix_rt::test]
async fn wss_and_https_with_a_certificate_renewed_on_sighup() {
    let dir = temp_dir();
    make_certificate(&dir, "one");
    make_certificate(&dir, "two");
    let (cert, key) = (dir.join("served-cert.pem"), dir.join("served-key.pem"));
    std::fs::copy(dir.join("one-cert.pem"), &cert).expect("copy");
    std::fs::copy(dir.join("one-key.pem"), &key).expect("copy");
    let server = Server::with_config(&format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.to_string_lossy(),
        key.to_string_lossy()
    ));
    let url = format!("wss://localhost:{}/app/{KEY}?protocol=7", server.port);
    let first = trusting(&dir.join("one-ca.pem"));
    let mut old = Client::connect_with(&first, &url).await;
    old.subscribe("secure").await;

    // A signed API request over https reaches the wss subscriber.
    let body = json!({"name": "e", "channel": "secure", "data": "over https"}).to_string();
    let path = format!("/apps/{APP_ID}/events");
    let app = herald::config::AppConfig::new(APP_ID, KEY, SECRET);
    let query =
        herald::trigger::signed_query(&app, "POST", &path, body.as_bytes(), common::unix_now());
    let mut response = first
        .post(format!("https://localhost:{}{path}?{query}", server.port))
        .insert_header(("Content-Type", "application/json"))
        .send_body(body)
        .await
        .expect("https request");
    assert_eq!(
        response.status().as_u16(),
        200,
        "{:?}",
        response.body().await
    );
    assert_eq!(old.expect("e").await["raw_data"], "over https");

    // Renewal: new files, SIGHUP. New connections get the new certificate,
    // the old connection stays open.
    let second = trusting(&dir.join("two-ca.pem"));
    assert!(second.ws(&url).connect().await.is_err(), "not served yet");
    std::fs::copy(dir.join("two-cert.pem"), &cert).expect("copy");
    std::fs::copy(dir.join("two-key.pem"), &key).expect("copy");
    Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill -HUP");
    common::eventually("the renewed certificate is served", || async {
        second.ws(&url).connect().await.is_ok()
    })
    .await;
    let mut new = Client::connect_with(&second, &url).await;
    new.subscribe("secure").await;
    // A new connection (a fresh client: `first` may reuse a pooled one)
    // that trusts only the old CA is refused now.
    let only_old = trusting(&dir.join("one-ca.pem"));
    assert!(
        only_old.ws(&url).connect().await.is_err(),
        "the old certificate is still served"
    );
    old.expect_nothing_pending().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a `herald` command; returns its exit code, stdout and stderr.
fn herald(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(args).env_remove("SSL_CERT_FILE");
    for name in [
        "PUSHER_APP_ID",
        "PUSHER_APP_KEY",
        "PUSHER_APP_SECRET",
        "HERALD_CONFIG",
    ] {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run herald");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn trigger_and_doctor_trust_a_private_ca_with_ca_or_ssl_cert_file() {
    let dir = temp_dir();
    make_certificate(&dir, "private");
    let server = Server::with_config(&format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
        dir.join("private-cert.pem").to_string_lossy(),
        dir.join("private-key.pem").to_string_lossy()
    ));
    let url = format!("https://localhost:{}", server.port);
    let ca = dir.join("private-ca.pem").to_string_lossy().into_owned();
    let trigger = [
        "trigger",
        "--url",
        &url,
        "--app-id",
        APP_ID,
        "--key",
        KEY,
        "--secret",
        SECRET,
        "--channel",
        "c",
        "--event",
        "e",
    ];

    // Without the CA the certificate is refused, and the error says what to do.
    let (code, _, err) = herald(&trigger, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--ca"), "{err}");

    let mut with_ca = trigger.to_vec();
    with_ca.extend(["--ca", ca.as_str()]);
    let (code, out, err) = herald(&with_ca, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = herald(&trigger, &[("SSL_CERT_FILE", &ca)]);
    assert_eq!(code, Some(0), "SSL_CERT_FILE: {out}{err}");

    // The doctor's live checks over https with the CA.
    let env = [
        ("PUSHER_APP_ID", APP_ID),
        ("PUSHER_APP_KEY", KEY),
        ("PUSHER_APP_SECRET", SECRET),
    ];
    let (_, out, _) = herald(&["doctor", "--url", &url, "--ca", &ca], &env);
    assert!(out.contains("✓ Herald answers at"), "{out}");
    assert!(
        out.contains("✓ an event triggered through the API arrives"),
        "{out}"
    );
    let (_, out, _) = herald(&["doctor", "--url", &url], &env);
    assert!(out.contains("✗ Herald answers at"), "{out}");
    assert!(out.contains("--ca"), "{out}");

    // A URL without a scheme is refused with the fix.
    let mut no_scheme = trigger.to_vec();
    no_scheme[2] = "127.0.0.1:1";
    let (code, _, err) = herald(&no_scheme, &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("http://127.0.0.1:1"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
