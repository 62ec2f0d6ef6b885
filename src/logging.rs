//! Log output through `fern`, and the access-log line written when a
//! connection ends.

mod filter;
mod format;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use log::info;

use crate::outcome::{AccessRecord, Closer};

pub use filter::LevelSpec;
pub use format::Format;

/// Log target of the one-line-per-connection access log.
pub const ACCESS_TARGET: &str = "averyws::access";

/// Where the access-log lines go, chosen with `--access-log`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccessLog {
    /// Into the main log on stderr, with everything else.
    #[default]
    Main,
    /// To stdout (`--access-log -`).
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

impl argh::FromArgValue for AccessLog {
    fn from_arg_value(value: &str) -> Result<Self, String> {
        match value {
            "" => Err("--access-log needs a path or -".into()),
            "-" => Ok(AccessLog::Stdout),
            path => Ok(AccessLog::File(path.into())),
        }
    }
}

/// Everything about log output, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Records below these levels are dropped (`--log-level`, or
    /// `RUST_LOG`). Cargo features can lower the ceiling at compile time
    /// (README).
    pub level: LevelSpec,
    /// Text or JSON lines (`--log-format`).
    pub format: Format,
    /// Where the access-log lines go (`--access-log`).
    pub access: AccessLog,
}

/// Why logging could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum InitError {
    /// The access-log file cannot be opened for appending.
    AccessLog(PathBuf, std::io::Error),
    /// A logger was already installed.
    Installed(log::SetLoggerError),
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::AccessLog(path, e) => write!(f, "access log {}: {e}", path.display()),
            InitError::Installed(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InitError {}

/// Sends text log records at `level` and above to stderr, one line each.
pub fn init(level: log::LevelFilter) -> Result<(), InitError> {
    init_with(&Settings {
        level: LevelSpec::new(level),
        format: Format::Text,
        access: AccessLog::Main,
    })
}

/// Installs the logger `settings` describe: the main log on stderr and
/// the access log wherever `settings.access` says.
pub fn init_with(settings: &Settings) -> Result<(), InitError> {
    let format = settings.format;
    let mut root = fern::Dispatch::new()
        .format(move |out, message, record| format.write(out, message, record, SystemTime::now()))
        .level(settings.level.default);
    for (target, level) in &settings.level.targets {
        root = root.level_for(target.clone(), *level);
    }
    let separate: Option<fern::Output> = match &settings.access {
        AccessLog::Main => None,
        AccessLog::Stdout => Some(line_at_once(std::io::stdout())),
        AccessLog::File(path) => Some(
            fern::log_file(path)
                .map_err(|e| InitError::AccessLog(path.clone(), e))?
                .into(),
        ),
    };
    let root = match separate {
        None => root.chain(line_at_once(std::io::stderr())),
        Some(access) => root
            .chain(
                fern::Dispatch::new()
                    .filter(|meta| meta.target() != ACCESS_TARGET)
                    .chain(line_at_once(std::io::stderr())),
            )
            .chain(
                fern::Dispatch::new()
                    .filter(|meta| meta.target() == ACCESS_TARGET)
                    .chain(access),
            ),
    };
    root.apply().map_err(InitError::Installed)
}

/// An output that writes each record with one `write` call: fern formats
/// a record piece by piece, and stdout and stderr are unbuffered, so
/// without the buffer (flushed by fern after every record) one access-log
/// line took about 40 system calls, on the reactor's thread. Files are
/// buffered by fern already.
fn line_at_once(stream: impl std::io::Write + Send + 'static) -> fern::Output {
    let buffered: Box<dyn std::io::Write + Send> =
        Box::new(std::io::BufWriter::with_capacity(LINE_BUFFER, stream));
    buffered.into()
}

/// Room for a log line; a longer one is written in several calls.
const LINE_BUFFER: usize = 4096;

/// Writes the access-log line of a connection that has ended.
pub fn access(record: &AccessRecord<'_>) {
    let (code, closer) = match record.close {
        Some((code, Closer::Client)) => (code, "client"),
        Some((code, Closer::Server)) => (code, "server"),
        Some((code, Closer::Worker)) => (code, "worker"),
        None => (1006, "client"),
    };
    let stats = &record.stats;
    info!(
        target: ACCESS_TARGET,
        "peer={} path={} user={} subprotocol={} duration_ms={} bytes_in={} bytes_out={} messages_in={} messages_out={} close={} closed_by={} evicted={}",
        record.peer,
        record.path.unwrap_or("-"),
        Field(record.user.unwrap_or("-")),
        record.subprotocol.unwrap_or("-"),
        record.duration.as_millis(),
        stats.bytes_in,
        stats.bytes_out,
        stats.messages_in,
        stats.messages_out,
        code,
        closer,
        record.eviction.map_or("-", |reason| reason.as_str()),
    );
}

/// A value from a client (a token's `sub`) in a `key=value` line: ASCII
/// letters, digits and punctuation as they are, anything else (spaces,
/// line breaks, other control and non-ASCII characters) and `\` escaped,
/// so no value can end its field or line and forge another.
struct Field<'a>(&'a str);

impl std::fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                c if c.is_ascii_graphic() => f.write_char(c)?,
                c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
        }
        Ok(())
    }
}

/// At most [`LogBudget::LINES`] lines a second; the rest are summed up in
/// one line when the next second starts.
#[derive(Debug, Default)]
pub struct LogBudget {
    window: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// Lines allowed a second.
    pub const LINES: u32 = 20;

    /// True when a line may be written at `now`; when a new second starts
    /// with lines suppressed, says how many first.
    pub fn allow(&mut self, now: Instant) -> bool {
        let fresh = self
            .window
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if fresh {
            if self.suppressed > 0 {
                log::warn!("{} more lines like the above suppressed", self.suppressed);
            }
            *self = LogBudget {
                window: Some(now),
                ..LogBudget::default()
            };
        }
        self.used += 1;
        if self.used > Self::LINES {
            self.suppressed += 1;
        }
        self.used <= Self::LINES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_value_cannot_end_its_field_or_line() {
        let table = [
            ("alice", "alice"),
            ("a.b@c-d_e:f/g", "a.b@c-d_e:f/g"),
            ("-", "-"),
            ("eve\nINFO forged", "eve\\u{a}INFO\\u{20}forged"),
            ("bob evicted=x", "bob\\u{20}evicted=x"),
            ("back\\slash", "back\\\\slash"),
            ("tab\tcr\r", "tab\\u{9}cr\\u{d}"),
            ("jos\u{e9}", "jos\\u{e9}"),
        ];
        for (value, logged) in table {
            assert_eq!(Field(value).to_string(), logged, "{value:?}");
        }
    }

    #[test]
    fn budget_allows_a_burst_per_second_with_virtual_time() {
        let t0 = Instant::now();
        let mut budget = LogBudget::default();
        let allowed = (0..100).filter(|_| budget.allow(t0)).count();
        assert_eq!(allowed, LogBudget::LINES as usize);
        assert_eq!(budget.suppressed, 80);
        assert!(budget.allow(t0 + Duration::from_secs(1)));
        assert_eq!(budget.suppressed, 0);
    }
}
