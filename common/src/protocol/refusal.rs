//! Telling a peer that one of its messages was refused, so that no refusal is silent at the
//! node that caused it: the coordinator tells a participant, a member or the auditor; they tell
//! the coordinator. At most [`REFUSALS_TOLD`] per connection, so that a peer that keeps sending
//! what is refused cannot make the other write without end.

use super::messages::{Notice, NoticeKind};
use crate::ids::JobId;

/// Refusals told to a peer per connection; later ones are only printed where they happened.
pub const REFUSALS_TOLD: u32 = 8;

/// The longest refusal text sent (a notice is a small message).
pub const MAX_REFUSAL_TEXT: usize = 2000;

/// The refusals told to one peer on its current connection (start a new count on a new
/// connection).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefusalsTold(u32);

impl RefusalsTold {
    /// The notice telling the peer `text` (the reason and what to do), or `None` once
    /// [`REFUSALS_TOLD`] were told on this connection; the last one told says so.
    pub fn notice(&mut self, job: &JobId, round: Option<u32>, text: &str) -> Option<Notice> {
        self.0 = self.0.saturating_add(1);
        if self.0 > REFUSALS_TOLD {
            return None;
        }
        let more = if self.0 == REFUSALS_TOLD {
            " (further refusals on this connection are not told)"
        } else {
            ""
        };
        let text: String = text.chars().take(MAX_REFUSAL_TEXT).collect();
        Some(Notice {
            job: job.clone(),
            round,
            kind: NoticeKind::MessageRefused,
            text: format!("{text}{more}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_up_to_the_cap_and_the_last_says_so() {
        let job = JobId::new("j").expect("id");
        let mut told = RefusalsTold::default();
        let notices: Vec<Notice> = (0..REFUSALS_TOLD + 5)
            .filter_map(|_| told.notice(&job, Some(3), &"x".repeat(MAX_REFUSAL_TEXT + 10)))
            .collect();
        assert_eq!(notices.len(), REFUSALS_TOLD as usize);
        assert!(notices.iter().all(|n| n.kind == NoticeKind::MessageRefused
            && n.round == Some(3)
            && n.text.starts_with(&"x".repeat(MAX_REFUSAL_TEXT))));
        assert!(!notices[0].text.contains("further"));
        assert!(notices[notices.len() - 1].text.ends_with("are not told)"));
        assert_eq!(told.notice(&job, None, "y"), None);
        let mut fresh = RefusalsTold::default();
        assert!(
            fresh.notice(&job, None, "y").is_some(),
            "a new connection counts anew"
        );
    }
}
