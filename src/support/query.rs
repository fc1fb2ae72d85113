//! Query strings: parsed once per request, in one pass, with a cap on the
//! number of parameters, so that no query string can buy unbounded work.
//! Keys are matched exactly (the API signature lower-cases them itself).

/// At most this many parameters are read from one query string (a browser
/// poll of 100 private channels sends about 200).
pub const MAX_PARAMS: usize = 256;

/// Why a query string was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("Too many query parameters: at most {MAX_PARAMS}")]
    TooMany,
}

/// A decoded query string, in the order the parameters were sent.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Splits on `&` and `=` and percent-decodes (`+` is a space); an
    /// invalid escape is kept as sent, invalid UTF-8 is replaced.
    pub fn parse(raw: &str) -> Result<Query, QueryError> {
        let mut pairs = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            if pairs.len() == MAX_PARAMS {
                return Err(QueryError::TooMany);
            }
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode(key, true), decode(value, true)));
        }
        Ok(Query { pairs })
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`).
pub fn decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    if !bytes
        .iter()
        .any(|b| *b == b'%' || (plus_is_space && *b == b'+'))
    {
        return text.to_owned();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_in_order_with_repeats() {
        let q = Query::parse("a=1&b=x+y%2Cz&a=2&flag&c=%zz&d=%41").expect("parses");
        assert_eq!(q.get("a"), Some("1"));
        assert_eq!(q.all("a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(q.get("b"), Some("x y,z"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("c"), Some("%zz"));
        assert_eq!(q.get("d"), Some("A"));
        assert_eq!(q.get("A"), None);
        assert_eq!(decode("%2", false), "%2");
        assert_eq!(decode("a+b%20", false), "a+b ");
    }

    #[test]
    fn caps_the_parameter_count() {
        let many = vec!["k=v"; MAX_PARAMS].join("&");
        assert_eq!(
            Query::parse(&many).expect("at the cap").pairs().len(),
            MAX_PARAMS
        );
        let too_many = format!("{many}&k=v");
        assert_eq!(Query::parse(&too_many).unwrap_err(), QueryError::TooMany);
    }
}
