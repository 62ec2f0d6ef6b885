//! Close status codes (RFC 6455 section 7.4).

/// A close status code, as carried in the first two bytes of a Close frame's
/// payload (RFC 6455 section 5.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the peer sent a data type this endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. Reported locally, never sent
    /// (RFC 6455 section 7.4.1).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a Close frame. Reported locally,
    /// never sent (RFC 6455 section 7.4.1).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data did not match its type (e.g. bad UTF-8 text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later, e.g. the server is overloaded (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// May this code appear in a Close frame received from a peer?
    ///
    /// RFC 6455 section 7.4 plus the IANA registry: 1000-1003 and 1007-1014
    /// are assigned for the wire; 1004 is reserved; 1005, 1006 and 1015 are
    /// local-only; 1016-2999 are reserved for future RFCs; 3000-4999 belong to
    /// libraries and applications; 0-999 and 5000 up are never used.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_follows_the_registry() {
        let table: &[(u16, bool)] = &[
            (0, false),
            (999, false),
            (1000, true),
            (1001, true),
            (1002, true),
            (1003, true),
            (1004, false),
            (1005, false),
            (1006, false),
            (1007, true),
            (1008, true),
            (1009, true),
            (1010, true),
            (1011, true),
            (1012, true),
            (1013, true),
            (1014, true),
            (1015, false),
            (1016, false),
            (2999, false),
            (3000, true),
            (4999, true),
            (5000, false),
            (u16::MAX, false),
        ];
        for &(code, valid) in table {
            assert_eq!(CloseCode(code).is_valid_on_wire(), valid, "code {code}");
        }
    }

    #[test]
    fn named_codes_have_their_numbers() {
        let table = [
            (CloseCode::NORMAL, 1000),
            (CloseCode::GOING_AWAY, 1001),
            (CloseCode::PROTOCOL_ERROR, 1002),
            (CloseCode::UNSUPPORTED_DATA, 1003),
            (CloseCode::NO_STATUS, 1005),
            (CloseCode::ABNORMAL, 1006),
            (CloseCode::INVALID_PAYLOAD, 1007),
            (CloseCode::POLICY_VIOLATION, 1008),
            (CloseCode::MESSAGE_TOO_BIG, 1009),
            (CloseCode::MANDATORY_EXTENSION, 1010),
            (CloseCode::INTERNAL_ERROR, 1011),
            (CloseCode::SERVICE_RESTART, 1012),
            (CloseCode::TRY_AGAIN_LATER, 1013),
        ];
        for (code, number) in table {
            assert_eq!(code.0, number);
        }
    }
}
