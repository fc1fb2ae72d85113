//! Holding departures back: `channel_vacated` and `member_removed` wait
//! for the debounce delay and are dropped, together with the
//! `channel_occupied` / `member_added` that cancels them, when the channel
//! is occupied again or the member is back in time. A page reload then
//! produces no webhook at all. (The cluster does the same in Redis, see
//! `adapter::redis::scripts`.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::protocol::webhook::{Event, Kind};

/// What pairs an arrival with the departure it cancels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    member: bool,
    channel: Box<str>,
    user_id: Option<Box<str>>,
}

impl Key {
    fn of(event: &Event) -> Option<Key> {
        let member = match event.kind {
            Kind::ChannelOccupied | Kind::ChannelVacated => false,
            Kind::MemberAdded | Kind::MemberRemoved => true,
            _ => return None,
        };
        Some(Key {
            member,
            channel: event.channel.clone(),
            user_id: event.user_id.clone(),
        })
    }
}

/// The departures being held.
#[derive(Debug)]
pub struct Debouncer {
    delay: Duration,
    held: HashMap<Key, (Instant, Event)>,
    /// Most departures held at once; beyond it they go out at once (a
    /// flood of departures costs webhooks, never unbounded memory).
    max_held: usize,
}

impl Debouncer {
    pub fn new(delay: Duration, max_held: usize) -> Self {
        Debouncer {
            delay,
            held: HashMap::new(),
            max_held,
        }
    }

    /// Takes an event; returns it when it goes out now.
    pub fn offer(&mut self, event: Event, now: Instant) -> Option<Event> {
        let Some(key) = Key::of(&event).filter(|_| !self.delay.is_zero()) else {
            return Some(event);
        };
        if event.kind.is_departure() {
            if self.held.len() >= self.max_held {
                return Some(event);
            }
            self.held.insert(key, (now + self.delay, event));
            return None;
        }
        // An arrival that cancels a held departure: neither is sent.
        match self.held.remove(&key) {
            Some(_) => None,
            None => Some(event),
        }
    }

    /// The held departures whose time has come, oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<Event> {
        let mut due: Vec<(Instant, Event)> = Vec::new();
        self.held.retain(|_, (at, event)| {
            if *at <= now {
                due.push((*at, event.clone()));
                false
            } else {
                true
            }
        });
        due.sort_by_key(|(at, _)| *at);
        due.into_iter().map(|(_, e)| e).collect()
    }

    /// When the next held departure is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.values().map(|(at, _)| *at).min()
    }

    /// Every held departure, now (shutdown: nobody comes back here).
    pub fn release_all(&mut self) -> Vec<Event> {
        self.due(Instant::now() + self.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quick_return_cancels_both() {
        let mut d = Debouncer::new(Duration::from_secs(3), 100);
        let t = Instant::now();
        assert!(d
            .offer(Event::member_removed("presence-a", "1"), t)
            .is_none());
        assert!(d.offer(Event::channel_vacated("presence-a"), t).is_none());
        assert!(d
            .offer(
                Event::member_added("presence-a", "1"),
                t + Duration::from_secs(1)
            )
            .is_none());
        assert!(d
            .offer(
                Event::channel_occupied("presence-a"),
                t + Duration::from_secs(2)
            )
            .is_none());
        assert_eq!(d.due(t + Duration::from_secs(10)), vec![]);
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn a_departure_goes_out_after_the_delay() {
        let mut d = Debouncer::new(Duration::from_secs(3), 100);
        let t = Instant::now();
        assert!(d
            .offer(Event::member_removed("presence-a", "1"), t)
            .is_none());
        // Another user's arrival does not cancel it.
        let other = Event::member_added("presence-a", "2");
        assert_eq!(d.offer(other.clone(), t), Some(other));
        assert_eq!(d.due(t + Duration::from_secs(2)), vec![]);
        assert_eq!(d.next_due(), Some(t + Duration::from_secs(3)));
        assert_eq!(
            d.due(t + Duration::from_secs(3)),
            vec![Event::member_removed("presence-a", "1")]
        );
        // Once sent, an arrival is new again.
        let back = Event::member_added("presence-a", "1");
        assert_eq!(
            d.offer(back.clone(), t + Duration::from_secs(4)),
            Some(back)
        );
    }

    #[test]
    fn other_events_and_no_delay_pass_through() {
        let mut d = Debouncer::new(Duration::from_secs(3), 100);
        let miss = Event::cache_miss("cache-a");
        assert_eq!(d.offer(miss.clone(), Instant::now()), Some(miss));
        let mut d = Debouncer::new(Duration::ZERO, 100);
        let gone = Event::channel_vacated("a");
        assert_eq!(d.offer(gone.clone(), Instant::now()), Some(gone));
    }

    #[test]
    fn beyond_the_bound_departures_go_out_at_once() {
        let mut d = Debouncer::new(Duration::from_secs(3), 2);
        let t = Instant::now();
        assert!(d.offer(Event::channel_vacated("a"), t).is_none());
        assert!(d.offer(Event::channel_vacated("b"), t).is_none());
        let third = Event::channel_vacated("c");
        assert_eq!(d.offer(third.clone(), t), Some(third));
    }

    #[test]
    fn shutdown_releases_everything_held() {
        let mut d = Debouncer::new(Duration::from_secs(3), 100);
        d.offer(Event::channel_vacated("a"), Instant::now());
        assert_eq!(d.release_all(), vec![Event::channel_vacated("a")]);
    }
}
