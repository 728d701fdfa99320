//! Why a command failed, what to do about it, and the exit code that tells a script which
//! kind of failure it was.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done |
//! | 1 | the API refused the request (4xx other than 401/403): fix the input |
//! | 2 | the command line or an input file is wrong (nothing was sent) |
//! | 3 | no answer, the API failed (5xx) or asked to slow down (429): trying again later may work |
//! | 4 | the token was refused (401/403) |

use std::fmt;

use crate::client::Answer;

pub const REFUSED: u8 = 1;
pub const USAGE: u8 = 2;
pub const UNAVAILABLE: u8 = 3;
pub const UNAUTHORIZED: u8 = 4;

#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: USAGE,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: UNAVAILABLE,
            message: message.into(),
        }
    }

    /// A failure for an answer that was not a success.
    pub fn answered(doing: &str, answer: &Answer) -> Self {
        let code = match answer.status {
            401 | 403 => UNAUTHORIZED,
            // Too many requests this second: nothing wrong with the input.
            429 => UNAVAILABLE,
            400..=499 => REFUSED,
            _ => UNAVAILABLE,
        };
        Self {
            code,
            message: format!("{doing}: {}", answer.explain()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<anyhow::Error> for Failure {
    /// An error before any answer: the call could not be made or got no answer.
    fn from(e: anyhow::Error) -> Self {
        Self::unavailable(format!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_of_answer_has_its_code() {
        let answer = |status| Answer {
            status,
            body: json!({"error": {"code": "x", "message": "y"}}),
            retry_after: None,
        };
        assert_eq!(Failure::answered("a", &answer(422)).code, REFUSED);
        assert_eq!(Failure::answered("a", &answer(404)).code, REFUSED);
        assert_eq!(Failure::answered("a", &answer(401)).code, UNAUTHORIZED);
        assert_eq!(Failure::answered("a", &answer(403)).code, UNAUTHORIZED);
        assert_eq!(Failure::answered("a", &answer(503)).code, UNAVAILABLE);
        assert_eq!(Failure::answered("a", &answer(429)).code, UNAVAILABLE);
        let failure = Failure::answered("creating the subscription", &answer(422));
        assert!(
            failure
                .message
                .starts_with("creating the subscription: 422")
        );
    }
}
