//! Where the other reactors of a process bind (docs/protocol.md sections 1
//! and 14): for a `--backend-bind` endpoint that reactor 0 binds as given,
//! reactor *i* binds `tcp://HOST:PORT+i` or `ipc://PATH.i`. The node binds
//! by this rule; a worker told one endpoint finds the others by it.

use super::message::Reactors;

/// The endpoint of reactor `to` of the process in which reactor `from`
/// binds `endpoint`; `None` when the rule cannot give one (a port that is
/// not fixed or would leave 1-65535, an `ipc://` path without `from`'s
/// suffix, another transport).
pub fn sibling(endpoint: &str, from: usize, to: usize) -> Option<String> {
    if from == to {
        return Some(endpoint.to_owned());
    }
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        let base = match from {
            0 => path,
            _ => path.strip_suffix(&format!(".{from}"))?,
        };
        return Some(match to {
            0 => format!("ipc://{base}"),
            _ => format!("ipc://{base}.{to}"),
        });
    }
    let (host, port) = endpoint.strip_prefix("tcp://")?.rsplit_once(':')?;
    let port = usize::from(port.parse::<u16>().ok().filter(|&port| port != 0)?);
    let base = port.checked_sub(from).filter(|&base| base != 0)?;
    let port = u16::try_from(base + to).ok()?;
    Some(format!("tcp://{host}:{port}"))
}

/// Every other reactor's endpoint, for a worker connected to `endpoint`
/// whose node said it is `reactors`: `Err` names the reactors the rule
/// cannot place.
pub fn siblings(endpoint: &str, reactors: Reactors) -> Vec<Result<String, usize>> {
    let from = usize::from(reactors.index);
    (0..usize::from(reactors.count))
        .filter(|&to| to != from)
        .map(|to| sibling(endpoint, from, to).ok_or(to))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_read_from_any_reactor() {
        let table = [
            ("tcp://127.0.0.1:7100", 0, 0, Some("tcp://127.0.0.1:7100")),
            ("tcp://127.0.0.1:7100", 0, 3, Some("tcp://127.0.0.1:7103")),
            ("tcp://[::1]:7100", 0, 1, Some("tcp://[::1]:7101")),
            ("tcp://10.0.0.1:7101", 1, 0, Some("tcp://10.0.0.1:7100")),
            (
                "tcp://host.example:7102",
                2,
                1,
                Some("tcp://host.example:7101"),
            ),
            ("ipc:///run/a.sock", 0, 2, Some("ipc:///run/a.sock.2")),
            ("ipc:///run/a.sock.2", 2, 0, Some("ipc:///run/a.sock")),
            ("ipc:///run/a.sock.2", 2, 1, Some("ipc:///run/a.sock.1")),
            ("ipc:///run/a.sock", 2, 0, None),
            ("tcp://127.0.0.1:*", 0, 1, None),
            ("tcp://127.0.0.1:0", 0, 1, None),
            ("tcp://127.0.0.1:65535", 0, 1, None),
            ("tcp://127.0.0.1:65534", 0, 1, Some("tcp://127.0.0.1:65535")),
            ("tcp://127.0.0.1:1", 1, 0, None),
            ("tcp://127.0.0.1", 0, 1, None),
            ("inproc://node", 0, 1, None),
        ];
        for (endpoint, from, to, expected) in table {
            let got = sibling(endpoint, from, to);
            assert_eq!(got.as_deref(), expected, "{endpoint} from {from} to {to}");
        }
    }

    #[test]
    fn siblings_skip_the_node_itself_and_name_what_cannot_be_placed() {
        let reactors = Reactors { index: 1, count: 3 };
        let got = siblings("tcp://127.0.0.1:7101", reactors);
        let want = [
            Ok("tcp://127.0.0.1:7100".to_owned()),
            Ok("tcp://127.0.0.1:7102".to_owned()),
        ];
        assert_eq!(got, want);
        assert_eq!(siblings("ipc:///x", reactors), [Err(0), Err(2)]);
        assert!(siblings("tcp://127.0.0.1:7100", Reactors::ALONE).is_empty());
    }
}
