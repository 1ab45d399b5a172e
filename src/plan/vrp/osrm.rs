//! Reads the body of an OSRM `table` response (`durations` in seconds and,
//! when asked for with `annotations=duration,distance`, `distances` in
//! metres) into a `Matrix`. Pure: the caller fetches the text. Invariant:
//! `null` entries (no route) become `UNREACHABLE`, never infinities or NaN.

use std::fmt;

use super::instance::{Matrix, UNREACHABLE};

/// Why a table response could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError {
    /// Byte offset in the text where reading failed (0 when not positional).
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OSRM table at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for TableError {}

/// Durations and (optional) distances of an OSRM `table` response, as rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub durations: Vec<Vec<f64>>,
    pub distances: Option<Vec<Vec<f64>>>,
    /// Where each row and column is, `(lat, lon)`, from the response's
    /// `sources` (else `destinations`) `location` fields (`[lon, lat]`), if
    /// it has them.
    pub waypoints: Option<Vec<(f64, f64)>>,
}

impl Table {
    /// The matrix for `Instance::new`; without distances, durations double as
    /// distances.
    pub fn to_matrix(&self) -> Result<Matrix, TableError> {
        Matrix::from_rows(&self.durations, self.distances.as_deref()).map_err(|e| TableError {
            offset: 0,
            reason: e.reason,
        })
    }
}

/// Parses an OSRM `table` response. Fails if `code` is present and not
/// `"Ok"`, if `durations` is missing, or if a matrix is not square.
pub fn parse_osrm_table(text: &str) -> Result<Table, TableError> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    let value = parser.value()?;
    parser.skip_space();
    if parser.at != parser.bytes.len() {
        return Err(parser.fail("trailing text after the JSON value"));
    }
    let Json::Object(fields) = value else {
        return Err(TableError {
            offset: 0,
            reason: "expected a JSON object".to_string(),
        });
    };
    let field = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, v)| v);
    if let Some(code) = field("code")
        && *code != Json::String("Ok".to_string())
    {
        let message = match field("message") {
            Some(Json::String(message)) => message.clone(),
            _ => String::new(),
        };
        return Err(TableError {
            offset: 0,
            reason: format!("code is {code:?}, not \"Ok\" {message}"),
        });
    }
    let durations = match field("durations") {
        Some(value) => rows(value, "durations")?,
        None => {
            return Err(TableError {
                offset: 0,
                reason: "no `durations` field".to_string(),
            });
        }
    };
    let distances = match field("distances") {
        Some(value) => Some(rows(value, "distances")?),
        None => None,
    };
    let size = durations.len();
    for (name, matrix) in [
        ("durations", Some(&durations)),
        ("distances", distances.as_ref()),
    ] {
        let Some(matrix) = matrix else { continue };
        if matrix.len() != size || matrix.iter().any(|row| row.len() != size) {
            return Err(TableError {
                offset: 0,
                reason: format!("`{name}` is not a {size}x{size} matrix"),
            });
        }
    }
    let waypoints = match field("sources").or_else(|| field("destinations")) {
        Some(value) => waypoints(value, size)?,
        None => None,
    };
    Ok(Table {
        durations,
        distances,
        waypoints,
    })
}

/// `sources` (or `destinations`): one object per row with `location`
/// `[lon, lat]`, as OSRM writes them.
fn waypoints(value: &Json, size: usize) -> Result<Option<Vec<(f64, f64)>>, TableError> {
    let fail = |reason: String| TableError { offset: 0, reason };
    let Json::Array(items) = value else {
        return Err(fail("`sources` is not an array".to_string()));
    };
    if items.len() != size {
        // Not one per row (a table asked for some sources only): the rows'
        // places are unknown, not an error of the table itself.
        return Ok(None);
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let location = match item {
                Json::Object(fields) => {
                    fields.iter().find(|(k, _)| k == "location").map(|(_, v)| v)
                }
                _ => None,
            };
            match location {
                Some(Json::Array(pair)) => match pair.as_slice() {
                    [Json::Number(lon), Json::Number(lat)]
                        if lat.is_finite()
                            && lon.is_finite()
                            && lat.abs() <= 90.0
                            && lon.abs() <= 180.0 =>
                    {
                        Ok((*lat, *lon))
                    }
                    _ => Err(fail(format!(
                        "`sources[{i}].location` must be [lon, lat] in degrees"
                    ))),
                },
                _ => Err(fail(format!("`sources[{i}]` has no `location` [lon, lat]"))),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn rows(value: &Json, name: &str) -> Result<Vec<Vec<f64>>, TableError> {
    let fail = |reason: String| TableError { offset: 0, reason };
    let Json::Array(rows) = value else {
        return Err(fail(format!("`{name}` is not an array")));
    };
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let Json::Array(cells) = row else {
                return Err(fail(format!("`{name}[{i}]` is not an array")));
            };
            cells
                .iter()
                .enumerate()
                .map(|(j, cell)| match cell {
                    Json::Number(n) if n.is_finite() && *n >= 0.0 => Ok(*n),
                    Json::Null => Ok(UNREACHABLE),
                    other => Err(fail(format!(
                        "`{name}[{i}][{j}]` must be a number >= 0 or null, got {other:?}"
                    ))),
                })
                .collect()
        })
        .collect()
}

/// A JSON value (objects keep their field order).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn fail(&self, reason: &str) -> TableError {
        TableError {
            offset: self.at,
            reason: reason.to_string(),
        }
    }

    fn skip_space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, TableError> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.fail("unexpected character"))
        }
    }

    fn value(&mut self) -> Result<Json, TableError> {
        self.skip_space();
        self.depth += 1;
        if self.depth > 64 {
            return Err(self.fail("nested too deeply"));
        }
        let value = match self.bytes.get(self.at) {
            None => Err(self.fail("unexpected end of text")),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(_) => self.number(),
        };
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Result<Json, TableError> {
        self.at += 1;
        let mut fields = Vec::new();
        if self.eat(b'}') {
            return Ok(Json::Object(fields));
        }
        loop {
            self.skip_space();
            if self.bytes.get(self.at) != Some(&b'"') {
                return Err(self.fail("expected a field name"));
            }
            let key = self.string()?;
            if !self.eat(b':') {
                return Err(self.fail("expected ':'"));
            }
            let value = self.value()?;
            fields.push((key, value));
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                return Ok(Json::Object(fields));
            }
            return Err(self.fail("expected ',' or '}'"));
        }
    }

    fn array(&mut self) -> Result<Json, TableError> {
        self.at += 1;
        let mut items = Vec::new();
        if self.eat(b']') {
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Ok(Json::Array(items));
            }
            return Err(self.fail("expected ',' or ']'"));
        }
    }

    fn string(&mut self) -> Result<String, TableError> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err(self.fail("unterminated string"));
            };
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let Some(&escaped) = self.bytes.get(self.at) else {
                        return Err(self.fail("unterminated string"));
                    };
                    self.at += 1;
                    match escaped {
                        b'"' | b'\\' | b'/' => out.push(escaped),
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            // Names and codes are ASCII; keep other escapes as '?'.
                            if self.at + 4 > self.bytes.len() {
                                return Err(self.fail("short \\u escape"));
                            }
                            self.at += 4;
                            out.push(b'?');
                        }
                        _ => return Err(self.fail("bad escape")),
                    }
                }
                _ => out.push(byte),
            }
        }
        String::from_utf8(out).map_err(|_| self.fail("string is not UTF-8"))
    }

    fn number(&mut self) -> Result<Json, TableError> {
        let start = self.at;
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
        match text.parse::<f64>() {
            Ok(value) if !text.is_empty() => Ok(Json::Number(value)),
            _ => Err(TableError {
                offset: start,
                reason: "expected a value".to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_durations_and_distances() {
        let text = r#"{"code":"Ok","durations":[[0,12.5],[13.1,0]],
            "distances":[[0,100.2],[99.8,0]],"sources":[{"name":"a","location":[13.4,52.5]}]}"#;
        let table = parse_osrm_table(text).unwrap();
        assert_eq!(table.durations, vec![vec![0.0, 12.5], vec![13.1, 0.0]]);
        let matrix = table.to_matrix().unwrap();
        assert_eq!(matrix.distance(0, 1), 100.2);
        assert_eq!(matrix.duration(1, 0), 13.1);
    }

    #[test]
    fn null_is_unreachable_and_distances_optional() {
        let table = parse_osrm_table(r#"{"durations":[[0,null],[1e1,0]]}"#).unwrap();
        assert_eq!(table.durations[0][1], UNREACHABLE);
        assert_eq!(table.distances, None);
        assert_eq!(table.to_matrix().unwrap().distance(1, 0), 10.0);
    }

    #[test]
    fn rejects_bad_tables() {
        for text in [
            "",
            "[]",
            r#"{"code":"NoTable","message":"x"}"#,
            r#"{"code":"Ok"}"#,
            r#"{"durations":[[0,1],[1]]}"#,
            r#"{"durations":[[0,-1],[1,0]]}"#,
            r#"{"durations":[[0,"a"],[1,0]]}"#,
            r#"{"durations":[[0,1],[1,0]]"#,
            r#"{"durations":[[0,1],[1,0]]} x"#,
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        ] {
            assert!(parse_osrm_table(text).is_err(), "accepted {text:?}");
        }
    }
}
