//! The long CSV layout statsforecast uses, as text in and text out: `unique_id,ds,y`
//! rows parsed into series, and forecasts written as `unique_id,ds,y_hat`.
//!
//! Parsing rules:
//! - The first non-blank line is the header; it must name `unique_id`, `ds` and
//!   `y` (any order; other columns are ignored). Blank lines are skipped; a UTF-8
//!   byte-order mark and CRLF line ends are accepted. Fields may be quoted
//!   (`"a,b"`, `""` for a quote) but may not span lines.
//! - `ds` is a date, `YYYY-MM-DD`, optionally followed by a midnight time
//!   (` 00:00:00` or `T00:00:00`, as pandas writes dates).
//! - `y` is a finite number >= 0; NaN, infinities, negatives and empty values
//!   are errors.
//! - Rows of a series may come in any order (they are sorted by date); the same
//!   date twice in one series is an error.
//! - The frequency, daily or weekly, is inferred from the dates unless given:
//!   weekly when every gap between consecutive dates of a series is a whole
//!   number of weeks and some gap is one week, daily when some gap is one day,
//!   an error otherwise (monthly or fortnightly data, say). One frequency holds
//!   for the whole input.
//! - **Missing periods are filled with 0**: a series runs from its first to its
//!   last date with one value per period, and a period without a row has no
//!   demand. `ParsedCsv::filled_periods` counts them.
//!
//! Invariants: no I/O (text in, text out); every problem is reported, up to
//! `MAX_ERRORS`, each with its 1-based line number (0 for the input as a whole)
//! so the caller can prefix the file name; nothing panics on any input.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::{self, Write as _};

use chrono::{Datelike, NaiveDate};

use super::SeriesForecast;
use super::intervals::{InvalidLevel, prediction_intervals};
use super::series::{Frequency, Series};

/// Most errors reported for one input; further ones are counted in one last
/// `TooManyErrors`.
pub const MAX_ERRORS: usize = 100;

/// Longest series accepted, in periods after filling gaps (about 2700 years of
/// days), so that a typo in a year cannot ask for gigabytes of zeros.
pub const MAX_PERIODS: u64 = 1_000_000;

/// Series read from CSV text.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedCsv {
    /// In order of first appearance in the text.
    pub series: Vec<Series>,
    /// Given or inferred.
    pub frequency: Frequency,
    /// Periods without a row, filled with 0.
    pub filled_periods: u64,
    /// Series whose rows were not in date order.
    pub reordered_series: usize,
}

/// One problem in the input, at a 1-based line (0: the input as a whole).
#[derive(Clone, Debug, PartialEq)]
pub struct CsvError {
    /// 1-based line number; 0 when the problem is not on one line.
    pub line: usize,
    /// What is wrong.
    pub kind: CsvErrorKind,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.kind)
        } else {
            write!(f, "{}", self.kind)
        }
    }
}

impl std::error::Error for CsvError {}

/// The kinds of CSV problems.
#[derive(Clone, Debug, PartialEq)]
pub enum CsvErrorKind {
    /// No header (the text is empty or blank).
    EmptyInput,
    /// The header lacks a required column.
    MissingColumn { column: &'static str },
    /// The header names a required column twice.
    DuplicateColumn { column: &'static str },
    /// A row has a different number of fields from the header.
    FieldCount { expected: usize, found: usize },
    /// A quoted field does not end on its line.
    UnterminatedQuote,
    /// A quote inside an unquoted field, or text after a closing quote.
    StrayQuote,
    /// `unique_id` is empty.
    EmptyId,
    /// `ds` is not a date.
    InvalidDate { text: String },
    /// `y` is empty.
    MissingValue,
    /// `y` is not a number.
    InvalidValue { text: String },
    /// `y` is NaN or infinite.
    NonFiniteValue { text: String },
    /// `y` is below zero.
    NegativeValue { text: String },
    /// A series has this date on an earlier line too.
    DuplicateDate {
        id: String,
        date: NaiveDate,
        first_line: usize,
    },
    /// No series has two dates and no frequency was given.
    CannotInferFrequency,
    /// Dates are neither all whole weeks apart nor ever one day apart; `days`
    /// is the smallest gap.
    UnsupportedSpacing { days: i64 },
    /// Weekly data (as given) with a gap that is not a whole number of weeks.
    OffWeeklyGrid {
        id: String,
        date: NaiveDate,
        previous: NaiveDate,
        previous_line: usize,
    },
    /// A series would span more than `MAX_PERIODS` periods.
    TooManyPeriods { id: String, periods: u64 },
    /// More errors than `MAX_ERRORS`; this many were not listed.
    TooManyErrors { more: usize },
}

impl fmt::Display for CsvErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvErrorKind::EmptyInput => {
                write!(f, "empty input: expected a header line `unique_id,ds,y`")
            }
            CsvErrorKind::MissingColumn { column } => {
                write!(f, "header has no `{column}` column")
            }
            CsvErrorKind::DuplicateColumn { column } => {
                write!(f, "header names `{column}` twice")
            }
            CsvErrorKind::FieldCount { expected, found } => {
                write!(
                    f,
                    "expected {expected} fields as in the header, found {found}"
                )
            }
            CsvErrorKind::UnterminatedQuote => write!(f, "quoted field does not end on this line"),
            CsvErrorKind::StrayQuote => write!(f, "misplaced quote"),
            CsvErrorKind::EmptyId => write!(f, "unique_id is empty"),
            CsvErrorKind::InvalidDate { text } => {
                write!(f, "ds {text:?} is not a date (expected YYYY-MM-DD)")
            }
            CsvErrorKind::MissingValue => write!(f, "y is empty"),
            CsvErrorKind::InvalidValue { text } => write!(f, "y {text:?} is not a number"),
            CsvErrorKind::NonFiniteValue { text } => write!(f, "y {text:?} is not finite"),
            CsvErrorKind::NegativeValue { text } => write!(f, "y {text} is negative"),
            CsvErrorKind::DuplicateDate {
                id,
                date,
                first_line,
            } => write!(
                f,
                "series {id:?} has date {date} twice (first on line {first_line})"
            ),
            CsvErrorKind::CannotInferFrequency => write!(
                f,
                "cannot infer daily or weekly data: no series has two dates"
            ),
            CsvErrorKind::UnsupportedSpacing { days } => write!(
                f,
                "cannot tell daily from weekly data: dates are at least {days} days apart and not all whole weeks apart (only daily and weekly data are supported; give the frequency to force one)"
            ),
            CsvErrorKind::OffWeeklyGrid {
                id,
                date,
                previous,
                previous_line,
            } => write!(
                f,
                "series {id:?}: {date} is not a whole number of weeks after {previous} (line {previous_line}) in weekly data"
            ),
            CsvErrorKind::TooManyPeriods { id, periods } => write!(
                f,
                "series {id:?} spans {periods} periods; at most {MAX_PERIODS} are supported"
            ),
            CsvErrorKind::TooManyErrors { more } => write!(f, "{more} more errors not shown"),
        }
    }
}

/// Collects errors up to `MAX_ERRORS` and counts the rest.
#[derive(Default)]
struct Errors {
    listed: Vec<CsvError>,
    more: usize,
}

impl Errors {
    fn push(&mut self, line: usize, kind: CsvErrorKind) {
        if self.listed.len() < MAX_ERRORS {
            self.listed.push(CsvError { line, kind });
        } else {
            self.more += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    fn finish(mut self) -> Vec<CsvError> {
        if self.more > 0 {
            self.listed.push(CsvError {
                line: 0,
                kind: CsvErrorKind::TooManyErrors { more: self.more },
            });
        }
        self.listed
    }
}

/// One parsed row.
#[derive(Clone, Copy)]
struct Row {
    day: i32,
    value: f64,
    line: usize,
}

/// Rows of one series, keyed by id.
struct Rows {
    id: String,
    rows: Vec<Row>,
}

/// Positions of the required columns.
struct Columns {
    id: usize,
    date: usize,
    value: usize,
    count: usize,
}

/// Parses `unique_id,ds,y` text. `frequency` forces daily or weekly; `None`
/// infers it from the dates. Returns every problem found (see `MAX_ERRORS`).
pub fn parse(text: &str, frequency: Option<Frequency>) -> Result<ParsedCsv, Vec<CsvError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut errors = Errors::default();
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(index, line)| (index + 1, line.strip_suffix('\r').unwrap_or(line)))
        .filter(|(_, line)| !line.bytes().all(|byte| byte.is_ascii_whitespace()));
    let mut fields: Vec<Cow<'_, str>> = Vec::new();

    let Some((header_line, header)) = lines.next() else {
        errors.push(0, CsvErrorKind::EmptyInput);
        return Err(errors.finish());
    };
    if let Err(kind) = split_fields(header, &mut fields) {
        errors.push(header_line, kind);
        return Err(errors.finish());
    }
    let columns = match find_columns(&fields) {
        Ok(columns) => columns,
        Err(kinds) => {
            for kind in kinds {
                errors.push(header_line, kind);
            }
            return Err(errors.finish());
        }
    };

    let mut series: Vec<Rows> = Vec::new();
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    // Rows of one series usually come together: remember the last id.
    let mut last: Option<(&str, usize)> = None;
    for (line_number, line) in lines {
        if let Err(kind) = split_fields(line, &mut fields) {
            errors.push(line_number, kind);
            continue;
        }
        if fields.len() != columns.count {
            errors.push(
                line_number,
                CsvErrorKind::FieldCount {
                    expected: columns.count,
                    found: fields.len(),
                },
            );
            continue;
        }
        let field = |index: usize| fields.get(index).map_or("", |field| field.as_ref());
        let id = field(columns.id);
        let day = parse_date(field(columns.date).trim_ascii());
        let value = parse_value(field(columns.value).trim_ascii());
        let mut row_ok = true;
        if id.is_empty() {
            errors.push(line_number, CsvErrorKind::EmptyId);
            row_ok = false;
        }
        let day = match day {
            Ok(day) => day,
            Err(kind) => {
                errors.push(line_number, kind);
                row_ok = false;
                0
            }
        };
        let value = match value {
            Ok(value) => value,
            Err(kind) => {
                errors.push(line_number, kind);
                row_ok = false;
                0.0
            }
        };
        if !row_ok {
            continue;
        }
        let row = Row {
            day,
            value,
            line: line_number,
        };
        // An id borrowed from the text when unquoted, so the map needs no copy.
        let slot = match (last, &fields.get(columns.id)) {
            (Some((last_id, slot)), _) if last_id == id => slot,
            (_, Some(Cow::Borrowed(borrowed))) => {
                let borrowed: &str = borrowed;
                let slot = slot_for(&mut index_of, &mut series, borrowed);
                last = Some((borrowed, slot));
                slot
            }
            _ => {
                // Quoted id: owned, so look it up without remembering it.
                last = None;
                match series.iter().position(|rows| rows.id == id) {
                    Some(slot) => slot,
                    None => {
                        series.push(Rows {
                            id: id.to_owned(),
                            rows: Vec::new(),
                        });
                        series.len() - 1
                    }
                }
            }
        };
        if let Some(rows) = series.get_mut(slot) {
            rows.rows.push(row);
        }
    }

    let mut reordered_series = 0;
    for rows in &mut series {
        if !rows.rows.is_sorted_by_key(|row| row.day) {
            rows.rows.sort_by_key(|row| row.day);
            reordered_series += 1;
        }
        for pair in rows.rows.windows(2) {
            if let [first, second] = pair
                && first.day == second.day
            {
                errors.push(
                    second.line.max(first.line),
                    CsvErrorKind::DuplicateDate {
                        id: rows.id.clone(),
                        date: date_from_day(second.day),
                        first_line: second.line.min(first.line),
                    },
                );
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors.finish());
    }

    let frequency = match frequency {
        Some(frequency) => frequency,
        None => match infer_frequency(&series) {
            Ok(frequency) => frequency,
            Err((line, kind)) => {
                errors.push(line, kind);
                return Err(errors.finish());
            }
        },
    };
    let step = frequency.step_days() as i64;

    let mut parsed = Vec::with_capacity(series.len());
    let mut filled_periods = 0u64;
    for rows in series {
        let (Some(first), Some(last_row)) = (rows.rows.first(), rows.rows.last()) else {
            continue;
        };
        let (first_day, first_line) = (first.day, first.line);
        let mut grid_ok = true;
        for pair in rows.rows.windows(2) {
            if let [previous, row] = pair
                && (i64::from(row.day) - i64::from(previous.day)) % step != 0
            {
                errors.push(
                    row.line,
                    CsvErrorKind::OffWeeklyGrid {
                        id: rows.id.clone(),
                        date: date_from_day(row.day),
                        previous: date_from_day(previous.day),
                        previous_line: previous.line,
                    },
                );
                grid_ok = false;
            }
        }
        let periods = ((i64::from(last_row.day) - i64::from(first_day)) / step + 1) as u64;
        if periods > MAX_PERIODS {
            errors.push(
                first_line,
                CsvErrorKind::TooManyPeriods {
                    id: rows.id.clone(),
                    periods,
                },
            );
            continue;
        }
        if !grid_ok {
            continue;
        }
        let mut values = vec![0.0; periods as usize];
        for row in &rows.rows {
            let period = ((i64::from(row.day) - i64::from(first_day)) / step) as usize;
            if let Some(slot) = values.get_mut(period) {
                *slot = row.value;
            }
        }
        filled_periods += periods - rows.rows.len() as u64;
        match Series::new(rows.id, date_from_day(first_day), frequency, values) {
            Ok(series) => parsed.push(series),
            // Values were checked row by row; keep the report complete anyway.
            Err(error) => errors.push(
                first_line,
                CsvErrorKind::InvalidValue {
                    text: error.value.to_string(),
                },
            ),
        }
    }
    if !errors.is_empty() {
        return Err(errors.finish());
    }
    Ok(ParsedCsv {
        series: parsed,
        frequency,
        filled_periods,
        reordered_series,
    })
}

fn slot_for<'a>(
    index_of: &mut HashMap<&'a str, usize>,
    series: &mut Vec<Rows>,
    id: &'a str,
) -> usize {
    match index_of.entry(id) {
        Entry::Occupied(entry) => *entry.get(),
        Entry::Vacant(entry) => {
            series.push(Rows {
                id: id.to_owned(),
                rows: Vec::new(),
            });
            *entry.insert(series.len() - 1)
        }
    }
}

fn find_columns(header: &[Cow<'_, str>]) -> Result<Columns, Vec<CsvErrorKind>> {
    let mut problems = Vec::new();
    let mut find = |column: &'static str| {
        let mut found = header
            .iter()
            .enumerate()
            .filter(|(_, name)| name.trim() == column)
            .map(|(index, _)| index);
        let first = found.next();
        if found.next().is_some() {
            problems.push(CsvErrorKind::DuplicateColumn { column });
        }
        if first.is_none() {
            problems.push(CsvErrorKind::MissingColumn { column });
        }
        first.unwrap_or(0)
    };
    let columns = Columns {
        id: find("unique_id"),
        date: find("ds"),
        value: find("y"),
        count: header.len(),
    };
    if problems.is_empty() {
        Ok(columns)
    } else {
        Err(problems)
    }
}

/// Splits one line into fields (RFC 4180 quoting, no line breaks in fields).
fn split_fields<'a>(line: &'a str, fields: &mut Vec<Cow<'a, str>>) -> Result<(), CsvErrorKind> {
    fields.clear();
    // Fast path: one pass over the bytes, splitting at commas, unless a quote shows.
    let bytes = line.as_bytes();
    let mut start = 0;
    let mut quoted = false;
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b',' {
            fields.push(Cow::Borrowed(line.get(start..index).unwrap_or("")));
            start = index + 1;
        } else if byte == b'"' {
            quoted = true;
            break;
        }
    }
    if !quoted {
        fields.push(Cow::Borrowed(line.get(start..).unwrap_or("")));
        return Ok(());
    }
    fields.clear();
    let mut rest = line;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut remaining = quoted;
            loop {
                let Some(end) = remaining.find('"') else {
                    return Err(CsvErrorKind::UnterminatedQuote);
                };
                value.push_str(remaining.get(..end).unwrap_or(""));
                let after = remaining.get(end + 1..).unwrap_or("");
                if let Some(escaped) = after.strip_prefix('"') {
                    value.push('"');
                    remaining = escaped;
                } else {
                    remaining = after;
                    break;
                }
            }
            fields.push(Cow::Owned(value));
            if remaining.is_empty() {
                return Ok(());
            }
            match remaining.strip_prefix(',') {
                Some(next) => rest = next,
                None => return Err(CsvErrorKind::StrayQuote),
            }
        } else {
            let (field, next) = match rest.find(',') {
                Some(comma) => (
                    rest.get(..comma).unwrap_or(""),
                    Some(rest.get(comma + 1..).unwrap_or("")),
                ),
                None => (rest, None),
            };
            if field.contains('"') {
                return Err(CsvErrorKind::StrayQuote);
            }
            fields.push(Cow::Borrowed(field));
            match next {
                Some(next) => rest = next,
                None => return Ok(()),
            }
        }
    }
}

/// Days from the common era of a `YYYY-MM-DD` date, optionally followed by a
/// midnight time.
fn parse_date(text: &str) -> Result<i32, CsvErrorKind> {
    let invalid = || CsvErrorKind::InvalidDate {
        text: text.to_owned(),
    };
    let bytes = text.as_bytes();
    let date_part = match bytes.len() {
        10 => bytes,
        19 if matches!(bytes.get(10), Some(b' ' | b'T'))
            && bytes.get(11..) == Some(b"00:00:00".as_slice()) =>
        {
            bytes.get(..10).unwrap_or(&[])
        }
        _ => return Err(invalid()),
    };
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = date_part.get(range)?;
        part.iter().try_fold(0u32, |total, &byte| {
            byte.is_ascii_digit()
                .then(|| total * 10 + u32::from(byte - b'0'))
        })
    };
    if date_part.get(4) != Some(&b'-') || date_part.get(7) != Some(&b'-') {
        return Err(invalid());
    }
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return Err(invalid());
    };
    days_from_ce(year, month, day).ok_or_else(invalid)
}

/// chrono's `num_days_from_ce` (0001-01-01 is day 1) of a Gregorian date with a
/// four-digit year, or `None` when the month or day does not exist. Plain
/// arithmetic (Hinnant's `days_from_civil`), as this runs once per row.
fn days_from_ce(year: u32, month: u32, day: u32) -> Option<i32> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year > 9999 || day == 0 || day > month_days {
        return None;
    }
    // Years start in March so that the leap day ends them.
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // Days since 1970-01-01, then shifted to chrono's count from 0001-01-01.
    let unix_days = era * 146_097 + day_of_era - 719_468;
    i32::try_from(unix_days + 719_163).ok()
}

fn date_from_day(day: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(day).unwrap_or(NaiveDate::MIN)
}

fn parse_value(text: &str) -> Result<f64, CsvErrorKind> {
    if text.is_empty() {
        return Err(CsvErrorKind::MissingValue);
    }
    if let Some(value) = parse_plain_decimal(text.as_bytes()) {
        return Ok(value);
    }
    let value: f64 = text.parse().map_err(|_| CsvErrorKind::InvalidValue {
        text: text.to_owned(),
    })?;
    if !value.is_finite() {
        return Err(CsvErrorKind::NonFiniteValue {
            text: text.to_owned(),
        });
    }
    if value < 0.0 {
        return Err(CsvErrorKind::NegativeValue {
            text: text.to_owned(),
        });
    }
    // Adding 0.0 turns -0.0 into 0.0.
    Ok(value + 0.0)
}

/// Exact powers of ten as f64 (10^22 is the last one a double holds exactly).
const POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `digits[.digits]` with at most 15 digits in all, the form demand counts take,
/// without the general float parser: the digits as an integer (exact below
/// 2^53) divided by an exact power of ten is one correctly rounded operation,
/// so the result is bit for bit what `str::parse` gives (Clinger's fast path).
/// `None` for anything else, which then takes the general path.
fn parse_plain_decimal(bytes: &[u8]) -> Option<f64> {
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut fraction_digits = None;
    for (index, &byte) in bytes.iter().enumerate() {
        match byte {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(byte - b'0');
                digits += 1;
                if digits > 15 {
                    return None;
                }
            }
            b'.' if fraction_digits.is_none() && index > 0 => fraction_digits = Some(0usize),
            _ => return None,
        }
        if let Some(count) = fraction_digits.as_mut()
            && byte != b'.'
        {
            *count += 1;
        }
    }
    if digits == 0 || fraction_digits == Some(0) {
        return None;
    }
    let scale = POWERS_OF_TEN.get(fraction_digits.unwrap_or(0))?;
    // mantissa < 10^15 < 2^53: exact as f64.
    Some(mantissa as f64 / scale)
}

/// Weekly when every gap between consecutive dates of a series is a whole
/// number of weeks and some gap is one week; daily when some gap is one day
/// (missing days are then filled with 0); anything else (monthly, fortnightly,
/// daily data without two consecutive days anywhere) is an error, which a given
/// frequency overrides.
fn infer_frequency(series: &[Rows]) -> Result<Frequency, (usize, CsvErrorKind)> {
    let mut all_whole_weeks = true;
    // The smallest gap and the first line showing it.
    let mut smallest: Option<(i64, usize)> = None;
    for rows in series {
        for pair in rows.rows.windows(2) {
            if let [previous, row] = pair {
                let gap = i64::from(row.day) - i64::from(previous.day);
                all_whole_weeks &= gap % 7 == 0;
                if smallest.is_none_or(|(least, _)| gap < least) {
                    smallest = Some((gap, row.line));
                }
            }
        }
    }
    match smallest {
        None => Err((0, CsvErrorKind::CannotInferFrequency)),
        Some((7, _)) if all_whole_weeks => Ok(Frequency::Weekly),
        Some((1, _)) => Ok(Frequency::Daily),
        Some((days, line)) => Err((line, CsvErrorKind::UnsupportedSpacing { days })),
    }
}

/// Writes `unique_id,ds,y_hat`, one row per series and future period, series
/// in the order given.
pub fn format_forecasts(forecasts: &[SeriesForecast]) -> String {
    let rows: usize = forecasts.iter().map(|forecast| forecast.point.len()).sum();
    let mut out = String::with_capacity(20 + rows * 32);
    out.push_str("unique_id,ds,y_hat\n");
    for forecast in forecasts {
        for (date, value) in forecast.dates.iter().zip(&forecast.point) {
            write_id(&mut out, &forecast.id);
            let _ = writeln!(out, ",{},{}", DateText(*date), value);
        }
    }
    out
}

/// `format_forecasts` with empirical interval columns for each coverage level in
/// percent (statsforecast's names: `y_hat-lo-90,y_hat-hi-90` for 90), lower
/// bounds first, levels in the order given. Levels must be in (0, 100].
pub fn format_forecasts_with_intervals(
    forecasts: &[SeriesForecast],
    levels: &[f64],
) -> Result<String, InvalidLevel> {
    let mut out = String::from("unique_id,ds,y_hat");
    for level in levels {
        let _ = write!(out, ",y_hat-lo-{level},y_hat-hi-{level}");
    }
    out.push('\n');
    for forecast in forecasts {
        let bounds = levels
            .iter()
            .map(|&level| {
                prediction_intervals(&forecast.point, &forecast.fit.backtest, level / 100.0)
                    .map_err(|_| InvalidLevel { level })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (index, (date, value)) in forecast.dates.iter().zip(&forecast.point).enumerate() {
            write_id(&mut out, &forecast.id);
            let _ = write!(out, ",{},{}", DateText(*date), value);
            for level in &bounds {
                if let Some(interval) = level.get(index) {
                    let _ = write!(out, ",{},{}", interval.lower, interval.upper);
                }
            }
            out.push('\n');
        }
    }
    Ok(out)
}

fn write_id(out: &mut String, id: &str) {
    if id.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&id.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(id);
    }
}

/// `YYYY-MM-DD` without going through chrono's format machinery.
struct DateText(NaiveDate);

impl fmt::Display for DateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            self.0.month(),
            self.0.day()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("test date")
    }

    fn parsed(text: &str) -> ParsedCsv {
        match parse(text, None) {
            Ok(parsed) => parsed,
            Err(errors) => panic!("unexpected errors: {errors:?}"),
        }
    }

    /// The errors of `text`, as (line, kind).
    fn errors(text: &str) -> Vec<(usize, CsvErrorKind)> {
        match parse(text, None) {
            Ok(parsed) => panic!("expected errors, parsed {parsed:?}"),
            Err(errors) => errors.into_iter().map(|e| (e.line, e.kind)).collect(),
        }
    }

    #[test]
    fn parses_weekly_series_in_order_of_appearance() {
        let data = parsed(
            "unique_id,ds,y\nb,2024-01-07,1\nb,2024-01-14,0\na,2024-01-07,2.5\na,2024-01-14,3\n",
        );
        assert_eq!(data.frequency, Frequency::Weekly);
        assert_eq!(data.series.len(), 2);
        assert_eq!(data.series[0].id(), "b");
        assert_eq!(data.series[1].values(), &[2.5, 3.0]);
        assert_eq!(data.series[1].start(), date(2024, 1, 7));
        assert_eq!((data.filled_periods, data.reordered_series), (0, 0));
    }

    #[test]
    fn sorts_dates_and_fills_missing_periods_with_zero() {
        let data = parsed(
            "unique_id,ds,y\na,2024-01-03,3\na,2024-01-01,1\na,2024-01-06,6\nb,2024-01-01,0\nb,2024-01-02,1\n",
        );
        assert_eq!(data.frequency, Frequency::Daily);
        assert_eq!(data.series[0].values(), &[1.0, 0.0, 3.0, 0.0, 0.0, 6.0]);
        assert_eq!(data.filled_periods, 3);
        assert_eq!(data.reordered_series, 1);
    }

    #[test]
    fn weekly_gaps_are_filled_by_whole_weeks() {
        let data = parsed("unique_id,ds,y\na,2024-01-07,1\na,2024-01-14,1\na,2024-02-04,4\n");
        assert_eq!(data.frequency, Frequency::Weekly);
        assert_eq!(data.series[0].values(), &[1.0, 1.0, 0.0, 0.0, 4.0]);
    }

    #[test]
    fn header_columns_in_any_order_extra_columns_ignored() {
        let data = parsed("y,extra,ds,unique_id\n1,x,2024-01-01,a\n2,y,2024-01-02,a\n");
        assert_eq!(data.series[0].values(), &[1.0, 2.0]);
    }

    #[test]
    fn accepts_bom_crlf_blank_lines_midnight_times_and_quotes() {
        let text = "\u{feff}unique_id,ds,y\r\n\r\n\"a, \"\"big\"\"\",2024-01-01 00:00:00,1\r\n\"a, \"\"big\"\"\",2024-01-02T00:00:00,2\r\n\n";
        let data = parsed(text);
        assert_eq!(data.series[0].id(), "a, \"big\"");
        assert_eq!(data.series[0].values(), &[1.0, 2.0]);
    }

    #[test]
    fn one_point_series_take_the_frequency_of_the_others_or_the_given_one() {
        let data = parsed("unique_id,ds,y\na,2024-01-07,1\nb,2024-01-07,1\nb,2024-01-14,1\n");
        assert_eq!(data.series[0].values(), &[1.0]);
        assert_eq!(data.frequency, Frequency::Weekly);
        assert_eq!(
            errors("unique_id,ds,y\na,2024-01-07,1\n"),
            vec![(0, CsvErrorKind::CannotInferFrequency)]
        );
        let given = parse("unique_id,ds,y\na,2024-01-07,1\n", Some(Frequency::Weekly))
            .expect("frequency given");
        assert_eq!(given.series[0].future_dates(1), Ok(vec![date(2024, 1, 14)]));
    }

    #[test]
    fn header_only_gives_no_series_and_empty_input_is_an_error() {
        let data = parse("unique_id,ds,y\n", Some(Frequency::Daily)).expect("header only");
        assert!(data.series.is_empty());
        assert_eq!(errors(""), vec![(0, CsvErrorKind::EmptyInput)]);
        assert_eq!(errors(" \n\n"), vec![(0, CsvErrorKind::EmptyInput)]);
    }

    #[test]
    fn reports_header_problems() {
        assert_eq!(
            errors("id,ds,y,y\n"),
            vec![
                (
                    1,
                    CsvErrorKind::MissingColumn {
                        column: "unique_id"
                    }
                ),
                (1, CsvErrorKind::DuplicateColumn { column: "y" }),
            ]
        );
    }

    #[test]
    fn reports_every_bad_row_with_its_line() {
        let text = "unique_id,ds,y\n\
                    a,2024-01-01,1\n\
                    a,2024-02-30,1\n\
                    a,2024-01-03,-2\n\
                    a,2024-01-04,NaN\n\
                    a,2024-01-05,inf\n\
                    a,2024-01-06,\n\
                    a,2024-01-07,three\n\
                    ,2024-01-08,1\n\
                    a,2024-01-09\n\
                    a,2024-01-10,1,2\n\
                    a,01/11/2024,1\n\
                    a,2024-01-12 10:00:00,1\n";
        let found = errors(text);
        let lines: Vec<usize> = found.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
        assert_eq!(
            found[0].1,
            CsvErrorKind::InvalidDate {
                text: "2024-02-30".into()
            }
        );
        assert_eq!(
            found[1].1,
            CsvErrorKind::NegativeValue { text: "-2".into() }
        );
        assert_eq!(
            found[2].1,
            CsvErrorKind::NonFiniteValue { text: "NaN".into() }
        );
        assert_eq!(
            found[3].1,
            CsvErrorKind::NonFiniteValue { text: "inf".into() }
        );
        assert_eq!(found[4].1, CsvErrorKind::MissingValue);
        assert_eq!(
            found[5].1,
            CsvErrorKind::InvalidValue {
                text: "three".into()
            }
        );
        assert_eq!(found[6].1, CsvErrorKind::EmptyId);
        assert_eq!(
            found[7].1,
            CsvErrorKind::FieldCount {
                expected: 3,
                found: 2
            }
        );
    }

    #[test]
    fn duplicate_dates_are_errors_naming_both_lines() {
        let found = errors("unique_id,ds,y\na,2024-01-02,1\na,2024-01-01,1\na,2024-01-02,5\n");
        assert_eq!(
            found,
            vec![(
                4,
                CsvErrorKind::DuplicateDate {
                    id: "a".into(),
                    date: date(2024, 1, 2),
                    first_line: 2
                }
            )]
        );
    }

    #[test]
    fn irregular_dates_are_errors() {
        let monthly =
            "unique_id,ds,y\na,2024-01-01,1\na,2024-02-01,1\na,2024-03-01,1\na,2024-04-01,1\n";
        assert_eq!(
            errors(monthly),
            vec![(4, CsvErrorKind::UnsupportedSpacing { days: 29 })]
        );
        let fortnightly = "unique_id,ds,y\na,2024-01-07,1\na,2024-01-21,1\n";
        assert_eq!(
            errors(fortnightly),
            vec![(3, CsvErrorKind::UnsupportedSpacing { days: 14 })]
        );
        let off_grid =
            "unique_id,ds,y\na,2024-01-07,1\na,2024-01-14,1\na,2024-01-21,1\na,2024-01-24,1\n";
        assert_eq!(
            errors(off_grid),
            vec![(5, CsvErrorKind::UnsupportedSpacing { days: 3 })]
        );
        let forced = parse(off_grid, Some(Frequency::Weekly)).expect_err("off the weekly grid");
        assert_eq!(
            forced
                .into_iter()
                .map(|e| (e.line, e.kind))
                .collect::<Vec<_>>(),
            vec![(
                5,
                CsvErrorKind::OffWeeklyGrid {
                    id: "a".into(),
                    date: date(2024, 1, 24),
                    previous: date(2024, 1, 21),
                    previous_line: 4
                }
            )]
        );
    }

    #[test]
    fn quote_errors() {
        let found =
            errors("unique_id,ds,y\n\"a,2024-01-01,1\na\"b,2024-01-01,1\n\"a\"x,2024-01-01,1\n");
        assert_eq!(
            found,
            vec![
                (2, CsvErrorKind::UnterminatedQuote),
                (3, CsvErrorKind::StrayQuote),
                (4, CsvErrorKind::StrayQuote)
            ]
        );
    }

    #[test]
    fn error_list_is_capped() {
        let mut text = String::from("unique_id,ds,y\n");
        for _ in 0..(MAX_ERRORS + 7) {
            text.push_str("a,nope,1\n");
        }
        let found = errors(&text);
        assert_eq!(found.len(), MAX_ERRORS + 1);
        assert_eq!(
            found[MAX_ERRORS],
            (0, CsvErrorKind::TooManyErrors { more: 7 })
        );
    }

    #[test]
    fn absurd_spans_are_refused_before_allocating() {
        let found = errors("unique_id,ds,y\na,0001-01-01,1\na,0001-01-02,1\na,9999-12-31,1\n");
        assert!(
            matches!(found[0].1, CsvErrorKind::TooManyPeriods { .. }),
            "{found:?}"
        );
    }

    #[test]
    fn error_messages_carry_line_and_reason() {
        let found = parse("unique_id,ds,y\na,2024-01-01,-1\n", None).expect_err("negative");
        assert_eq!(found[0].to_string(), "line 2: y -1 is negative");
    }

    #[test]
    fn day_numbers_agree_with_chrono() {
        let mut day = date(1599, 12, 1);
        while day < date(2401, 3, 1) {
            let expected = day.num_days_from_ce();
            let got = days_from_ce(day.year() as u32, day.month(), day.day());
            assert_eq!(got, Some(expected), "{day}");
            day = day.succ_opt().expect("in range");
        }
        for (y, m, d) in [(0, 1, 1), (0, 2, 29), (9999, 12, 31), (1, 1, 1)] {
            let expected = date(y as i32, m, d).num_days_from_ce();
            assert_eq!(days_from_ce(y, m, d), Some(expected));
        }
        for (y, m, d) in [
            (2023, 2, 29),
            (1900, 2, 29),
            (2024, 13, 1),
            (2024, 0, 1),
            (2024, 4, 31),
            (2024, 1, 0),
        ] {
            assert_eq!(days_from_ce(y, m, d), None, "{y}-{m}-{d}");
        }
        assert_eq!(
            parse_date("2000-02-29"),
            Ok(date(2000, 2, 29).num_days_from_ce())
        );
    }

    #[test]
    fn plain_decimals_parse_exactly_like_the_standard_parser() {
        let cases = [
            "0",
            "1",
            "3.0",
            "0.1",
            "0.3",
            "12.75",
            "123456789012345",
            "0.000000000000001",
            "99999.9999999999",
            "7.",
            ".5",
            "1e3",
            "1_0",
            "+1",
            "00012.50",
        ];
        for text in cases {
            let fast = parse_plain_decimal(text.as_bytes());
            if let Some(fast) = fast {
                assert_eq!(Some(fast), text.parse::<f64>().ok(), "{text}");
            }
        }
        assert_eq!(parse_plain_decimal(b"7."), None);
        assert_eq!(parse_plain_decimal(b".5"), None);
        assert_eq!(parse_plain_decimal(b"1234567890123456"), None);
        // the general path still takes what the fast path leaves
        assert_eq!(parse_value("1e3"), Ok(1000.0));
        assert_eq!(parse_value(".5"), Ok(0.5));
        assert_eq!(parse_value("-0"), Ok(0.0));
        // many random decimals
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let integer = state % 100_000;
            let fraction = (state >> 20) % 1_000_000;
            let places = (state >> 50) % 7;
            let text = if places == 0 {
                format!("{integer}")
            } else {
                format!(
                    "{integer}.{:0width$}",
                    fraction % 10u64.pow(places as u32),
                    width = places as usize
                )
            };
            assert_eq!(
                parse_plain_decimal(text.as_bytes()),
                text.parse::<f64>().ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn formats_forecasts_with_quoted_ids_and_interval_columns() {
        use crate::forecast::{ModelChoice, ModelKind, forecast_series};
        let series =
            Series::new("a,b", date(2024, 1, 7), Frequency::Weekly, vec![1.0, 1.0]).expect("valid");
        let forecast =
            forecast_series(&series, 2, ModelChoice::Fixed(ModelKind::Mean)).expect("in range");
        assert_eq!(
            format_forecasts(std::slice::from_ref(&forecast)),
            "unique_id,ds,y_hat\n\"a,b\",2024-01-21,1\n\"a,b\",2024-01-28,1\n"
        );
        let with_levels =
            format_forecasts_with_intervals(std::slice::from_ref(&forecast), &[80.0, 95.0])
                .expect("valid levels");
        assert!(
            with_levels.starts_with(
                "unique_id,ds,y_hat,y_hat-lo-80,y_hat-hi-80,y_hat-lo-95,y_hat-hi-95\n\"a,b\",2024-01-21,1,1,1,1,1\n"
            ),
            "{with_levels}"
        );
        assert!(format_forecasts_with_intervals(&[forecast], &[0.0]).is_err());
    }
}
