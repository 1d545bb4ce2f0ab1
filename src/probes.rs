//! Pings and update requests as the API speaks of them: a member queues
//! one (`/api/runtimes/{id}/ping|update`), the daemon's next heartbeat
//! takes it, the daemon reports its result. Where they are kept and the
//! rules on their number and their timeouts are the store's
//! (`store::probes`); here are the limits on what a request may put in
//! one and the errors people read.
//!
//! A daemon's output and error are kept up to [`MAX_TEXT`] bytes each, a
//! target version up to [`MAX_TARGET_VERSION`] bytes.

use crate::domain::{ProbeKind, ProbeStatus};
use crate::error::ApiError;
use crate::store::probes::Refused;

/// Bytes of a daemon's output (or error) kept per probe; the rest is cut
/// off and [`TRUNCATED`] appended, so the reader sees that it was. A ping
/// or update says whether it worked, not a whole log.
pub const MAX_TEXT: usize = 8 * 1024;

pub const TRUNCATED: &str = "\n[truncated: longer than 8 KiB]";

/// Longest `target_version` of an update, in bytes: a version string.
pub const MAX_TARGET_VERSION: usize = 128;

/// `text` cut to at most [`MAX_TEXT`] bytes (marker included) at a
/// character boundary: for text daemons report that people only read.
pub fn clip(mut text: String) -> String {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT - TRUNCATED.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(TRUNCATED);
    text
}

/// Why a new probe was refused: 409 for a second open update, 429 while
/// too many are open (the daemon is not answering; try again later).
pub fn refused(kind: ProbeKind, why: Refused) -> ApiError {
    match why {
        Refused::UpdateOpen => ApiError::conflict("an update is already pending for this runtime"),
        Refused::RuntimeFull => {
            ApiError::TooManyRequests(format!("too many {kind}s pending for this runtime"))
        }
        Refused::AllFull => ApiError::TooManyRequests(
            "too many pings and updates pending; try again shortly".to_string(),
        ),
    }
}

/// 404 for a probe the caller asked about that is not there.
pub fn not_found(kind: ProbeKind) -> ApiError {
    ApiError::not_found(format!("{kind} not found"))
}

/// 409 for a result of a probe that has ended.
pub fn already_ended(kind: ProbeKind, status: ProbeStatus) -> ApiError {
    ApiError::conflict(format!("{kind} already finished with status {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_a_character_boundary_with_a_marker() {
        let cut = clip("é".repeat(MAX_TEXT));
        assert!(cut.len() <= MAX_TEXT);
        assert!(cut.ends_with(TRUNCATED));
        assert_eq!(clip("short".to_string()), "short");
    }
}
