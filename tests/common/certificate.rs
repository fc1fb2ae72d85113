//! Certificates made for a test with `openssl`: a CA and a server
//! certificate it signed, for Herald's own TLS and for Redis's (whose
//! cluster bus also presents it as a client, hence `clientAuth`).

use std::path::Path;
use std::process::Command;

/// A CA and a `localhost` / 127.0.0.1 certificate it signed, as PEM files
/// in `dir` (`{name}-ca.pem`, `{name}-cert.pem`, `{name}-key.pem`).
pub fn make_certificate(dir: &Path, name: &str) {
    let file = |suffix: &str| {
        dir.join(format!("{name}-{suffix}"))
            .to_string_lossy()
            .into_owned()
    };
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl must be installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A certificate request with a new P-256 key, unencrypted.
    let request = |kind: &str, rest: &[&str]| {
        let mut args = vec!["req", kind, "-newkey", "ec"];
        args.extend(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]);
        args.extend_from_slice(rest);
        run(&args);
    };
    let (ca_key, ca, subject) = (
        file("ca-key.pem"),
        file("ca.pem"),
        format!("/CN=Herald test CA {name}"),
    );
    request(
        "-x509",
        &[
            "-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", &subject,
        ],
    );
    let (key, csr) = (file("key.pem"), file("csr.pem"));
    request(
        "-new",
        &["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"],
    );
    std::fs::write(
        file("ext.cnf"),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("write ext");
    run(&[
        "x509",
        "-req",
        "-in",
        &file("csr.pem"),
        "-CA",
        &file("ca.pem"),
        "-CAkey",
        &file("ca-key.pem"),
        "-CAcreateserial",
        "-out",
        &file("cert.pem"),
        "-days",
        "2",
        "-extfile",
        &file("ext.cnf"),
    ]);
}
