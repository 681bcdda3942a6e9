//! [`ClientError`]: why talking to a broker failed, one variant per thing the caller can do about
//! it, with messages that name the broker and say what happened in lowercase words.

use std::io;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// Why talking to the broker failed. The message names the broker and says what happened.
///
/// After [`ClientError::Timeout`], [`ClientError::Disconnected`] or a [`ClientError::Protocol`]
/// error about a frame, the connection is unusable: every later request on it fails. A caller
/// that wants to go on connects again ([`ClientError::is_retriable`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be established (refused, unresolvable, timed out). Retriable:
    /// the broker may be starting or restarting.
    #[error("cannot reach the broker at {broker}: {reason}")]
    Unreachable {
        /// The bootstrap address as given.
        broker: String,
        /// What went wrong, lowercase.
        reason: String,
    },
    /// No response within the request timeout. The connection is unusable afterwards; the
    /// request's outcome is unknown. Retriable on a new connection.
    #[error("no answer from the broker at {broker} to {} within {} ms", api_name(*api), timeout.as_millis())]
    Timeout {
        /// The broker's address.
        broker: String,
        /// The request's API.
        api: i16,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The connection failed or closed during an exchange. The request's outcome is unknown.
    /// Retriable on a new connection.
    #[error("lost the connection to the broker at {broker} during {}: {reason}", api_name(*api))]
    Disconnected {
        /// The broker's address.
        broker: String,
        /// The request's API.
        api: i16,
        /// What went wrong, lowercase.
        reason: String,
    },
    /// The broker does not serve the API in any version this client speaks. Stop: asking again
    /// cannot help.
    #[error(
        "the broker at {broker} does not support {} in any version this client speaks",
        api_name(*api)
    )]
    Unsupported {
        /// The broker's address.
        broker: String,
        /// The API.
        api: i16,
    },
    /// A frame could not be encoded or decoded, or breaks a limit. Stop: a bug on one side.
    #[error("protocol error talking to the broker at {broker}: {reason}")]
    Protocol {
        /// The broker's address.
        broker: String,
        /// What is wrong.
        reason: String,
    },
}

impl ClientError {
    /// Whether trying again on a new connection may succeed (the broker was unreachable, slow or
    /// went away), as opposed to a mismatch that repeats every time.
    #[must_use]
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::Timeout { .. }
                | ClientError::Disconnected { .. }
        )
    }
}

/// The API's name as `kafka-protocol` spells it (`Produce`, `ApiVersions`).
#[must_use]
pub fn api_name(api: i16) -> String {
    match ApiKey::try_from(api) {
        Ok(key) => format!("{key:?}"),
        Err(()) => format!("api key {api}"),
    }
}

/// An io error in lowercase words, without the `(os error N)` suffix.
pub(crate) fn io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset by the broker".to_owned(),
        io::ErrorKind::UnexpectedEof => "the broker closed the connection".to_owned(),
        io::ErrorKind::BrokenPipe => "the broker closed the connection".to_owned(),
        io::ErrorKind::TimedOut => "timed out".to_owned(),
        _ => {
            let text = error.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
            text.to_lowercase()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_reasons_are_lowercase_without_os_codes() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(io_reason(&refused), "connection refused");
        let other = io::Error::from_raw_os_error(113);
        assert!(!io_reason(&other).contains("os error"), "{}", io_reason(&other));
    }

    #[test]
    fn api_names() {
        assert_eq!(api_name(0), "Produce");
        assert_eq!(api_name(18), "ApiVersions");
        assert_eq!(api_name(-7), "api key -7");
    }

    #[test]
    fn messages_name_the_broker_and_the_api() {
        let timeout =
            ClientError::Timeout { broker: "b:1".into(), api: 1, timeout: Duration::from_secs(2) };
        assert_eq!(timeout.to_string(), "no answer from the broker at b:1 to Fetch within 2000 ms");
        assert!(timeout.is_retriable());
        let unsupported = ClientError::Unsupported { broker: "b:1".into(), api: 0 };
        assert_eq!(
            unsupported.to_string(),
            "the broker at b:1 does not support Produce in any version this client speaks"
        );
        assert!(!unsupported.is_retriable());
    }
}
