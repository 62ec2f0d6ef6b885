//! `--log-level`: a default level and per-module levels, in the syntax of
//! `RUST_LOG` (env_logger's): `info`, `warn,averyws::backend=debug`,
//! `averyws::access=off,rustls=warn`. A bare level sets the default (the
//! last one wins); `TARGET=LEVEL` sets a target and everything under it
//! (`::` paths); the longest matching target wins, as fern applies it. In
//! `RUST_LOG` a bare `TARGET` means `TARGET=trace`, as env_logger reads it;
//! on the command line a bare word must be a level, so a mistyped level is
//! an error rather than a filter for a module that does not exist. env_logger's `/regex` message
//! filter is not supported and is refused by name.

use std::fmt;
use std::str::FromStr;

use log::LevelFilter;

/// A default level and per-target levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelSpec {
    /// Level for targets no directive names.
    pub default: LevelFilter,
    /// `(target, level)`, in the order given; a later one for the same
    /// target replaces an earlier one.
    pub targets: Vec<(String, LevelFilter)>,
}

impl LevelSpec {
    /// Every target at `level`.
    pub fn new(level: LevelFilter) -> Self {
        LevelSpec {
            default: level,
            targets: Vec::new(),
        }
    }
}

impl FromStr for LevelSpec {
    type Err = String;

    /// The `--log-level` reading.
    fn from_str(text: &str) -> Result<Self, String> {
        LevelSpec::parse(text, false)
    }
}

impl LevelSpec {
    /// The `RUST_LOG` reading: a bare module path is that module at trace.
    pub fn from_env(text: &str) -> Result<Self, String> {
        LevelSpec::parse(text, true)
    }

    fn parse(text: &str, bare_targets: bool) -> Result<Self, String> {
        if text.contains('/') {
            return Err(format!(
                "`{text}`: `/regex` message filters are not supported"
            ));
        }
        let mut spec = LevelSpec::new(LevelFilter::Info);
        for directive in text.split(',').map(str::trim) {
            let (target, value) = match directive.split_once('=') {
                _ if directive.is_empty() => continue,
                None => match directive.parse() {
                    Ok(default) => {
                        spec.default = default;
                        continue;
                    }
                    Err(_) if bare_targets => (directive, LevelFilter::Trace),
                    Err(_) => return Err(level(directive).unwrap_err()),
                },
                Some((target, value)) => (target.trim(), level(value.trim())?),
            };
            if !is_target(target) {
                return Err(format!(
                    "`{target}` is neither a log level (off, error, warn, info, debug, trace) \
                     nor a module path"
                ));
            }
            spec.targets.retain(|(t, _)| t != target);
            spec.targets.push((target.to_owned(), value));
        }
        Ok(spec)
    }
}

impl fmt::Display for LevelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.default.as_str().to_ascii_lowercase())?;
        for (target, level) in &self.targets {
            write!(f, ",{target}={}", level.as_str().to_ascii_lowercase())?;
        }
        Ok(())
    }
}

fn level(text: &str) -> Result<LevelFilter, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a log level (off, error, warn, info, debug, trace)"))
}

/// A Rust module path: `::`-separated identifiers.
fn is_target(text: &str) -> bool {
    !text.is_empty()
        && text.split("::").all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<LevelSpec, String> {
        text.parse()
    }

    #[test]
    fn a_bare_level_sets_the_default() {
        assert_eq!(spec("debug"), Ok(LevelSpec::new(LevelFilter::Debug)));
        assert_eq!(spec("OFF"), Ok(LevelSpec::new(LevelFilter::Off)));
    }

    #[test]
    fn targets_get_their_own_levels() {
        let parsed =
            spec("warn, averyws::backend=debug,rustls=off,averyws::backend=trace").unwrap();
        assert_eq!(parsed.default, LevelFilter::Warn);
        assert_eq!(
            parsed.targets,
            [
                ("rustls".to_owned(), LevelFilter::Off),
                ("averyws::backend".to_owned(), LevelFilter::Trace)
            ]
        );
        assert_eq!(parsed.to_string(), "warn,rustls=off,averyws::backend=trace");
        // Without a bare level the default stays info; the last one wins.
        assert_eq!(spec("averyws=debug").unwrap().default, LevelFilter::Info);
        assert_eq!(spec("info,debug").unwrap().default, LevelFilter::Debug);
        // In RUST_LOG a bare module path is that module at trace, as
        // env_logger has it; on the command line it is a mistyped level.
        assert_eq!(
            LevelSpec::from_env("averyws::conn").unwrap().targets,
            [("averyws::conn".to_owned(), LevelFilter::Trace)]
        );
        assert!(spec("averyws::conn")
            .unwrap_err()
            .contains("is not a log level"));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            ("loud", "`loud` is not a log level"),
            ("rustls=loud", "`loud` is not a log level"),
            ("a b=info", "`a b` is neither a log level"),
            ("=info", "`` is neither a log level"),
            ("averyws:::x=info", "nor a module path"),
            ("info/conn.*", "`/regex` message filters are not supported"),
        ] {
            let error = spec(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
