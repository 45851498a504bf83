//! The error codes of the API: every error answer is `{"error": CODE, "detail": TEXT}`
//! with the HTTP status its code implies, and clients act on the code, never on text.

use serde::{Deserialize, Serialize};

/// What went wrong, as the daemon names it in an error answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    BadPath,
    /// A name over 255 bytes or a path over 4,095 (or 32 KiB where only read), which
    /// local file systems could not hold.
    NameTooLong,
    BadName,
    BadFrame,
    BadNode,
    BadBatch,
    HashMismatch,
    NotANode,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotADirectory,
    IsADirectory,
    IsASymlink,
    /// A FIFO, socket or device: a name without content to read.
    NotAFile,
    NotEmpty,
    Exists,
    /// A commit names chunks the daemon does not hold: upload them first.
    MissingChunks,
    Busy,
    /// A write that expected what its path held (`expect`) found something else there:
    /// another device changed the file since.
    Conflict,
    TooLarge,
    NoSpace,
    Corrupt,
    IoError,
    DbError,
    EvictFailed,
    Unavailable,
    TierUnavailable,
    /// The daemon failed in a way no other code names.
    Internal,
    /// A code this client does not know (a newer daemon), or an answer without one.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status of an answer with this code.
    pub fn status(self) -> u16 {
        use ErrorCode as E;
        match self {
            E::BadRequest
            | E::BadPath
            | E::NameTooLong
            | E::BadName
            | E::BadFrame
            | E::BadNode
            | E::BadBatch
            | E::HashMismatch
            | E::NotANode => 400,
            E::Unauthorized => 401,
            E::Forbidden => 403,
            E::NotFound => 404,
            E::MethodNotAllowed => 405,
            E::NotADirectory
            | E::IsADirectory
            | E::IsASymlink
            | E::NotAFile
            | E::NotEmpty
            | E::Exists
            | E::MissingChunks
            | E::Busy
            | E::Conflict => 409,
            E::TooLarge => 413,
            E::NoSpace => 507,
            E::Unavailable | E::TierUnavailable => 503,
            E::Corrupt | E::IoError | E::DbError | E::EvictFailed | E::Internal | E::Unknown => 500,
        }
    }
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_travel_as_snake_case_and_unknown_ones_still_read() {
        let body = ErrorBody {
            error: ErrorCode::MissingChunks,
            detail: "upload these first".into(),
        };
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            r#"{"error":"missing_chunks","detail":"upload these first"}"#
        );
        assert_eq!(serde_json::from_str::<ErrorBody>(&json).unwrap(), body);
        let newer: ErrorBody =
            serde_json::from_str(r#"{"error":"quota_exceeded","detail":"x"}"#).unwrap();
        assert_eq!(newer.error, ErrorCode::Unknown);
        assert_eq!(ErrorCode::NotFound.status(), 404);
        assert_eq!(ErrorCode::NoSpace.status(), 507);
    }
}
