//! Every signature Herald checks or makes: channel auth, user sign-in, HTTP
//! API request signing and webhook signing. Pure: no I/O.
//!
//! All signatures are lowercase hex HMAC-SHA256 keyed with the app secret.
//! Verification decodes the hex and lets `hmac` compare in constant time.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, message: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key size");
    mac.update(message);
    mac
}

/// Lowercase hex HMAC-SHA256 of `message`.
pub fn sign(secret: &str, message: &[u8]) -> String {
    hex::encode(mac(secret, message).finalize().into_bytes())
}

/// Constant-time check of a hex signature (either case) over `message`.
pub fn verify(secret: &str, message: &[u8], signature_hex: &str) -> bool {
    match hex::decode(signature_hex) {
        Ok(sig) => mac(secret, message).verify_slice(&sig).is_ok(),
        Err(_) => false,
    }
}

/// Lowercase hex MD5, as `body_md5` carries it.
pub fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Why a client-supplied `auth` string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Invalid auth string: expected <app_key>:<signature>")]
    Malformed,
    #[error("Invalid key in auth data")]
    WrongKey,
    #[error("Invalid signature: expected HMAC SHA256 hex digest of {0}")]
    BadSignature(String),
}

/// The string a channel subscription signs: `socket_id:channel[:channel_data]`.
pub fn channel_string_to_sign(
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    match channel_data {
        Some(data) if !data.is_empty() => format!("{socket_id}:{channel}:{data}"),
        _ => format!("{socket_id}:{channel}"),
    }
}

/// The string a user sign-in signs: `socket_id::user::user_data`.
pub fn user_string_to_sign(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// Checks an `auth` value of the form `<app_key>:<hex signature>` over
/// `string_to_sign`. The signed data is used exactly as the client sent it.
pub fn verify_auth(
    app_key: &str,
    secret: &str,
    string_to_sign: &str,
    auth: &str,
) -> Result<(), AuthError> {
    let (key, signature) = auth.split_once(':').ok_or(AuthError::Malformed)?;
    if key != app_key {
        return Err(AuthError::WrongKey);
    }
    if verify(secret, string_to_sign.as_bytes(), signature) {
        Ok(())
    } else {
        Err(AuthError::BadSignature(string_to_sign.to_owned()))
    }
}

/// [`verify_auth`] against any of `secrets`: an app's secret and, while a
/// rotation's grace lasts, the one before it.
pub fn verify_auth_any<'s>(
    app_key: &str,
    secrets: impl IntoIterator<Item = &'s str>,
    string_to_sign: &str,
    auth: &str,
) -> Result<(), AuthError> {
    let mut result = Err(AuthError::Malformed);
    for secret in secrets {
        result = verify_auth(app_key, secret, string_to_sign, auth);
        if !matches!(result, Err(AuthError::BadSignature(_))) {
            break;
        }
    }
    result
}

/// The `auth` value an app server would hand a client (used by `herald`'s
/// own tooling and tests).
pub fn make_auth(app_key: &str, secret: &str, string_to_sign: &str) -> String {
    format!("{app_key}:{}", sign(secret, string_to_sign.as_bytes()))
}

/// The HTTP API string to sign: `METHOD\nPATH\nQUERY` where QUERY is every
/// parameter except `auth_signature`, keys lower-cased, sorted by key, values
/// not URL-encoded.
pub fn http_string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{}\n{}", method.to_ascii_uppercase(), path, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "app-key";
    const SECRET: &str = "app-secret";

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pusher_published_examples() {
        let (key, secret) = ("278d425bdf160c739803", "7ad3773142a6692b25b8");
        assert_eq!(
            sign(secret, b"1234.1234:private-foobar"),
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert_eq!(
            sign(
                secret,
                user_string_to_sign("1234.1234", r#"{"id":"12345"}"#).as_bytes()
            ),
            "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
        let presence = channel_string_to_sign(
            "1234.1234",
            "presence-foobar",
            Some(r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#),
        );
        assert!(verify_auth(
            key,
            secret,
            &presence,
            &format!("{key}:afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c")
        )
        .is_ok());
        let http = http_string_to_sign(
            "POST",
            "/apps/3/events",
            &p(&[
                ("auth_key", key),
                ("auth_timestamp", "1353088179"),
                ("auth_version", "1.0"),
                ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
            ]),
        );
        assert_eq!(
            sign(secret, http.as_bytes()),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
        assert_eq!(
            md5_hex(br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#),
            "ec365a775a4cd0599faeb73354201b6f"
        );
    }

    #[test]
    fn channel_auth_vectors() {
        let cases = [
            (
                "private-orders",
                None,
                "fa24923d1d5972f2c827aceb385f438a659796cd37cc4edc043128f78f18790a",
            ),
            (
                "private-App.Models.User.42",
                None,
                "ecbbaf944169210eefad99947d8fde0e02df919471b0d248372d7fce15f69eac",
            ),
            (
                "private-encrypted-docs",
                None,
                "806f8b2ea713103060fc3894650896ae33a396557267a90d71752e67dec247e8",
            ),
            (
                "presence-room.1",
                Some(r#"{"user_id":"42","user_info":{"name":"Ada"}}"#),
                "82ff07eaf511ae8bc800920d0e8e57b1b58d524263d56d1443ac357338764054",
            ),
            (
                "presence-room.1",
                Some(r#"{"user_id": "42", "user_info": {"name": "Ada"}}"#),
                "71bc38f5a5194c5b99b828af45cbeda36bcdc30d8e3c738de82b1021514439c4",
            ),
            (
                "presence-room.1",
                Some(
                    r#"{"user_id":"42","user_info":{"name":"Ada","avatar":"https:\/\/x.test\/a.png"}}"#,
                ),
                "7707b68af02d416ef5619cb4547209819ebc72c04415a25c03e958d95fe67d92",
            ),
        ];
        for (channel, data, sig) in cases {
            let s = channel_string_to_sign("123.456", channel, data);
            assert_eq!(make_auth(KEY, SECRET, &s), format!("{KEY}:{sig}"));
            assert!(verify_auth(KEY, SECRET, &s, &format!("{KEY}:{sig}")).is_ok());
            assert!(verify_auth(KEY, SECRET, &s, &format!("{KEY}:{}", sig.to_uppercase())).is_ok());
        }
    }

    #[test]
    fn channel_auth_rejections() {
        let s = channel_string_to_sign("123.456", "private-orders", None);
        let good = "fa24923d1d5972f2c827aceb385f438a659796cd37cc4edc043128f78f18790a";
        assert_eq!(
            verify_auth(KEY, SECRET, &s, good),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            verify_auth(KEY, SECRET, &s, &format!("other:{good}")),
            Err(AuthError::WrongKey)
        );
        assert!(matches!(
            verify_auth(KEY, SECRET, &s, "app-key:zz"),
            Err(AuthError::BadSignature(_))
        ));
        let other_socket = channel_string_to_sign("123.457", "private-orders", None);
        assert!(verify_auth(KEY, SECRET, &other_socket, &format!("{KEY}:{good}")).is_err());
    }

    #[test]
    fn user_signin_vectors() {
        let compact = r#"{"id":"42","user_info":{"name":"Ada"},"watchlist":["7","8"]}"#;
        assert_eq!(
            make_auth(KEY, SECRET, &user_string_to_sign("123.456", compact)),
            "app-key:30c767a65a7962b97135b28d9f555056c2a96c10b26dc6eed5faaec491c1fd80"
        );
        let python = r#"{"id": "42", "user_info": {"name": "Ada"}, "watchlist": ["7", "8"]}"#;
        assert_eq!(
            make_auth(KEY, SECRET, &user_string_to_sign("123.456", python)),
            "app-key:7b3f4908e4e5e89be488adfdcce9851f6f8c98de2c4fc5a7e1881849b17dff0f"
        );
    }

    #[test]
    fn http_request_vectors() {
        let base = |md5: &'static str| {
            let mut v = vec![
                ("auth_key", "app-key"),
                ("auth_timestamp", "1700000000"),
                ("auth_version", "1.0"),
            ];
            if !md5.is_empty() {
                v.push(("body_md5", md5));
            }
            v
        };
        let posts = [
            (
                "/apps/1/events",
                "349c71b13ec8d76fc16325f273365ba5",
                "fee634367542f75080291c3d2d0e1acb69fed9aa363eb720c643283fb5ba3158",
            ),
            (
                "/apps/1/batch_events",
                "43193a0badd24118c451c7a161cc6c93",
                "2b21df36ba34118a281854d4a163c539978a7891fabd3e0b430d46e44922cb41",
            ),
            (
                "/apps/1/events",
                "964d6beaff52ed70822cb3c4f947c482",
                "327376d9a2d0c462a7e95cf0b8d327fa1dcc0ab8faf6ffc8e79b9abef770c857",
            ),
            (
                "/apps/1/users/42/terminate_connections",
                "99914b932bd37a50b983c5e7c90ae93b",
                "bf3568fe3d8ad6907b10598d7707da0844518c02dc4157d77483c82055dda68a",
            ),
        ];
        for (path, md5, sig) in posts {
            let s = http_string_to_sign("POST", path, &p(&base(md5)));
            assert_eq!(sign(SECRET, s.as_bytes()), sig, "{path}");
        }
        assert_eq!(
            md5_hex(
                br#"{"name":"my-event","channel":"my-channel","data":"{\"hello\":\"world\"}"}"#
            ),
            "349c71b13ec8d76fc16325f273365ba5"
        );
        assert_eq!(md5_hex(b"{}"), "99914b932bd37a50b983c5e7c90ae93b");

        let mut q = base("");
        q.extend([("filter_by_prefix", "presence-"), ("info", "user_count")]);
        // Order of arrival and key case must not matter.
        q.reverse();
        let s = http_string_to_sign("get", "/apps/1/channels", &p(&q));
        assert_eq!(
            sign(SECRET, s.as_bytes()),
            "985aebc7e3bd1977bb4ab10e11ad6eba7624244a20ac945c884f459dd1366359"
        );
        let mut q = base("d41d8cd98f00b204e9800998ecf8427e");
        q.extend([
            ("filter_by_prefix", "presence-"),
            ("info", "user_count"),
            ("auth_signature", "ignored"),
        ]);
        let s = http_string_to_sign("GET", "/apps/1/channels", &p(&q));
        assert_eq!(
            sign(SECRET, s.as_bytes()),
            "951b8afd0d8bccbbdc941d33c3e1f5a026b422ffaf4e2aeae720bc3195c707a7"
        );
        let mut q = base("");
        q.push(("info", "user_count,subscription_count"));
        let s = http_string_to_sign("GET", "/apps/1/channels/presence-room.1", &p(&q));
        assert_eq!(
            sign(SECRET, s.as_bytes()),
            "467f42910f775913fbfd8b974c490c726316f16c2bf2fc1bcfe7558125c99cd0"
        );
        let s = http_string_to_sign(
            "GET",
            "/apps/1/channels/presence-room.1/users",
            &p(&base("")),
        );
        assert_eq!(
            sign(SECRET, s.as_bytes()),
            "df4179f62c8d8dd16d012d6b48add4eb2b0bba060318f2667641abd5e0877127"
        );
    }

    #[test]
    fn webhook_vectors() {
        let body = r#"{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"my-channel"}]}"#;
        assert_eq!(
            sign(SECRET, body.as_bytes()),
            "fec9fff324b82111ea03affc886e951bec5ee7a9e365bfd05cf254414c990a1a"
        );
        let body = r#"{"time_ms":1700000000000,"events":[{"name":"member_added","channel":"presence-room.1","user_id":"42"},{"name":"client_event","channel":"presence-room.1","event":"client-typing","data":"{\"typing\":true}","socket_id":"123.456","user_id":"42"}]}"#;
        assert_eq!(
            sign(SECRET, body.as_bytes()),
            "ed176d96f9550796777c014832b33feb7426a8ad43b3a9a26c13c50abbfffed4"
        );
    }
}
