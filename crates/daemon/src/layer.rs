//! The one configuration layer every natkit server builds on.
//!
//! A server's keys are one struct that derives both `clap::Args` (each flag with
//! `env = "NATKIT_..."`) and serde's `Deserialize` (`deny_unknown_fields`, for the TOML file).
//! Its leaves are [`Setting`]s (or lists of them): the text the user wrote, whichever source it
//! came from, so that the server's one validating constructor parses every value and names the
//! key in every error, the same for a flag, a variable and a file.
//!
//! Precedence is flags > environment > file > defaults: clap applies the first two, [`overlay`]
//! lays that result over the file's layer, and what no layer sets is the constructor's default.
//! A key is added in one place (the struct) and read in one (the constructor).

use std::convert::Infallible;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One value as written: a flag's argument, an environment variable or a TOML scalar (numbers
/// and booleans are kept as their text). A blank value counts as unset ([`overlay`] drops it),
/// as compose files pass `${VAR:-}` through.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Setting(String);

impl Setting {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value parsed as `T`, or an [`Invalid`] naming `key`.
    pub fn parse<T: FromStr>(&self, key: &'static str) -> Result<T, Invalid>
    where
        T::Err: fmt::Display,
    {
        self.0.trim().parse().map_err(|e| Invalid {
            key,
            message: format!("{:?}: {e}", self.0),
        })
    }
}

/// The entries of a list key, whichever source gave them: a flag repeated, a TOML array, or one
/// comma-separated value (as an environment variable carries a list): each split at commas,
/// trimmed, blanks dropped.
pub fn items(list: &[Setting]) -> impl Iterator<Item = &str> {
    list.iter()
        .flat_map(|s| s.as_str().split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A list key that a TOML file may also write as one value: `listen = "0.0.0.0:3478"` or
/// `listen = ["0.0.0.0:3478", "[::]:3478"]` (`#[serde(deserialize_with = "one_or_many")]`).
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Setting>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Setting),
        Many(Vec<Setting>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Setting {
    type Err = Infallible;
    fn from_str(s: &str) -> Result<Self, Infallible> {
        Ok(Setting(s.to_owned()))
    }
}

impl From<&str> for Setting {
    fn from(s: &str) -> Self {
        Setting(s.to_owned())
    }
}

impl From<String> for Setting {
    fn from(s: String) -> Self {
        Setting(s)
    }
}

impl<'de> Deserialize<'de> for Setting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl Visitor<'_> for Scalar {
            type Value = Setting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Setting, E> {
                Ok(Setting(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Setting, E> {
                Ok(Setting(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Setting, E> {
                Ok(Setting(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Setting, E> {
                Ok(Setting(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Setting, E> {
                Ok(Setting(v.to_string()))
            }
        }
        d.deserialize_any(Scalar)
    }
}

/// A secret's text before validation, from a variable only (never a flag, which `ps` shows, nor
/// a file key); `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(pub String);

impl SecretText {
    /// The variable `name` of the process environment, when it is set and not blank.
    pub fn from_env(name: &str) -> Option<SecretText> {
        std::env::var(name)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .map(SecretText)
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

/// `impl TryFrom<$options> for $config` through `$config::from_options(options, read)`, which
/// validates and reads the secret files it names with `read` (tests pass their own): here the
/// files are read from disk.
#[macro_export]
macro_rules! validated_from {
    ($options:ty => $config:ty, $error:ty) => {
        impl TryFrom<$options> for $config {
            type Error = $error;
            fn try_from(options: $options) -> Result<Self, $error> {
                <$config>::from_options(options, |path| std::fs::read_to_string(path))
            }
        }
    };
}

/// A value that does not validate, named by its key (`relay_ports: "9-2": ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Invalid {
    pub key: &'static str,
    pub message: String,
}

/// A configuration file that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
}

/// Reads a TOML file into a layer; unknown keys are an error (a typo must not silently do
/// nothing).
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, FileError> {
    let name = path.to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: name.clone(),
        source,
    })?;
    parse_toml(&text, &name)
}

/// Parses TOML text into a layer; `path` only names the file in errors.
pub fn parse_toml<T: DeserializeOwned>(text: &str, path: &str) -> Result<T, FileError> {
    toml::from_str(text).map_err(|e| FileError::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

/// The layer the environment alone sets: `T`'s flags parsed from an empty command line, so each
/// key's `env` attribute is read exactly as it is when the flags are parsed.
pub fn from_env<T: clap::Args + clap::FromArgMatches>() -> Result<T, clap::Error> {
    let cmd = T::augment_args(clap::Command::new("environment").no_binary_name(true));
    T::from_arg_matches(&cmd.try_get_matches_from(std::iter::empty::<String>())?)
}

/// `over` laid on `under`, key by key, tables (such as `[relay]`) key by key too: what `over`
/// sets wins, what it leaves unset (absent, blank, an empty list, a switch left off) comes from
/// `under`. Blank
/// values left at the end count as unset.
pub fn overlay<T: Serialize + DeserializeOwned>(over: &T, under: &T) -> T {
    let mut merged = serde_json::to_value(under).expect("a layer serializes");
    lay(
        &mut merged,
        serde_json::to_value(over).expect("a layer serializes"),
    );
    drop_unset(&mut merged);
    serde_json::from_value(merged).expect("two layers of one type merge into that type")
}

fn lay(under: &mut Value, over: Value) {
    match (under, over) {
        (Value::Object(u), Value::Object(o)) => {
            for (k, v) in o {
                match u.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => lay(slot, v),
                    _ if !is_set(&v) => {}
                    _ => {
                        u.insert(k, v);
                    }
                }
            }
        }
        (u, o) if is_set(&o) => *u = o,
        _ => {}
    }
}

fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        // Boolean keys are switches that default to off (`--open`, `--no-relay`): a layer that
        // leaves one off has not set it.
        Value::Bool(on) => *on,
        _ => true,
    }
}

fn drop_unset(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.values_mut().for_each(drop_unset);
            m.retain(|_, v| v.is_object() || is_set(v));
        }
        Value::Array(a) => a.retain(is_set),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, clap::Args, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Keys {
        #[arg(long)]
        a: Option<Setting>,
        #[arg(long)]
        b: Option<Setting>,
        #[arg(long)]
        list: Vec<Setting>,
        #[arg(skip)]
        inner: Inner,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        x: Option<Setting>,
        y: Option<Setting>,
    }

    fn s(v: &str) -> Option<Setting> {
        Some(v.into())
    }

    #[test]
    fn overlay_table() {
        let over = Keys {
            a: s("over"),
            b: s("  "),
            list: vec![],
            inner: Inner { x: s("1"), y: None },
        };
        let under = Keys {
            a: s("under"),
            b: s("kept"),
            list: vec!["l".into()],
            inner: Inner {
                x: s("2"),
                y: s("3"),
            },
        };
        let m = overlay(&over, &under);
        assert_eq!(m.a, s("over"), "set over wins");
        assert_eq!(m.b, s("kept"), "a blank value is unset");
        assert_eq!(m.list, vec![Setting::from("l")], "an empty list is unset");
        assert_eq!(
            m.inner,
            Inner {
                x: s("1"),
                y: s("3")
            },
            "tables key by key"
        );
        let blank_only = overlay(
            &Keys::default(),
            &Keys {
                a: s(""),
                ..Default::default()
            },
        );
        assert_eq!(blank_only.a, None, "blank values left at the end are unset");
    }

    #[test]
    fn toml_scalars_are_kept_as_text() {
        let k: Keys = parse_toml(
            "a = 3479\nb = true\nlist = [\"x\"]\n[inner]\nx = 1.5\n",
            "t",
        )
        .unwrap();
        assert_eq!((k.a, k.b), (s("3479"), s("true")));
        assert_eq!(k.inner.x, s("1.5"));
        let e = parse_toml::<Keys>("c = 1\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.toml") && e.contains("unknown field `c`"),
            "{e}"
        );
        assert_eq!(
            s("x")
                .unwrap()
                .parse::<u16>("alt_port")
                .unwrap_err()
                .to_string(),
            "alt_port: \"x\": invalid digit found in string"
        );
    }
}
