//! What the Laravel app itself must serve for private and presence
//! channels: its broadcast routes registered (`BroadcastServiceProvider`
//! on Laravel <= 10, `channels:` / `withBroadcasting` in
//! `bootstrap/app.php` on 11+), and `/broadcasting/auth` answering; and
//! the encryption master key when the config passes one to the SDK.

use std::path::Path;

use super::Check;

/// Whether the project registers its broadcast routes, when its files say.
pub fn routes_registered(root: &Path) -> Option<Check> {
    let title = "the app registers its broadcast routes (/broadcasting/auth)".to_owned();
    if let Ok(bootstrap) = std::fs::read_to_string(root.join("bootstrap").join("app.php")) {
        if bootstrap.contains("Application::configure(") {
            // Laravel 11+.
            let registered = live_code(&bootstrap)
                .any(|l| l.contains("withBroadcasting(") || l.contains("channels:"));
            return Some(Check::new(
                registered,
                title,
                "bootstrap/app.php neither passes channels: to withRouting() nor calls \
                 withBroadcasting(): run php artisan install:broadcasting"
                    .into(),
            ));
        }
    }
    let app = std::fs::read_to_string(root.join("config").join("app.php")).ok()?;
    let registered =
        live_code(&app).any(|l| l.contains("App\\Providers\\BroadcastServiceProvider::class"));
    Some(Check::new(
        registered,
        title,
        "App\\Providers\\BroadcastServiceProvider::class is commented out (or missing) in \
         config/app.php's providers: uncomment it, or /broadcasting/auth is a 404 and every \
         private and presence subscription fails"
            .into(),
    ))
}

/// The lines of PHP source that are not comments.
fn live_code(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.starts_with('#') && !l.starts_with('*'))
}

/// Calls the app's `/broadcasting/auth` once as Echo would, with a test
/// socket id, and says what came back. An app that cannot be reached is a
/// warning (the doctor often runs where the app is not served).
pub async fn auth_route(http: &awc::Client, app_url: &str) -> Check {
    let url = format!("{}/broadcasting/auth", app_url.trim_end_matches('/'));
    let answer = http
        .post(&url)
        .insert_header(("Accept", "application/json"))
        .send_form(&[
            ("socket_id", "1234.5678"),
            ("channel_name", "private-herald-doctor"),
        ])
        .await;
    let title = |what: &str| format!("the app's /broadcasting/auth answers ({what})");
    match answer {
        Err(e) => Check::warn(
            format!("the app at {app_url} could not be asked"),
            format!(
                "{e}: run the doctor where the app is served, or pass --app-url (APP_URL is used by default)"
            ),
        ),
        Ok(response) => match response.status().as_u16() {
            404 => Check::fail(
                &title("404"),
                format!(
                    "{url} does not exist: register the broadcast routes (Laravel <= 10: uncomment \
                     BroadcastServiceProvider in config/app.php; 11+: php artisan install:broadcasting)"
                ),
            ),
            // It exists: a guest is refused (403), a cross-site POST needs
            // its CSRF token (419), an unauthenticated one is sent to login.
            status @ (200..=399 | 401 | 403 | 419) => Check::pass(title(&format!(
                "{status}: the route exists{}",
                if matches!(status, 401 | 403 | 419 | 300..=399) {
                    "; it wants a signed-in user, as expected"
                } else {
                    ""
                }
            ))),
            status => Check::fail(
                &title(&status.to_string()),
                format!("{url} answered {status}: see the app's log"),
            ),
        },
    }
}

/// How a config passes `encryption_master_key_base64`: from which
/// environment variable, and whether with `''` as the default (so that an
/// unset variable means no encryption rather than a broken SDK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyOption {
    pub variable: String,
    pub empty_default: bool,
}

/// The option, when the config passes one (comments left out).
pub fn master_key_variable(broadcasting: &str) -> Option<MasterKeyOption> {
    let line = live_code(broadcasting).find(|l| l.contains("encryption_master_key_base64"))?;
    let env = line.find("env(")?;
    let call = &line[env + 4..];
    let name: String = call
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let arguments = call.split(')').next().unwrap_or_default();
    let empty_default = arguments
        .split_once(',')
        .is_some_and(|(_, default)| matches!(default.trim(), "''" | "\"\""));
    (!name.is_empty()).then_some(MasterKeyOption {
        variable: name,
        empty_default,
    })
}

/// Whether the master key the SDK will be given is usable: the SDK throws
/// when it is created with a key that does not decode to 32 bytes (an
/// unset variable included, unless the option defaults to `''`), so every
/// broadcast of the app fails, encrypted or not.
pub fn master_key(option: &MasterKeyOption, value: Option<&str>) -> Check {
    let variable = &option.variable;
    let title = format!("{variable} is a 32-byte key (encrypted channels)");
    let fix = format!(
        "config/broadcasting.php passes encryption_master_key_base64 from {variable}: set it to \
         the output of `openssl rand -base64 32` (the same on every server), or give env() the \
         default '' so an unset key means no encryption; as it is, every broadcast fails"
    );
    match value.map(decode_base64) {
        Some(Some(32)) => Check::pass(title),
        None if option.empty_default => Check::warn(
            format!("{variable} is not set: encrypted channels are off"),
            format!(
                "set {variable} (`openssl rand -base64 32`) to use private-encrypted- channels"
            ),
        ),
        _ => Check::fail(&title, fix),
    }
}

/// How many bytes standard base64 decodes to (`None`: not base64).
fn decode_base64(text: &str) -> Option<usize> {
    let text = text.trim();
    if text.is_empty() || text.len() % 4 != 0 {
        return None;
    }
    let valid = text
        .trim_end_matches('=')
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
    let padding = text.len() - text.trim_end_matches('=').len();
    (valid && padding <= 2).then(|| text.len() / 4 * 3 - padding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_key_variable_and_its_length() {
        let config = "'options' => [\n 'encryption_master_key_base64' => env('PUSHER_ENCRYPTION_MASTER_KEY_BASE64'),\n],";
        let option = master_key_variable(config).expect("found");
        assert_eq!(option.variable, "PUSHER_ENCRYPTION_MASTER_KEY_BASE64");
        assert!(!option.empty_default);
        assert_eq!(master_key_variable("'options' => [],"), None);
        assert_eq!(
            master_key_variable("// 'encryption_master_key_base64' => env('K'),"),
            None
        );
        let key = "ErlbA4HP5MuTlOsUZqPRmw7vGWk9MD9q0hWpEgZQ3eA=";
        assert!(master_key(&option, Some(key)).ok);
        assert!(!master_key(&option, None).ok);
        assert!(!master_key(&option, Some("c2hvcnQ=")).ok, "5 bytes");
        assert!(!master_key(&option, Some("not base64!")).ok);
        let guarded =
            master_key_variable("'encryption_master_key_base64' => env('K', ''),").expect("found");
        assert!(guarded.empty_default);
        let unset = master_key(&guarded, None);
        assert!(unset.ok && unset.verdict == super::super::Verdict::Warn);
    }
}
