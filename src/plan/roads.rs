//! Road travel for the waves from an OSRM `table` response: durations
//! (and distances) between fixed waypoints, each row's place given by the
//! response's `sources`. A wave's point (a courier, a factory, a customer)
//! is snapped to its nearest waypoint; travel between two points is the
//! table's, plus the way to and from the waypoints at the configured speed
//! and detour. Pure: the caller reads the file.
//!
//! Invariants (tested): the matrix is square over the wave's points with a
//! zero diagonal; a point on a waypoint travels exactly the table's times;
//! a route the table has no road for stays unreachable.

use super::vrp::{Matrix, ModelError, Table, haversine_metres};

/// Road times and distances between known waypoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Roads {
    waypoints: Vec<(f64, f64)>,
    durations: Vec<Vec<f64>>,
    distances: Vec<Vec<f64>>,
}

impl Roads {
    /// From a parsed table; refused without waypoints (nothing says which
    /// place a row is) or without any.
    pub fn from_table(table: &Table) -> Result<Roads, String> {
        let Some(waypoints) = table.waypoints.clone() else {
            return Err(
                "no `sources` (or `destinations`) with a `location` for each row: cannot tell which place a row is"
                    .to_string(),
            );
        };
        if waypoints.is_empty() {
            return Err("an empty table".to_string());
        }
        Ok(Roads {
            waypoints,
            durations: table.durations.clone(),
            // Without distances, seconds stand in for metres (the router
            // then minimises time).
            distances: table
                .distances
                .clone()
                .unwrap_or_else(|| table.durations.clone()),
        })
    }

    /// How many waypoints the table has.
    pub fn len(&self) -> usize {
        self.waypoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waypoints.is_empty()
    }

    /// The nearest waypoint to `at`, and how far it is (metres, great circle).
    pub fn snap(&self, at: (f64, f64)) -> (usize, f64) {
        self.waypoints
            .iter()
            .enumerate()
            .map(|(index, &w)| (index, haversine_metres(at, w)))
            .fold((0, f64::INFINITY), |best, next| {
                if next.1 < best.1 { next } else { best }
            })
    }

    /// The travel matrix over `points` (`(lat, lon)`): the table between
    /// their nearest waypoints, plus the detoured way to and from them at
    /// `speed_m_per_s` with roads `detour_factor` longer than the crow flies.
    pub fn matrix(
        &self,
        points: &[(f64, f64)],
        speed_m_per_s: f64,
        detour_factor: f64,
    ) -> Result<Matrix, ModelError> {
        let snapped: Vec<(usize, f64)> = points
            .iter()
            .map(|&p| {
                let (index, metres) = self.snap(p);
                (index, metres * detour_factor)
            })
            .collect();
        let speed = speed_m_per_s;
        let mut durations = vec![vec![0.0; points.len()]; points.len()];
        let mut distances = vec![vec![0.0; points.len()]; points.len()];
        for (from, &(a, to_a)) in snapped.iter().enumerate() {
            for (to, &(b, from_b)) in snapped.iter().enumerate() {
                if from == to {
                    continue;
                }
                let access = to_a + from_b;
                durations[from][to] = self.durations[a][b] + access / speed;
                distances[from][to] = self.distances[a][b] + access;
            }
        }
        Matrix::from_rows(&durations, Some(&distances))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::vrp::{UNREACHABLE, parse_osrm_table};

    /// A cargo bike: 4.2 m/s, roads 1.3 times the great circle.
    const SPEED: f64 = 4.2;
    const DETOUR: f64 = 1.3;

    fn on(roads: &Roads, points: &[(f64, f64)]) -> Matrix {
        roads.matrix(points, SPEED, DETOUR).expect("matrix")
    }

    /// Three waypoints on a line, one-way slow between the last two.
    const TABLE: &str = r#"{"code":"Ok",
        "durations":[[0,100,200],[100,0,100],[200,900,0]],
        "distances":[[0,1000,2000],[1000,0,1000],[2000,1000,0]],
        "sources":[{"location":[13.40,52.50]},{"location":[13.41,52.50]},{"location":[13.42,52.50]}]}"#;

    fn roads() -> Roads {
        Roads::from_table(&parse_osrm_table(TABLE).expect("parses")).expect("roads")
    }

    #[test]
    fn points_on_waypoints_travel_the_tables_times() {
        let points = [(52.50, 13.40), (52.50, 13.42), (52.50, 13.41)];
        let matrix = on(&roads(), &points);
        assert_eq!(matrix.size(), 3);
        for i in 0..3 {
            assert_eq!(matrix.duration(i, i), 0.0);
        }
        assert!((matrix.duration(0, 1) - 200.0).abs() < 1e-6);
        // The table's one-way slowness shows.
        assert!((matrix.duration(1, 2) - 900.0).abs() < 1e-6);
        assert!((matrix.distance(1, 2) - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn points_off_waypoints_add_the_way_to_them() {
        // 0.001 degrees of latitude north of the first waypoint: about 111 m.
        let points = [(52.501, 13.40), (52.50, 13.41)];
        let matrix = on(&roads(), &points);
        let access = haversine_metres((52.501, 13.40), (52.50, 13.40)) * DETOUR;
        assert!((matrix.distance(0, 1) - (1000.0 + access)).abs() < 1e-6);
        assert!((matrix.duration(0, 1) - (100.0 + access / SPEED)).abs() < 1e-6);
    }

    #[test]
    fn no_road_stays_unreachable_and_tables_without_places_are_refused() {
        let text = r#"{"durations":[[0,null],[null,0]],
            "sources":[{"location":[13.40,52.50]},{"location":[13.41,52.50]}]}"#;
        let roads = Roads::from_table(&parse_osrm_table(text).expect("parses")).expect("roads");
        let matrix = on(&roads, &[(52.50, 13.40), (52.50, 13.41)]);
        assert!(matrix.duration(0, 1) >= UNREACHABLE);
        let bare = parse_osrm_table(r#"{"durations":[[0,1],[1,0]]}"#).expect("parses");
        assert!(Roads::from_table(&bare).unwrap_err().contains("sources"));
        // Not one place per row: the places are unknown.
        let some = r#"{"durations":[[0,1],[1,0]],"sources":[{"location":[13.4,52.5]}]}"#;
        let some = parse_osrm_table(some).expect("parses");
        assert!(Roads::from_table(&some).is_err());
        let wrong = r#"{"durations":[[0,1],[1,0]],"sources":[{"location":[13.4]},{"location":[13.4,52.5]}]}"#;
        assert!(parse_osrm_table(wrong).is_err());
    }
}
