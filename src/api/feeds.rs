//! A courier's schedule in the forms couriers' apps read: an iCalendar feed
//! (RFC 5545) and a GeoJSON route (RFC 7946). Pure renderers over the stored
//! stops; the handlers in `ops` authorise and read.
//!
//! Invariant: neither form carries a handoff's proof code (the courier
//! collects it at the stop); both show only the stops they are given.

use crate::domain::{HandoffKind, HandoffState, stop_window};
use crate::store::{HandoffRecord, ScheduledStop};
use chrono::DateTime;
use serde_json::{Value, json};

/// Media type of the iCalendar feed.
pub const ICALENDAR: &str = "text/calendar; charset=utf-8";
/// Media type of the GeoJSON route.
pub const GEOJSON: &str = "application/geo+json";

/// Lines of an iCalendar object are at most this many octets, CRLF excluded.
const MAX_LINE_OCTETS: usize = 75;

/// `20261122T100000Z`: a UTC DATE-TIME.
fn ical_time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// A TEXT value with `\`, `;`, `,` and newlines escaped (RFC 5545 3.3.11).
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            // Other control characters are not allowed in TEXT.
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Appends one content line, folded so no line exceeds 75 octets (a
/// continuation line starts with a space, which counts), never splitting a
/// UTF-8 character, each line ended by CRLF.
pub fn push_line(out: &mut String, line: &str) {
    let mut budget = MAX_LINE_OCTETS;
    let mut used = 0;
    for c in line.chars() {
        if used + c.len_utf8() > budget {
            out.push_str("\r\n ");
            // The leading space takes one octet of the next line.
            budget = MAX_LINE_OCTETS - 1;
            used = 0;
        }
        out.push(c);
        used += c.len_utf8();
    }
    out.push_str("\r\n");
}

fn kind_word(h: &HandoffRecord) -> &'static str {
    match (h.kind, h.return_id.is_some()) {
        (HandoffKind::Pickup, false) => "Pickup",
        (HandoffKind::Dropoff, false) => "Drop-off",
        (HandoffKind::Pickup, true) => "Return pickup",
        (HandoffKind::Dropoff, true) => "Return drop-off",
    }
}

/// Whether `h` is a stop at a factory (a delivery's pickup, a return's
/// drop-off) rather than at the customer.
fn at_factory(h: &HandoffRecord) -> bool {
    (h.kind == HandoffKind::Pickup) == h.return_id.is_none()
}

/// The iCalendar object of `courier`'s `stops`: one VEVENT per stop, its
/// UID the handoff id (stable for the stop's life), DTSTART/DTEND its
/// window in UTC, GEO its place, DESCRIPTION who to meet and how to confirm.
pub fn icalendar(courier: &str, stops: &[ScheduledStop], now_ms: i64) -> String {
    let mut out = String::new();
    let line = |out: &mut String, text: &str| push_line(out, text);
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, "PRODID:-//fabflow//courier schedule//EN");
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "METHOD:PUBLISH");
    line(
        &mut out,
        &format!(
            "X-WR-CALNAME:{}",
            escape_text(&format!("fabflow {courier}"))
        ),
    );
    let stamp = ical_time(now_ms);
    for stop in stops {
        let h = &stop.handoff;
        let (start, end) = stop_window(h.kind, h.eta_ms, stop.deadline_ms);
        let (summary, location, contact) = if at_factory(h) {
            (
                format!(
                    "{}: order {} at factory {}",
                    kind_word(h),
                    h.order_id,
                    h.place
                ),
                format!("Factory {}", h.place),
                format!("the operator at factory {}", h.place),
            )
        } else {
            (
                format!(
                    "{}: order {} {} {}",
                    kind_word(h),
                    h.order_id,
                    if h.return_id.is_some() { "from" } else { "to" },
                    stop.customer_name
                ),
                format!(
                    "{} ({:.5}, {:.5})",
                    stop.customer_name, h.location.lat, h.location.lon
                ),
                stop.customer_name.clone(),
            )
        };
        let code_from = if at_factory(h) {
            "the factory operator"
        } else {
            "the customer"
        };
        let description = format!(
            "{} {} of wave {}\nOrder: {}\nContact: {}\nHandoff: {}\nState: {}\n\
             Confirm with the handoff code {} gives you: POST /v1/handoffs/{}/confirm",
            kind_word(h),
            h.seq + 1,
            h.wave,
            h.order_id,
            contact,
            h.id,
            h.state,
            code_from,
            h.id,
        );
        let status = match h.state {
            HandoffState::Missed | HandoffState::Failed => "CANCELLED",
            HandoffState::Locked => "TENTATIVE",
            HandoffState::Planned | HandoffState::Done => "CONFIRMED",
        };
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}@fabflow", escape_text(&h.id)));
        line(&mut out, &format!("DTSTAMP:{stamp}"));
        line(&mut out, &format!("DTSTART:{}", ical_time(start)));
        line(&mut out, &format!("DTEND:{}", ical_time(end)));
        line(&mut out, &format!("SUMMARY:{}", escape_text(&summary)));
        line(&mut out, &format!("LOCATION:{}", escape_text(&location)));
        line(
            &mut out,
            &format!("GEO:{:.6};{:.6}", h.location.lat, h.location.lon),
        );
        line(
            &mut out,
            &format!("DESCRIPTION:{}", escape_text(&description)),
        );
        line(&mut out, &format!("STATUS:{status}"));
        line(
            &mut out,
            &format!("CATEGORIES:{}", h.kind.as_str().to_uppercase()),
        );
        line(&mut out, &format!("X-FABFLOW-STATE:{}", h.state));
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

/// The GeoJSON FeatureCollection of `courier`'s `stops` (positions
/// `[lon, lat]`): per wave with two stops or more, a LineString through its
/// stops in visiting order (the route's legs); per stop, a Point with its
/// id, kind, order, window, status and sequence.
pub fn geojson(courier: &str, stops: &[ScheduledStop], now_ms: i64) -> Value {
    let mut features = Vec::new();
    let mut waves: Vec<(&str, Vec<[f64; 2]>)> = Vec::new();
    for stop in stops {
        let h = &stop.handoff;
        let position = [h.location.lon, h.location.lat];
        match waves.last_mut() {
            Some((wave, line)) if *wave == h.wave => line.push(position),
            _ => waves.push((&h.wave, vec![position])),
        }
    }
    for (wave, line) in waves {
        if line.len() >= 2 {
            features.push(json!({
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": line},
                "properties": {"courier": courier, "wave": wave, "kind": "route", "stops": line.len()},
            }));
        }
    }
    for stop in stops {
        let h = &stop.handoff;
        let (start, end) = stop_window(h.kind, h.eta_ms, stop.deadline_ms);
        features.push(json!({
            "type": "Feature",
            "id": h.id,
            "geometry": {"type": "Point", "coordinates": [h.location.lon, h.location.lat]},
            "properties": {
                "stop_id": h.id,
                "kind": h.kind,
                "order_id": h.order_id.as_str(),
                "wave": h.wave,
                "sequence": h.seq,
                "place": h.place,
                "contact": if at_factory(h) {
                    format!("factory {}", h.place)
                } else {
                    stop.customer_name.clone()
                },
                "eta": DateTime::from_timestamp_millis(h.eta_ms),
                "window_start": DateTime::from_timestamp_millis(start),
                "window_end": DateTime::from_timestamp_millis(end),
                "status": h.state,
            },
        }));
    }
    json!({
        "type": "FeatureCollection",
        "features": features,
        "properties": {"courier": courier, "generated_at": DateTime::from_timestamp_millis(now_ms)},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape_text("a\\b;c,d\ne\r"), "a\\\\b\\;c\\,d\\ne");
    }

    #[test]
    fn long_lines_fold_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let text = format!("DESCRIPTION:{}", "é".repeat(100));
        push_line(&mut out, &text);
        let lines: Vec<&str> = out.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(lines.len() > 1);
        for line in &lines {
            assert!(line.len() <= 75, "{} octets: {line}", line.len());
        }
        let unfolded = out.replace("\r\n ", "");
        assert_eq!(unfolded, format!("{text}\r\n"));
        let mut short = String::new();
        push_line(&mut short, "VERSION:2.0");
        assert_eq!(short, "VERSION:2.0\r\n");
    }
}
