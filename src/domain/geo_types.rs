//! Places: a point on the map and the zones fabflow serves.

use geo::{Contains, Distance, Haversine, Point, Polygon};
use serde::{Deserialize, Serialize};

/// A WGS84 point in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

impl Location {
    pub fn new(lat: f64, lon: f64) -> Self {
        Self { lat, lon }
    }

    pub fn point(self) -> Point<f64> {
        Point::new(self.lon, self.lat)
    }

    /// Great-circle distance in metres.
    pub fn distance_m(self, other: Location) -> f64 {
        Haversine.distance(self.point(), other.point())
    }

    pub fn is_valid(self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
    }
}

/// A served area: deliveries inside its polygon are accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub id: String,
    pub area: Polygon<f64>,
}

impl Zone {
    /// A zone from its boundary as `[lat, lon]` corners (closed automatically).
    pub fn from_corners(id: impl Into<String>, corners: &[Location]) -> Self {
        let ring: Vec<(f64, f64)> = corners.iter().map(|c| (c.lon, c.lat)).collect();
        Self {
            id: id.into(),
            area: Polygon::new(ring.into(), vec![]),
        }
    }

    pub fn contains(&self, location: Location) -> bool {
        self.area.contains(&location.point())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_distance_is_about_right() {
        // Berlin Alexanderplatz to Brandenburger Tor: about 2.3 km.
        let alex = Location::new(52.5219, 13.4132);
        let gate = Location::new(52.5163, 13.3777);
        let d = alex.distance_m(gate);
        assert!((2_300.0..2_600.0).contains(&d), "{d}");
        assert_eq!(alex.distance_m(alex), 0.0);
    }

    #[test]
    fn zone_contains() {
        let zone = Zone::from_corners(
            "centre",
            &[
                Location::new(52.0, 13.0),
                Location::new(52.0, 14.0),
                Location::new(53.0, 14.0),
                Location::new(53.0, 13.0),
            ],
        );
        assert!(zone.contains(Location::new(52.5, 13.4)));
        assert!(!zone.contains(Location::new(51.9, 13.4)));
        assert!(!zone.contains(Location::new(52.5, 14.5)));
    }

    #[test]
    fn validity() {
        assert!(Location::new(52.5, 13.4).is_valid());
        assert!(!Location::new(91.0, 0.0).is_valid());
        assert!(!Location::new(f64::NAN, 0.0).is_valid());
    }
}
