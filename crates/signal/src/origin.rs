//! Which web origins may use natkit-signal from their pages: a pure decision on the `Origin`
//! header, for the CORS headers of `/natkit.js` and the HTTP API and for the WebSocket upgrade.
//!
//! | `allowed_origins` | request `Origin` | CORS (`Access-Control-Allow-Origin`) | WebSocket upgrade |
//! | --- | --- | --- | --- |
//! | any | none (curl, natkit-peer, aiortc: not a browser) | none | accepted |
//! | any | this server's own origin (its page) | none needed | accepted |
//! | empty (the default) | another origin | none: the browser keeps the answer from the page | accepted (the token is what admits) |
//! | lists it, or `*` | another origin | that origin (`*`: echoed, never a literal `*`) | accepted |
//! | does not list it | another origin | none | refused (403) |

/// The validated `allowed_origins` key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Same origin only; the WebSocket does not look at `Origin`.
    #[default]
    SameOrigin,
    /// `*`: every origin.
    Any,
    /// These origins (`scheme://host[:port]`, lower case, no trailing slash).
    List(Vec<String>),
}

/// Why an origin is not a valid `allowed_origins` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an origin: write scheme://host[:port] (https://app.example.com), or \"*\"")]
pub struct BadOrigin(pub String);

impl AllowedOrigins {
    /// From the configured entries (empty: same origin only).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, BadOrigin> {
        let mut list = Vec::new();
        for e in entries {
            let e = e.trim();
            if e == "*" {
                return Ok(AllowedOrigins::Any);
            }
            list.push(normalize(e).ok_or_else(|| BadOrigin(e.to_owned()))?);
        }
        Ok(if list.is_empty() {
            AllowedOrigins::SameOrigin
        } else {
            AllowedOrigins::List(list)
        })
    }
}

/// `scheme://host[:port]` in lower case, or `None` when `s` is not an http(s) origin.
fn normalize(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    valid.then(|| format!("{}://{host}", &lower[..lower.len() - rest.len() - 3]))
}

/// What to do with a request that carries `origin`, on a server reached as `host` (the `Host`
/// header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The `Access-Control-Allow-Origin` value to send, if any.
    pub allow_origin: Option<String>,
    /// Whether a WebSocket upgrade from this origin is accepted.
    pub websocket: bool,
}

pub fn judge(allowed: &AllowedOrigins, origin: Option<&str>, host: Option<&str>) -> Verdict {
    let Some(origin) = origin else {
        return Verdict {
            allow_origin: None,
            websocket: true,
        };
    };
    let normalized = normalize(origin);
    let own = match (&normalized, host) {
        (Some(o), Some(h)) => {
            o.split_once("://").map(|(_, rest)| rest) == Some(&h.to_ascii_lowercase())
        }
        _ => false,
    };
    if own {
        return Verdict {
            allow_origin: None,
            websocket: true,
        };
    }
    match allowed {
        AllowedOrigins::SameOrigin => Verdict {
            allow_origin: None,
            websocket: true,
        },
        AllowedOrigins::Any => Verdict {
            allow_origin: normalized,
            websocket: true,
        },
        AllowedOrigins::List(list) => {
            let listed = normalized.filter(|o| list.contains(o));
            Verdict {
                websocket: listed.is_some(),
                allow_origin: listed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_table() {
        for (entries, want) in [
            (vec![], Ok(AllowedOrigins::SameOrigin)),
            (vec!["*"], Ok(AllowedOrigins::Any)),
            (vec!["https://a.example", "*"], Ok(AllowedOrigins::Any)),
            (
                vec!["HTTPS://App.Example:8443/", "http://[2001:db8::1]:80"],
                Ok(AllowedOrigins::List(vec![
                    "https://app.example:8443".into(),
                    "http://[2001:db8::1]:80".into(),
                ])),
            ),
            (vec!["app.example"], Err(BadOrigin("app.example".into()))),
            (
                vec!["https://app.example/path"],
                Err(BadOrigin("https://app.example/path".into())),
            ),
            (vec!["ftp://x"], Err(BadOrigin("ftp://x".into()))),
            (vec!["https://"], Err(BadOrigin("https://".into()))),
        ] {
            assert_eq!(AllowedOrigins::parse(entries.clone()), want, "{entries:?}");
        }
    }

    #[test]
    fn verdict_table() {
        let list = AllowedOrigins::parse(["https://app.example"]).unwrap();
        let host = Some("signal.example:8080");
        let v = |allow: Option<&str>, websocket| Verdict {
            allow_origin: allow.map(str::to_owned),
            websocket,
        };
        for (allowed, origin, want) in [
            // Not a browser: nothing to say, nothing to refuse.
            (&list, None, v(None, true)),
            (&AllowedOrigins::SameOrigin, None, v(None, true)),
            // The server's own page.
            (&list, Some("http://signal.example:8080"), v(None, true)),
            (
                &AllowedOrigins::SameOrigin,
                Some("http://Signal.Example:8080"),
                v(None, true),
            ),
            // The default: no CORS for others, the WebSocket left to tokens.
            (
                &AllowedOrigins::SameOrigin,
                Some("https://other.example"),
                v(None, true),
            ),
            // A list.
            (
                &list,
                Some("https://app.example"),
                v(Some("https://app.example"), true),
            ),
            (
                &list,
                Some("https://APP.example"),
                v(Some("https://app.example"), true),
            ),
            (&list, Some("https://evil.example"), v(None, false)),
            (&list, Some("http://app.example"), v(None, false)),
            (&list, Some("null"), v(None, false)),
            // `*`: echoed.
            (
                &AllowedOrigins::Any,
                Some("https://x.example"),
                v(Some("https://x.example"), true),
            ),
            (&AllowedOrigins::Any, Some("null"), v(None, true)),
        ] {
            assert_eq!(judge(allowed, origin, host), want, "{allowed:?} {origin:?}");
        }
    }
}
