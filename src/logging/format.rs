//! How a log record becomes one line: plain text or one JSON object.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// The shape of every log line, chosen with `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// `TIME LEVEL TARGET: MESSAGE`, for people.
    #[default]
    Text,
    /// One JSON object per line with the keys `time`, `level`, `target`
    /// and `message`, for log shippers.
    Json,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("log format `{other}` is not text or json")),
        }
    }
}

impl Format {
    /// Writes `message` of `record`, stamped with `now`, as one line.
    pub fn write(
        self,
        out: fern::FormatCallback<'_>,
        message: &fmt::Arguments<'_>,
        record: &log::Record<'_>,
        now: SystemTime,
    ) {
        let time = humantime::format_rfc3339_millis(now);
        match self {
            Format::Text => out.finish(format_args!(
                "{time} {:5} {}: {message}",
                record.level(),
                record.target(),
            )),
            Format::Json => {
                let line = serde_json::json!({
                    "time": time.to_string(),
                    "level": record.level().as_str(),
                    "target": record.target(),
                    "message": message.to_string(),
                });
                out.finish(format_args!("{line}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_others_are_refused() {
        let table = [
            ("text", Ok(Format::Text)),
            ("json", Ok(Format::Json)),
            (
                "xml",
                Err("log format `xml` is not text or json".to_owned()),
            ),
        ];
        for (name, expected) in table {
            assert_eq!(name.parse::<Format>(), expected, "{name}");
        }
    }
}
