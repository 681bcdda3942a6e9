//! Kafka error codes as readable messages: `MESSAGE_TOO_LARGE (code 10): batch of 5070 bytes
//! exceeds max.message.bytes 1000`: the one place a client maps codes to words.
//!
//! The name comes from `kafka_protocol::ResponseError` (converted to Kafka's own spelling); the
//! explanation, for the codes a CLI user meets, from [`explanation`].

use kafka_protocol::ResponseError;

/// `code` (non-zero) as `NAME (code N): detail`, the detail being the broker's message if it sent
/// one, else a short explanation of the code if there is one.
#[must_use]
pub fn describe(code: i16, message: Option<&str>) -> String {
    let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code));
    let name = match error {
        ResponseError::Unknown(_) => "UNKNOWN_ERROR".to_owned(),
        known => screaming_snake(&known.to_string()),
    };
    // The broker's own message is the most specific; the explanation stands in for it.
    match message.map(str::trim).filter(|m| !m.is_empty()).or(explanation(code)) {
        Some(detail) => format!("{name} (code {code}): {detail}"),
        None => format!("{name} (code {code})"),
    }
}

/// `MessageTooLarge` → `MESSAGE_TOO_LARGE`, as Kafka's documentation and tools name errors.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// What the errors a CLI user is likely to meet mean, in a few words.
fn explanation(code: i16) -> Option<&'static str> {
    Some(match code {
        -1 => "the broker hit an unexpected error",
        1 => "the offset is outside the partition's range",
        2 => "a record failed its checksum or is malformed",
        3 => "the topic or partition does not exist",
        6 => "the broker is not the partition's leader",
        7 => "the request timed out on the broker; the outcome is unknown",
        10 => "a record batch is larger than the topic's max.message.bytes",
        17 => "the topic name is invalid",
        21 => "acks must be 0, 1 or all (-1)",
        35 => "the broker does not support this request version",
        36 => "the topic already exists",
        37 => "the partition count is invalid",
        38 => "the replication factor is invalid",
        40 => "a config name or value is invalid",
        42 => "the request is invalid",
        44 => "the request violates a broker policy",
        56 => "the broker's storage failed",
        87 => "a record is invalid",
        100 => "the topic id is unknown",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka() {
        assert_eq!(
            describe(10, Some("batch of 5061 bytes")),
            "MESSAGE_TOO_LARGE (code 10): batch of 5061 bytes"
        );
        assert_eq!(
            describe(3, None),
            "UNKNOWN_TOPIC_OR_PARTITION (code 3): the topic or partition does not exist"
        );
        assert_eq!(
            describe(56, Some("  ")),
            "KAFKA_STORAGE_ERROR (code 56): the broker's storage failed"
        );
        assert_eq!(describe(12345, None), "UNKNOWN_ERROR (code 12345)");
    }
}
