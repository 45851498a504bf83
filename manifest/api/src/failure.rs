//! Why a request to the daemon failed (feature `client`), in terms a script can act
//! on: no daemon, the daemon's refusal with its error code, a bad answer, another
//! identity than the one pinned, or a token that would cross the network in the clear.

use hyper::StatusCode;

use crate::fingerprint::Fingerprint;
use crate::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("cannot reach fvfsd at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{detail}")]
    Refused {
        status: StatusCode,
        error: ErrorCode,
        detail: String,
    },
    #[error("unexpected answer from fvfsd: {0}")]
    Protocol(String),
    /// The daemon at `url` presented another certificate than the one pinned.
    #[error("the daemon at {url} presented certificate {presented}, but this device pinned {pinned} for it: \
             someone else may be answering there. If that daemon was reinstalled, check the fingerprint \
             `fvfsd pair` prints on it and run `fvfsc pair {url} --fingerprint FINGERPRINT`")]
    Identity {
        url: String,
        pinned: Fingerprint,
        presented: Fingerprint,
    },
    /// A token would travel in the clear to another machine.
    #[error(
        "fvfsc sends its token over plain HTTP only to this machine: use https:// for {url} \
             (`fvfsd pair` on the daemon prints the address and fingerprint)"
    )]
    Insecure { url: String },
}

impl Failure {
    /// The exit code: 3 not found, 1 refused otherwise, 2 no daemon or bad answer.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused { status, .. } if *status == StatusCode::NOT_FOUND => 3,
            Failure::Refused { .. } => 1,
            _ => 2,
        }
    }
}
