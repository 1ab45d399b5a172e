//! The domain clock: wall time scaled by `time_scale` around an anchor that is
//! kept in the database, so simulated time carries on across restarts.

use crate::domain::Millis;
use crate::store::{Store, StoreError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    anchor_wall_ms: Millis,
    anchor_sim_ms: Millis,
    scale: f64,
}

const META_KEY: &str = "clock";

fn wall_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

impl Clock {
    /// A clock that starts at the current wall time.
    pub fn new(scale: f64) -> Clock {
        let now = wall_ms();
        Clock {
            anchor_wall_ms: now,
            anchor_sim_ms: now,
            scale,
        }
    }

    /// The clock stored in `store`, carried on; a new one (stored) if there is
    /// none or its scale changed (re-anchored at the stored clock's now).
    pub async fn load(store: &Store, scale: f64) -> Result<Clock, StoreError> {
        let stored = store.get_meta(META_KEY).await?.and_then(|text| {
            let mut parts = text.split(',');
            let wall = parts.next()?.parse().ok()?;
            let sim = parts.next()?.parse().ok()?;
            let stored_scale: f64 = parts.next()?.parse().ok()?;
            Some(Clock {
                anchor_wall_ms: wall,
                anchor_sim_ms: sim,
                scale: stored_scale,
            })
        });
        let clock = match stored {
            Some(clock) if clock.scale == scale => return Ok(clock),
            Some(clock) => Clock {
                anchor_wall_ms: wall_ms(),
                anchor_sim_ms: clock.now_ms(),
                scale,
            },
            None => Clock::new(scale),
        };
        store
            .set_meta(
                META_KEY,
                &format!(
                    "{},{},{}",
                    clock.anchor_wall_ms, clock.anchor_sim_ms, clock.scale
                ),
            )
            .await?;
        Ok(clock)
    }

    pub fn now_ms(&self) -> Millis {
        self.anchor_sim_ms + ((wall_ms() - self.anchor_wall_ms) as f64 * self.scale) as Millis
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Real time that `sim_ms` of domain time takes.
    pub fn real(&self, sim_ms: Millis) -> Duration {
        Duration::from_millis((sim_ms.max(0) as f64 / self.scale) as u64)
    }
}
