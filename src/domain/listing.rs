//! What a user sees of their own sessions: where each was started
//! ([`SessionOrigin`]), one live session as listed ([`SessionSummary`]),
//! and the position a page of the list ends at ([`SessionCursor`]).

use super::{SessionId, UserId};

/// The longest User-Agent kept with a session, in characters (the
/// database checks the same bound).
pub(super) const USER_AGENT_MAX_CHARS: usize = 256;

/// Where a session was started, as authd saw it at sign-in, sign-up or
/// password change: the client address (the peer, or what a trusted proxy
/// reports) and the User-Agent header, cut to [`USER_AGENT_MAX_CHARS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOrigin {
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
}

impl SessionOrigin {
    /// From the client address and the raw User-Agent header (any bytes:
    /// invalid UTF-8 is replaced, control characters are dropped, and an
    /// empty value is none).
    pub fn new(client: std::net::IpAddr, user_agent: Option<&[u8]>) -> Self {
        let user_agent = user_agent
            .map(|raw| {
                String::from_utf8_lossy(raw)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(USER_AGENT_MAX_CHARS)
                    .collect::<String>()
            })
            .map(|ua| ua.trim().to_owned())
            .filter(|ua| !ua.is_empty());
        SessionOrigin {
            client_address: Some(client.to_string()),
            user_agent,
        }
    }
}

/// One live session of a user, as `GET /sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub id: SessionId,
    pub created_at_ms: i64,
    /// When the live token was issued: the last refresh, or the start.
    pub issued_at_ms: i64,
    /// 0 until the first refresh.
    pub generation: u32,
    pub expires_at_ms: i64,
    pub origin: SessionOrigin,
}

impl SessionSummary {
    /// Where a page ending with this session ends.
    pub fn cursor(&self, user_id: UserId) -> SessionCursor {
        SessionCursor {
            user_id,
            created_at_ms: self.created_at_ms,
            id: self.id,
        }
    }
}

/// The position after which the next page of a user's sessions starts
/// (newest first: sessions created before `created_at_ms`, ties by id).
/// It names its user, so a cursor is only ever valid for that user; to the
/// client it is an opaque string ([`SessionCursor::encode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCursor {
    pub user_id: UserId,
    pub created_at_ms: i64,
    pub id: SessionId,
}

impl SessionCursor {
    /// `<user uuid>.<created_at_ms>.<session uuid>`, base64url without padding.
    pub fn encode(&self) -> String {
        use base64::Engine;
        let text = format!(
            "{}.{}.{}",
            self.user_id.0.simple(),
            self.created_at_ms,
            self.id.0.simple()
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    /// `None` for anything [`encode`](Self::encode) did not produce.
    pub fn decode(text: &str) -> Option<Self> {
        use base64::Engine;
        if text.len() > 128 {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.split('.');
        let (user, created, id) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(SessionCursor {
            user_id: UserId(uuid::Uuid::try_parse(user).ok()?),
            created_at_ms: created.parse().ok()?,
            id: SessionId(uuid::Uuid::try_parse(id).ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = SessionCursor {
            user_id: UserId::new_random(),
            created_at_ms: 1_700_000_000_123,
            id: SessionId::new_random(),
        };
        assert_eq!(SessionCursor::decode(&cursor.encode()), Some(cursor));
        for garbage in ["", "x", "!!!", "YQ", &"A".repeat(200)] {
            assert_eq!(SessionCursor::decode(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn user_agents_are_bounded_and_cleaned() {
        let ip = "10.0.0.1".parse().unwrap();
        let long = vec![b'a'; 1000];
        let origin = SessionOrigin::new(ip, Some(&long));
        assert_eq!(
            origin.user_agent.unwrap().chars().count(),
            USER_AGENT_MAX_CHARS
        );
        let odd = SessionOrigin::new(ip, Some(b"curl/8\x00\xff"));
        assert_eq!(odd.user_agent.as_deref(), Some("curl/8\u{fffd}"));
        assert_eq!(SessionOrigin::new(ip, Some(b"  ")).user_agent, None);
        assert_eq!(origin.client_address.as_deref(), Some("10.0.0.1"));
    }
}
