//! Readers for the literature's benchmark formats (Solomon VRPTW, Li & Lim
//! PDPTW) and the JSON report the `route` command prints. Pure: they take
//! text and return values. Invariants: a malformed file is an error naming its
//! line and the reason, never a panic; distances are Euclidean, unrounded, and
//! travel time equals distance, as the literature computes them.

use std::fmt;
use std::fmt::Write as _;

use super::instance::{ArcCost, Instance, Matrix, Request, RequestKind, Stop, TimeWindow, Vehicle};
use super::solution::Solution;

/// A file that could not be read: the 1-based line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

fn error(line: usize, reason: impl Into<String>) -> ParseError {
    ParseError {
        line,
        reason: reason.into(),
    }
}

/// A benchmark instance: the model plus the file's node ids, to report routes
/// the way the literature writes them.
#[derive(Debug, Clone)]
pub struct LiteratureInstance {
    pub name: String,
    pub instance: Instance,
    /// File node id of each request's stops: `[id, id]` for a single stop,
    /// `[pickup id, delivery id]` for a pair.
    pub stop_ids: Vec<[usize; 2]>,
}

/// What `route` prints: the literature's measures of a solution.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub instance: String,
    pub vehicles: usize,
    pub distance: f64,
    /// Node ids as in the file, in visiting order, depot excluded.
    pub routes: Vec<Vec<usize>>,
    /// Node ids of the stops of unserved requests.
    pub unserved: Vec<usize>,
}

impl LiteratureInstance {
    /// The solution in file node ids.
    pub fn report(&self, solution: &Solution) -> Report {
        let routes = solution
            .routes
            .iter()
            .map(|route| {
                route
                    .visits
                    .iter()
                    .map(|visit| {
                        let ids = self.stop_ids[visit.request];
                        match visit.role {
                            super::instance::Role::Delivery => ids[1],
                            _ => ids[0],
                        }
                    })
                    .collect()
            })
            .collect();
        let mut unserved: Vec<usize> = solution
            .unserved
            .iter()
            .flat_map(|&request| {
                let ids = self.stop_ids[request];
                if ids[0] == ids[1] {
                    vec![ids[0]]
                } else {
                    vec![ids[0], ids[1]]
                }
            })
            .collect();
        unserved.sort_unstable();
        Report {
            instance: self.name.clone(),
            vehicles: solution.vehicles,
            distance: solution.distance,
            routes,
            unserved,
        }
    }
}

impl Report {
    /// One JSON object: `instance`, `vehicles`, `distance`, `routes`, `unserved`.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        out.push_str("{\"instance\":");
        push_json_string(&mut out, &self.instance);
        let _ = write!(
            out,
            ",\"vehicles\":{},\"distance\":{},\"routes\":[",
            self.vehicles,
            json_number(self.distance)
        );
        for (index, route) in self.routes.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            push_ids(&mut out, route);
        }
        out.push_str("],\"unserved\":");
        push_ids(&mut out, &self.unserved);
        out.push('}');
        out
    }
}

fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        "null".to_string()
    }
}

fn push_ids(out: &mut String, ids: &[usize]) {
    out.push('[');
    for (index, id) in ids.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let _ = write!(out, "{id}");
    }
    out.push(']');
}

fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn number(field: &str, line: usize, what: &str) -> Result<f64, ParseError> {
    match field.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(error(line, format!("{what}: not a number: {field:?}"))),
    }
}

fn whole(field: &str, line: usize, what: &str) -> Result<i64, ParseError> {
    let value = number(field, line, what)?;
    if value.fract() != 0.0 || value.abs() > 1.0e15 {
        return Err(error(
            line,
            format!("{what}: must be a whole number, got {field:?}"),
        ));
    }
    Ok(value as i64)
}

fn index(field: &str, line: usize, what: &str) -> Result<usize, ParseError> {
    let value = whole(field, line, what)?;
    usize::try_from(value).map_err(|_| error(line, format!("{what}: must be >= 0, got {field:?}")))
}

/// One node row, common to both formats.
struct Row {
    line: usize,
    id: usize,
    x: f64,
    y: f64,
    demand: i64,
    ready: f64,
    due: f64,
    service: f64,
    pickup: usize,
    delivery: usize,
}

fn row(fields: &[&str], line: usize, li_lim: bool) -> Result<Row, ParseError> {
    let expected = if li_lim { 9 } else { 7 };
    if fields.len() != expected {
        return Err(error(
            line,
            format!(
                "expected {expected} fields (id, x, y, demand, ready, due, service{}), got {}",
                if li_lim { ", pickup, delivery" } else { "" },
                fields.len()
            ),
        ));
    }
    let row = Row {
        line,
        id: index(fields[0], line, "node id")?,
        x: number(fields[1], line, "x")?,
        y: number(fields[2], line, "y")?,
        demand: whole(fields[3], line, "demand")?,
        ready: number(fields[4], line, "ready time")?,
        due: number(fields[5], line, "due date")?,
        service: number(fields[6], line, "service time")?,
        pickup: if li_lim {
            index(fields[7], line, "pickup index")?
        } else {
            0
        },
        delivery: if li_lim {
            index(fields[8], line, "delivery index")?
        } else {
            0
        },
    };
    if row.ready > row.due {
        return Err(error(
            line,
            format!("ready time {} is after due date {}", row.ready, row.due),
        ));
    }
    if row.service < 0.0 {
        return Err(error(
            line,
            format!("service time {} is negative", row.service),
        ));
    }
    Ok(row)
}

/// Checks ids: the first row is the depot (id 0), ids are unique and dense.
fn check_ids(rows: &[Row], last_line: usize) -> Result<(), ParseError> {
    let Some(depot) = rows.first() else {
        return Err(error(last_line, "no node rows"));
    };
    if depot.id != 0 {
        return Err(error(
            depot.line,
            format!("the first node must be the depot, id 0, got {}", depot.id),
        ));
    }
    let mut seen = vec![false; rows.len()];
    for row in rows {
        if row.id >= rows.len() {
            return Err(error(
                row.line,
                format!(
                    "node id {} out of range: ids must be 0..{}",
                    row.id,
                    rows.len() - 1
                ),
            ));
        }
        if std::mem::replace(&mut seen[row.id], true) {
            return Err(error(row.line, format!("node id {} appears twice", row.id)));
        }
    }
    Ok(())
}

fn stop(row: &Row) -> Stop {
    Stop {
        location: row.id,
        service: row.service,
        window: TimeWindow::new(row.ready, row.due),
    }
}

/// The file's fleet: identical vehicles at the depot.
struct Fleet {
    count: usize,
    capacity: i64,
}

fn build(
    name: String,
    rows: &[Row],
    requests: Vec<Request>,
    stop_ids: Vec<[usize; 2]>,
    fleet: Fleet,
    line: usize,
) -> Result<LiteratureInstance, ParseError> {
    let mut points = vec![(0.0, 0.0); rows.len()];
    for row in rows {
        points[row.id] = (row.x, row.y);
    }
    let matrix = Matrix::euclidean(&points);
    let depot = &rows[0];
    let vehicle = Vehicle {
        start_location: 0,
        end_location: Some(0),
        shift: TimeWindow::new(depot.ready, depot.due),
        capacity: [fleet.capacity, 0],
        fixed_cost: 0.0,
    };
    // More vehicles than requests are never used; capping keeps a malformed
    // count from allocating without bound.
    let vehicles = fleet.count.min(requests.len().max(1));
    let instance = Instance::new(
        matrix,
        requests,
        vec![vehicle; vehicles],
        ArcCost::default(),
    )
    .map_err(|e| error(line, e.reason))?;
    Ok(LiteratureInstance {
        name,
        instance,
        stop_ids,
    })
}

/// Reads a Solomon VRPTW file: a name line, `VEHICLE` / `NUMBER CAPACITY`
/// and one row of two numbers, `CUSTOMER` and a header, then rows of
/// `id x y demand ready due service`, the depot (id 0) first.
pub fn parse_solomon(text: &str) -> Result<LiteratureInstance, ParseError> {
    #[derive(PartialEq)]
    enum Expect {
        Name,
        VehicleTitle,
        VehicleHeader,
        VehicleRow,
        CustomerTitle,
        CustomerHeader,
        Rows,
    }
    let mut expect = Expect::Name;
    let mut name = String::new();
    let mut fleet: Option<(usize, i64)> = None;
    let mut rows = Vec::new();
    let mut last_line = 0;
    for (number_minus_one, raw) in text.lines().enumerate() {
        let line = number_minus_one + 1;
        last_line = line;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        let upper = trimmed.to_ascii_uppercase();
        match expect {
            Expect::Name => {
                name = trimmed.to_string();
                expect = Expect::VehicleTitle;
            }
            Expect::VehicleTitle if upper.starts_with("VEHICLE") => {
                expect = Expect::VehicleHeader;
            }
            Expect::VehicleHeader if upper.starts_with("NUMBER") => {
                expect = Expect::VehicleRow;
            }
            Expect::VehicleRow => {
                let fields: Vec<&str> = trimmed.split_whitespace().collect();
                if fields.len() != 2 {
                    return Err(error(
                        line,
                        format!(
                            "expected vehicle number and capacity, got {} fields",
                            fields.len()
                        ),
                    ));
                }
                let count = index(fields[0], line, "vehicle number")?;
                let capacity = whole(fields[1], line, "capacity")?;
                if capacity < 0 {
                    return Err(error(line, "capacity must be >= 0"));
                }
                fleet = Some((count, capacity));
                expect = Expect::CustomerTitle;
            }
            Expect::CustomerTitle if upper.starts_with("CUSTOMER") => {
                expect = Expect::CustomerHeader;
            }
            Expect::CustomerHeader if upper.starts_with("CUST") => {
                expect = Expect::Rows;
            }
            Expect::Rows => {
                let fields: Vec<&str> = trimmed.split_whitespace().collect();
                let row = row(&fields, line, false)?;
                if row.demand < 0 {
                    return Err(error(line, format!("demand {} is negative", row.demand)));
                }
                rows.push(row);
            }
            _ => {
                let wanted = match expect {
                    Expect::VehicleTitle => "VEHICLE",
                    Expect::VehicleHeader => "NUMBER     CAPACITY",
                    Expect::CustomerTitle => "CUSTOMER",
                    _ => "CUST NO.  XCOORD. ...",
                };
                return Err(error(line, format!("expected {wanted:?}, got {trimmed:?}")));
            }
        }
    }
    let Some((vehicle_count, capacity)) = fleet else {
        return Err(error(
            last_line,
            "no VEHICLE section with number and capacity",
        ));
    };
    if expect != Expect::Rows {
        return Err(error(last_line, "no CUSTOMER section"));
    }
    check_ids(&rows, last_line)?;
    let mut requests = Vec::new();
    let mut stop_ids = Vec::new();
    for row in rows.iter().filter(|row| row.id != 0) {
        requests.push(Request {
            kind: RequestKind::Delivery { stop: stop(row) },
            amount: [row.demand, 0],
        });
        stop_ids.push([row.id, row.id]);
    }
    build(
        name,
        &rows,
        requests,
        stop_ids,
        Fleet {
            count: vehicle_count,
            capacity,
        },
        last_line,
    )
}

/// Reads a Li & Lim PDPTW file: `vehicles capacity speed`, then rows of
/// `id x y demand ready due service pickup delivery`, the depot (id 0)
/// first; a pickup names its delivery and the delivery names it back.
pub fn parse_lilim(text: &str) -> Result<LiteratureInstance, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let Some((first_line, header)) = lines.next() else {
        return Err(error(1, "empty file"));
    };
    let fields: Vec<&str> = header.split_whitespace().collect();
    if fields.len() != 3 {
        return Err(error(
            first_line,
            format!(
                "expected `vehicles capacity speed`, got {} fields",
                fields.len()
            ),
        ));
    }
    let vehicle_count = index(fields[0], first_line, "vehicle number")?;
    let capacity = whole(fields[1], first_line, "capacity")?;
    if capacity < 0 {
        return Err(error(first_line, "capacity must be >= 0"));
    }
    // The speed field is 0 or 1 in the published files and the literature
    // ignores it: travel time equals distance.
    number(fields[2], first_line, "speed")?;
    let mut rows = Vec::new();
    let mut last_line = first_line;
    for (line, text) in lines {
        last_line = line;
        let fields: Vec<&str> = text.split_whitespace().collect();
        rows.push(row(&fields, line, true)?);
    }
    check_ids(&rows, last_line)?;
    let mut by_id: Vec<usize> = vec![0; rows.len()];
    for (position, row) in rows.iter().enumerate() {
        by_id[row.id] = position;
    }
    let mut requests = Vec::new();
    let mut stop_ids = Vec::new();
    for row in rows.iter().filter(|row| row.id != 0) {
        match (row.pickup, row.delivery) {
            (0, 0) => {
                return Err(error(
                    row.line,
                    format!(
                        "node {} is neither a pickup (delivery index > 0) nor a delivery (pickup index > 0)",
                        row.id
                    ),
                ));
            }
            (0, delivery) => {
                let Some(partner) = by_id.get(delivery).map(|&p| &rows[p]) else {
                    return Err(error(
                        row.line,
                        format!(
                            "pickup {} names delivery {delivery}, which does not exist",
                            row.id
                        ),
                    ));
                };
                if partner.id == 0 || partner.pickup != row.id || partner.delivery != 0 {
                    return Err(error(
                        row.line,
                        format!(
                            "pickup {} names delivery {delivery}, which does not name it back",
                            row.id
                        ),
                    ));
                }
                if row.demand < 0 || partner.demand != -row.demand {
                    return Err(error(
                        row.line,
                        format!(
                            "pickup {} has demand {} but its delivery {} has {}: expected q >= 0 and -q",
                            row.id, row.demand, partner.id, partner.demand
                        ),
                    ));
                }
                requests.push(Request {
                    kind: RequestKind::Shipment {
                        pickup: stop(row),
                        delivery: stop(partner),
                    },
                    amount: [row.demand, 0],
                });
                stop_ids.push([row.id, partner.id]);
            }
            (pickup, 0) => {
                let named_back = by_id
                    .get(pickup)
                    .map(|&p| &rows[p])
                    .is_some_and(|p| p.id != 0 && p.delivery == row.id && p.pickup == 0);
                if !named_back {
                    return Err(error(
                        row.line,
                        format!(
                            "delivery {} names pickup {pickup}, which does not name it back",
                            row.id
                        ),
                    ));
                }
            }
            (_, _) => {
                return Err(error(
                    row.line,
                    format!("node {} names both a pickup and a delivery", row.id),
                ));
            }
        }
    }
    let name = String::new();
    build(
        name,
        &rows,
        requests,
        stop_ids,
        Fleet {
            count: vehicle_count,
            capacity,
        },
        last_line,
    )
}
