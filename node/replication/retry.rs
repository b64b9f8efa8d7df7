//! Retrying until a deadline: the loop every wait for a leader, a forwarded write or
//! a member's answer shares, written once.

use std::future::Future;
use std::time::{Duration, Instant};

/// How [`until_deadline`] spaces its tries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spacing {
    /// Between two tries.
    pub pause: Duration,
    /// No new try once less than this is left before the deadline.
    pub margin: Duration,
}

impl Spacing {
    /// The same pause and margin.
    pub const fn every(pause: Duration) -> Spacing {
        Spacing {
            pause,
            margin: pause,
        }
    }
}

/// Calls `attempt` until it answers `Ok`, pausing between tries. Gives up with the
/// last try's failure once less than the margin is left before `deadline`.
pub(crate) async fn until_deadline<T, F, Fut>(
    deadline: Instant,
    spacing: Spacing,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, F>
where
    Fut: Future<Output = Result<T, F>>,
{
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(failure) => {
                if Instant::now() + spacing.margin >= deadline {
                    return Err(failure);
                }
                tokio::time::sleep(spacing.pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{until_deadline, Spacing};
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn it_retries_until_an_answer() {
        let mut tries = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        let answer: Result<u32, String> =
            until_deadline(deadline, Spacing::every(Duration::from_millis(1)), || {
                tries += 1;
                let now = tries;
                async move {
                    if now < 3 {
                        Err(format!("try {now}"))
                    } else {
                        Ok(now)
                    }
                }
            })
            .await;
        assert_eq!(answer, Ok(3));
    }

    #[tokio::test]
    async fn it_gives_up_with_the_last_failure_at_the_deadline() {
        let mut tries = 0;
        let deadline = Instant::now() + Duration::from_millis(30);
        let answer: Result<(), String> =
            until_deadline(deadline, Spacing::every(Duration::from_millis(5)), || {
                tries += 1;
                let now = tries;
                async move { Err(format!("try {now}")) }
            })
            .await;
        assert_eq!(answer, Err(format!("try {tries}")));
        assert!(tries >= 2, "{tries}");
    }

    #[tokio::test]
    async fn no_try_starts_inside_the_margin() {
        let mut tries = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let spacing = Spacing {
            pause: Duration::from_millis(1),
            margin: Duration::from_secs(120),
        };
        let answer: Result<(), u32> = until_deadline(deadline, spacing, || {
            tries += 1;
            let now = tries;
            async move { Err(now) }
        })
        .await;
        // Less than the margin was left after the first try: no second one.
        assert_eq!(answer, Err(1));
    }
}
