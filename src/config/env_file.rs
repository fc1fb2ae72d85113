//! A Laravel `.env` file read as Laravel reads it (vlucas/phpdotenv): `KEY=value`
//! lines, `#` comments, single or double quotes, `export ` prefixes, and
//! `${OTHER}` references in double-quoted and unquoted values. Used by
//! `herald --env-file` (the app's own `.env` as Herald's environment) and
//! by `herald doctor --laravel`.

use std::collections::HashMap;

/// The variables of one `.env` file, in the order they came.
#[derive(Debug, Default, Clone)]
pub struct EnvFile {
    values: HashMap<String, String>,
}

impl EnvFile {
    pub fn parse(text: &str) -> EnvFile {
        EnvFile::parse_with(text, &|_| None)
    }

    /// Parses `text` where `outer` is the real environment: as in Laravel
    /// (phpdotenv's immutable repository), a `${NAME}` reference takes
    /// the real environment's value before the file's own.
    pub fn parse_with(text: &str, outer: &dyn Fn(&str) -> Option<String>) -> EnvFile {
        let mut values: HashMap<String, String> = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((name, raw)) = line.split_once('=') else {
                continue;
            };
            let name = name.trim().to_owned();
            let raw = raw.trim();
            let value = if let Some(inner) = quoted(raw, '\'') {
                inner.to_owned()
            } else if let Some(inner) = quoted(raw, '"') {
                expand(
                    &inner.replace("\\n", "\n").replace("\\\"", "\""),
                    &values,
                    outer,
                )
            } else {
                let bare = raw.split(" #").next().unwrap_or_default().trim();
                expand(bare, &values, outer)
            };
            values.insert(name, value);
        }
        EnvFile { values }
    }

    /// From name/value pairs (the process environment).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> EnvFile {
        EnvFile {
            values: pairs.into_iter().collect(),
        }
    }

    /// Every variable with its value.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether the file sets the variable at all (an empty value included).
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A variable's value; empty values count as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

fn quoted(raw: &str, quote: char) -> Option<&str> {
    let inner = raw.strip_prefix(quote)?;
    let end = inner.rfind(quote)?;
    Some(&inner[..end])
}

/// Replaces `${NAME}` with the real environment's value, else one defined
/// earlier in the file.
fn expand(
    value: &str,
    known: &HashMap<String, String>,
    outer: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match outer(name) {
                    Some(value) => out.push_str(&value),
                    None => out.push_str(known.get(name).map_or("", String::as_str)),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_laravel_env_files() {
        let env = EnvFile::parse(
            "# comment\nAPP_NAME=\"My App\"\nPUSHER_APP_KEY=app-key\nPUSHER_PORT=6001 # local\n\
             VITE_PUSHER_APP_KEY=\"${PUSHER_APP_KEY}\"\nexport PUSHER_HOST='127.0.0.1'\nEMPTY=\n",
        );
        assert_eq!(env.get("APP_NAME"), Some("My App"));
        assert_eq!(env.get("PUSHER_PORT"), Some("6001"));
        assert_eq!(env.get("VITE_PUSHER_APP_KEY"), Some("app-key"));
        assert_eq!(env.get("PUSHER_HOST"), Some("127.0.0.1"));
        assert_eq!(env.get("EMPTY"), None);
    }

    #[test]
    fn references_take_the_real_environment_first() {
        let outer = |name: &str| (name == "REVERB_HOST").then(|| "real.example".to_owned());
        let env = EnvFile::parse_with(
            "REVERB_HOST=file.example\nVITE_REVERB_HOST=\"${REVERB_HOST}\"\nKEY=k\nVITE_KEY=${KEY}\n",
            &outer,
        );
        assert_eq!(env.get("VITE_REVERB_HOST"), Some("real.example"));
        assert_eq!(env.get("VITE_KEY"), Some("k"));
        assert_eq!(env.vars().count(), 4);
    }
}
