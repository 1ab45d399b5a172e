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
//! Reading: `parse` takes the whole text; `Reader` takes it in pieces of whole
//! lines (a file read block by block) with the same result. Rows of the common
//! shape (`unique_id,ds,y` in that order, unquoted id, `YYYY-MM-DD`, plain
//! decimal) are read straight from the bytes; anything else goes through the
//! general field splitter, which also words every error, so both paths give the
//! same series and the same errors (a test checks it on random input). Writing:
//! `format_forecasts`, or `ForecastWriter` one series at a time.
//!
//! Invariants: no I/O (text in, text out); every problem is reported, up to
//! `MAX_ERRORS`, each with its 1-based line number (0 for the input as a whole)
//! so the caller can prefix the file name; nothing panics on any input.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::ops::Range;

use chrono::{Datelike, NaiveDate};

use super::SeriesForecast;
use super::intervals::{Interval, InvalidLevel, check_level, prediction_intervals};
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

/// One parsed row: its date as a day number (chrono's days from the common
/// era) and its value.
#[derive(Clone, Copy)]
struct Row {
    day: i32,
    value: f64,
}

/// Positions of the required columns.
struct Columns {
    id: usize,
    date: usize,
    value: usize,
    count: usize,
}

impl Columns {
    /// True for a header of exactly `unique_id,ds,y`, whose rows take the fast
    /// path of `plain_row`.
    fn is_plain(&self) -> bool {
        self.count == 3 && self.id == 0 && self.date == 1 && self.value == 2
    }
}

/// Lines of the text with their 1-based numbers (counted on from `number`), as
/// `split('\n')` gives them but for the empty piece after a final line end
/// (which would be a blank line), one `\r` before each line end removed.
struct Lines<'a> {
    text: &'a str,
    /// Byte offset of the next line.
    position: usize,
    /// Number of the last line given.
    number: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self
            .text
            .get(self.position..)
            .filter(|rest| !rest.is_empty())?;
        let line = match rest.find('\n') {
            Some(end) => rest.get(..end).unwrap_or(rest),
            None => rest,
        };
        // Past the line end; past the text's end after the last line.
        self.position += line.len() + 1;
        self.number += 1;
        Some((self.number, line.strip_suffix('\r').unwrap_or(line)))
    }
}

fn is_blank(line: &str) -> bool {
    line.bytes().all(|byte| byte.is_ascii_whitespace())
}

/// Line numbers of rows, kept as the places where rows and lines stop advancing
/// together (a blank or bad line in between) rather than one number per row.
#[derive(Default)]
struct LineMap {
    /// (row index in text order, its line), ascending.
    marks: Vec<(usize, usize)>,
    /// The line the next row is on if no line is skipped (0 before the first).
    next_line: usize,
}

impl LineMap {
    /// Row `row` (the next one, in text order) is on line `line`.
    #[inline]
    fn note(&mut self, row: usize, line: usize) {
        if line != self.next_line {
            self.marks.push((row, line));
        }
        self.next_line = line + 1;
    }

    /// The line of row `row` (in text order).
    fn line(&self, row: usize) -> usize {
        let after = self.marks.partition_point(|&(marked, _)| marked <= row);
        match after.checked_sub(1).and_then(|index| self.marks.get(index)) {
            Some(&(marked, line)) => line + (row - marked),
            None => 0,
        }
    }
}

/// The rows read so far, in text order, and the series they belong to.
#[derive(Default)]
struct Table {
    /// Series ids in order of first appearance.
    ids: Vec<String>,
    index_of: HashMap<String, usize>,
    rows: Vec<Row>,
    /// (series, index of its first row) at every change of series between
    /// consecutive rows: one entry per series when each one's rows are together.
    runs: Vec<(usize, usize)>,
    lines: LineMap,
}

impl Table {
    /// The index of the series with this id, a new one if unseen.
    fn series(&mut self, id: &str) -> usize {
        if let Some(&index) = self.index_of.get(id) {
            return index;
        }
        let index = self.ids.len();
        self.ids.push(id.to_owned());
        self.index_of.insert(id.to_owned(), index);
        index
    }

    /// The id of series `index`.
    fn id(&self, index: usize) -> Option<&str> {
        self.ids.get(index).map(String::as_str)
    }

    #[inline]
    fn push(&mut self, series: usize, row: Row, line: usize) {
        if self.runs.last().is_none_or(|&(last, _)| last != series) {
            self.runs.push((series, self.rows.len()));
        }
        self.lines.note(self.rows.len(), line);
        self.rows.push(row);
    }

    /// The rows grouped by series (each series' rows in text order).
    fn group(self) -> (Vec<String>, Grouped) {
        let Table {
            ids,
            rows,
            runs,
            lines,
            ..
        } = self;
        let run_end = |index: usize| runs.get(index + 1).map_or(rows.len(), |run| run.1);
        if runs.len() == ids.len() {
            // Each series' rows are together already (and its run is at its index).
            let ranges = (0..runs.len())
                .map(|index| runs.get(index).map_or(0, |run| run.1)..run_end(index))
                .collect();
            return (
                ids,
                Grouped {
                    rows,
                    order: None,
                    ranges,
                    lines,
                },
            );
        }
        // A stable counting sort by series.
        let mut starts = vec![0usize; ids.len() + 1];
        for (index, &(series, start)) in runs.iter().enumerate() {
            if let Some(count) = starts.get_mut(series + 1) {
                *count += run_end(index) - start;
            }
        }
        for index in 1..starts.len() {
            let before = starts.get(index - 1).copied().unwrap_or(0);
            if let Some(start) = starts.get_mut(index) {
                *start += before;
            }
        }
        let ranges = starts
            .windows(2)
            .map(|pair| match *pair {
                [start, end] => start..end,
                _ => 0..0,
            })
            .collect();
        let mut next = starts;
        let mut grouped = vec![Row { day: 0, value: 0.0 }; rows.len()];
        let mut order = vec![0usize; rows.len()];
        for (index, &(series, start)) in runs.iter().enumerate() {
            for position in start..run_end(index) {
                let (Some(slot), Some(&row)) = (next.get_mut(series), rows.get(position)) else {
                    continue;
                };
                if let (Some(target), Some(source)) = (grouped.get_mut(*slot), order.get_mut(*slot))
                {
                    *target = row;
                    *source = position;
                }
                *slot += 1;
            }
        }
        (
            ids,
            Grouped {
                rows: grouped,
                order: Some(order),
                ranges,
                lines,
            },
        )
    }
}

/// Rows grouped by series.
struct Grouped {
    rows: Vec<Row>,
    /// Index in text order of each row; `None` when it is its position.
    order: Option<Vec<usize>>,
    /// Each series' rows.
    ranges: Vec<Range<usize>>,
    lines: LineMap,
}

impl Grouped {
    fn series_rows(&self, range: &Range<usize>) -> &[Row] {
        self.rows.get(range.clone()).unwrap_or(&[])
    }

    /// The line of the row at `position`.
    fn line(&self, position: usize) -> usize {
        let row = match &self.order {
            Some(order) => order.get(position).copied().unwrap_or(0),
            None => position,
        };
        self.lines.line(row)
    }

    /// Sorts the rows in `range` by date, stably.
    fn sort(&mut self, range: Range<usize>) {
        let rows = &mut self.rows;
        let order = self.order.get_or_insert_with(|| (0..rows.len()).collect());
        let mut keyed: Vec<(Row, usize)> = range
            .clone()
            .filter_map(|position| Some((*rows.get(position)?, *order.get(position)?)))
            .collect();
        keyed.sort_by_key(|(row, _)| row.day);
        for (position, (row, index)) in range.zip(keyed) {
            if let (Some(target), Some(source)) = (rows.get_mut(position), order.get_mut(position))
            {
                *target = row;
                *source = index;
            }
        }
    }
}

/// Parses `unique_id,ds,y` text. `frequency` forces daily or weekly; `None`
/// infers it from the dates. Returns every problem found (see `MAX_ERRORS`).
pub fn parse(text: &str, frequency: Option<Frequency>) -> Result<ParsedCsv, Vec<CsvError>> {
    let mut reader = Reader::new(frequency);
    // At most one row per line end (and one after the last).
    reader.reserve_rows(text.bytes().filter(|&byte| byte == b'\n').count() + 1);
    reader.feed(text);
    reader.finish()
}

/// `parse` for text that comes in pieces (a file read block by block, so that
/// it never has to be in memory whole): `feed` each piece in order, then
/// `finish`. Every piece but the last must end with a line end (a row never
/// spans two pieces); the result is what `parse` gives for all the pieces
/// joined, line numbers included.
#[derive(Default)]
pub struct Reader {
    frequency: Option<Frequency>,
    errors: Errors,
    /// Lines read so far.
    line_count: usize,
    /// The header's columns, once read.
    columns: Option<Columns>,
    /// The header was unusable: the rest is not read.
    failed: bool,
    table: Table,
    months: MonthCache,
    /// The series of the last row, whose id the next row most likely has.
    last: Option<usize>,
    /// Rows of the plain layout take the fast path (false only in tests that
    /// check both paths agree).
    plain_rows: bool,
}

impl Reader {
    /// A reader for text with the given (or, with `None`, inferred) frequency.
    pub fn new(frequency: Option<Frequency>) -> Self {
        Reader {
            frequency,
            plain_rows: true,
            ..Reader::default()
        }
    }

    /// Makes room for `rows` more rows at once (an estimate is fine), so that
    /// reading them does not copy the ones before as the table grows.
    pub fn reserve_rows(&mut self, rows: usize) {
        self.table.rows.reserve(rows);
    }

    /// Rows read so far (without errors).
    pub fn row_count(&self) -> usize {
        self.table.rows.len()
    }

    /// Reads the lines of `text` (see the type's note on pieces).
    pub fn feed(&mut self, text: &str) {
        if self.failed {
            return;
        }
        let text = if self.line_count == 0 && self.columns.is_none() {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        let mut lines = Lines {
            text,
            position: 0,
            number: self.line_count,
        };
        let mut fields: Vec<Cow<'_, str>> = Vec::new();
        let columns = match self.columns.take() {
            Some(columns) => columns,
            None => {
                let Some((header_line, header)) = lines.by_ref().find(|(_, line)| !is_blank(line))
                else {
                    self.line_count = lines.number;
                    return;
                };
                let found = split_fields(header, &mut fields)
                    .map_err(|kind| vec![kind])
                    .and_then(|()| find_columns(&fields));
                match found {
                    Ok(columns) => columns,
                    Err(kinds) => {
                        for kind in kinds {
                            self.errors.push(header_line, kind);
                        }
                        self.failed = true;
                        return;
                    }
                }
            }
        };
        let plain = columns.is_plain() && self.plain_rows;
        // The last row's id, for the next row to compare with: a copy of the
        // one from the piece before, then slices of this one.
        let carried = self
            .last
            .and_then(|series| Some((self.table.id(series)?.to_owned(), series)));
        let mut last: Option<(&str, usize)> =
            carried.as_ref().map(|(id, series)| (id.as_str(), *series));
        loop {
            if plain
                && let Some(read) = plain_row(
                    text,
                    lines.position,
                    last.map(|(id, _)| id),
                    &mut self.months,
                )
            {
                let series = match last {
                    Some((_, series)) if read.same_id => series,
                    _ => {
                        let series = self.table.series(read.id);
                        last = Some((read.id, series));
                        self.last = Some(series);
                        series
                    }
                };
                lines.position = read.next;
                lines.number += 1;
                self.table.push(series, read.row, lines.number);
                continue;
            }
            let Some((line_number, line)) = lines.next() else {
                break;
            };
            if !is_blank(line) {
                self.read_line(line_number, line, &columns, &mut fields);
                // The next row compares with the owned id.
                last = None;
            }
        }
        self.line_count = lines.number;
        self.columns = Some(columns);
    }

    /// Any row, in any layout: split into fields, every problem reported.
    fn read_line<'a>(
        &mut self,
        line_number: usize,
        line: &'a str,
        columns: &Columns,
        fields: &mut Vec<Cow<'a, str>>,
    ) {
        if let Err(kind) = split_fields(line, fields) {
            self.errors.push(line_number, kind);
            return;
        }
        if fields.len() != columns.count {
            self.errors.push(
                line_number,
                CsvErrorKind::FieldCount {
                    expected: columns.count,
                    found: fields.len(),
                },
            );
            return;
        }
        let field = |index: usize| fields.get(index).map_or("", |field| field.as_ref());
        let id = field(columns.id);
        let day = parse_date(field(columns.date).trim_ascii());
        let value = parse_value(field(columns.value).trim_ascii());
        let mut row_ok = true;
        if id.is_empty() {
            self.errors.push(line_number, CsvErrorKind::EmptyId);
            row_ok = false;
        }
        let day = match day {
            Ok(day) => day,
            Err(kind) => {
                self.errors.push(line_number, kind);
                row_ok = false;
                0
            }
        };
        let value = match value {
            Ok(value) => value,
            Err(kind) => {
                self.errors.push(line_number, kind);
                row_ok = false;
                0.0
            }
        };
        if !row_ok {
            return;
        }
        let series = match self.last {
            Some(series) if self.table.id(series) == Some(id) => series,
            _ => self.table.series(id),
        };
        self.last = Some(series);
        self.table.push(series, Row { day, value }, line_number);
    }

    /// The series read, or every problem found.
    pub fn finish(self) -> Result<ParsedCsv, Vec<CsvError>> {
        let mut errors = self.errors;
        if self.columns.is_none() {
            if !self.failed {
                errors.push(0, CsvErrorKind::EmptyInput);
            }
            return Err(errors.finish());
        }
        finish(self.table, self.frequency, errors)
    }
}

/// Everything after reading the rows: dates sorted and checked per series, the
/// frequency, missing periods filled.
fn finish(
    table: Table,
    frequency: Option<Frequency>,
    mut errors: Errors,
) -> Result<ParsedCsv, Vec<CsvError>> {
    let (ids, mut grouped) = table.group();
    let mut reordered_series = 0;
    let mut all_gaps = Vec::with_capacity(ids.len());
    for (id, range) in ids.iter().zip(grouped.ranges.clone()) {
        if !grouped.series_rows(&range).is_sorted_by_key(|row| row.day) {
            grouped.sort(range.clone());
            reordered_series += 1;
        }
        let rows = grouped.series_rows(&range);
        let gaps = Gaps::of(rows);
        if gaps.duplicate {
            for (offset, pair) in rows.windows(2).enumerate() {
                if let [first, second] = pair
                    && first.day == second.day
                {
                    let position = range.start + offset;
                    let (first_line, second_line) =
                        (grouped.line(position), grouped.line(position + 1));
                    errors.push(
                        second_line.max(first_line),
                        CsvErrorKind::DuplicateDate {
                            id: id.clone(),
                            date: date_from_day(second.day),
                            first_line: second_line.min(first_line),
                        },
                    );
                }
            }
        }
        all_gaps.push(gaps);
    }
    if !errors.is_empty() {
        return Err(errors.finish());
    }

    let frequency = match frequency {
        Some(frequency) => frequency,
        None => match infer_frequency(&all_gaps, &grouped) {
            Ok(frequency) => frequency,
            Err((line, kind)) => {
                errors.push(line, kind);
                return Err(errors.finish());
            }
        },
    };
    let step = frequency.step_days() as i64;

    let mut parsed = Vec::with_capacity(ids.len());
    let mut filled_periods = 0u64;
    for ((id, range), gaps) in ids.into_iter().zip(&grouped.ranges).zip(&all_gaps) {
        let rows = grouped.series_rows(range);
        let (Some(first), Some(last_row)) = (rows.first(), rows.last()) else {
            continue;
        };
        let first_day = first.day;
        // Every gap is a whole number of days; of weeks, for weekly data?
        let grid_ok = step != 7 || gaps.whole_weeks;
        if !grid_ok {
            for (offset, pair) in rows.windows(2).enumerate() {
                if let [previous, row] = pair
                    && (i64::from(row.day) - i64::from(previous.day)) % step != 0
                {
                    let position = range.start + offset;
                    errors.push(
                        grouped.line(position + 1),
                        CsvErrorKind::OffWeeklyGrid {
                            id: id.clone(),
                            date: date_from_day(row.day),
                            previous: date_from_day(previous.day),
                            previous_line: grouped.line(position),
                        },
                    );
                }
            }
        }
        let periods = ((i64::from(last_row.day) - i64::from(first_day)) / step + 1) as u64;
        if periods > MAX_PERIODS {
            errors.push(
                grouped.line(range.start),
                CsvErrorKind::TooManyPeriods { id, periods },
            );
            continue;
        }
        if !grid_ok {
            continue;
        }
        let values = if periods == rows.len() as u64 {
            // No gap: the rows are the periods.
            rows.iter().map(|row| row.value).collect()
        } else {
            let mut values = vec![0.0; periods as usize];
            for row in rows {
                let period = ((i64::from(row.day) - i64::from(first_day)) / step) as usize;
                if let Some(slot) = values.get_mut(period) {
                    *slot = row.value;
                }
            }
            values
        };
        filled_periods += periods - rows.len() as u64;
        match Series::new(id, date_from_day(first_day), frequency, values) {
            Ok(series) => parsed.push(series),
            // Values were checked row by row; keep the report complete anyway.
            Err(error) => errors.push(
                grouped.line(range.start),
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

/// The gaps between consecutive dates of one series' sorted rows, in one pass.
struct Gaps {
    /// Some gap is 0 (a date twice).
    duplicate: bool,
    /// Every gap is a whole number of weeks.
    whole_weeks: bool,
    /// The smallest gap and the offset (in the series' rows) of the first row
    /// after one that small.
    smallest: Option<(i64, usize)>,
}

impl Gaps {
    fn of(rows: &[Row]) -> Self {
        let mut gaps = Gaps {
            duplicate: false,
            whole_weeks: true,
            smallest: None,
        };
        for (offset, pair) in rows.windows(2).enumerate() {
            if let [previous, row] = pair {
                let gap = i64::from(row.day) - i64::from(previous.day);
                gaps.duplicate |= gap == 0;
                gaps.whole_weeks &= gap % 7 == 0;
                if gaps.smallest.is_none_or(|(least, _)| gap < least) {
                    gaps.smallest = Some((gap, offset + 1));
                }
            }
        }
        gaps
    }
}

/// A row of a `unique_id,ds,y` file in its common shape (an unquoted id, a
/// `YYYY-MM-DD` date, a plain decimal value, nothing else), read straight from
/// the bytes at `start`: the offset after its line end, its id and the row.
/// `last_id` is the previous row's id, compared before scanning for a comma.
/// `None` for anything else (quotes, spaces, times, other number forms, bad
/// values, blank lines), which the general path then reads or reports exactly
/// as it would any line.
fn plain_row<'a>(
    text: &'a str,
    start: usize,
    last_id: Option<&str>,
    months: &mut MonthCache,
) -> Option<PlainRow<'a>> {
    let bytes = text.as_bytes();
    let (id_end, same_id) = match last_id {
        Some(last)
            if bytes.get(start..start + last.len()) == Some(last.as_bytes())
                && bytes.get(start + last.len()) == Some(&b',') =>
        {
            (start + last.len(), true)
        }
        _ => {
            let mut end = start;
            loop {
                match *bytes.get(end)? {
                    b',' => break,
                    b'"' | b'\n' | b'\r' => return None,
                    _ => end += 1,
                }
            }
            (end, false)
        }
    };
    if id_end == start {
        return None;
    }
    // Cut at ASCII bytes, so on character boundaries.
    let id = text.get(start..id_end)?;
    let date_start = id_end + 1;
    let day = months.day(bytes.get(date_start..date_start + 10)?)?;
    if bytes.get(date_start + 10) != Some(&b',') {
        return None;
    }
    // The value: `parse_plain_decimal`'s form, read on the way to the line end.
    let value_start = date_start + 11;
    let mut position = value_start;
    let mut mantissa: i64 = 0;
    let mut digits = 0usize;
    // The digits before the point, as a number, once the point is read.
    let mut integer = None;
    let mut fraction_start = None;
    let end = loop {
        match bytes.get(position) {
            Some(&byte @ b'0'..=b'9') => {
                digits += 1;
                if digits > 15 {
                    return None;
                }
                mantissa = mantissa * 10 + i64::from(byte - b'0');
            }
            Some(b'.') if fraction_start.is_none() && position > value_start => {
                fraction_start = Some(position + 1);
                integer = Some(mantissa);
            }
            other => break other,
        }
        position += 1;
    };
    let fraction_digits = position - fraction_start.unwrap_or(position);
    if digits == 0 || fraction_start == Some(position) {
        return None;
    }
    let scale = POWERS_OF_TEN.get(fraction_digits)?;
    // mantissa < 10^15 < 2^53, so every number here is exact. A whole number
    // (no point, or zeros after it: `3.0`) needs no division; otherwise one
    // correctly rounded division, as `parse_plain_decimal`.
    let value = match integer {
        Some(integer) if integer as f64 * scale == mantissa as f64 => integer as f64,
        None => mantissa as f64,
        Some(_) => mantissa as f64 / scale,
    };
    let next = match end {
        None => position,
        Some(b'\n') => position + 1,
        // `\r`: accepted before a line end or at the end of the text.
        Some(b'\r') => match bytes.get(position + 1) {
            None => position + 1,
            Some(b'\n') => position + 2,
            Some(_) => return None,
        },
        Some(_) => return None,
    };
    Some(PlainRow {
        next,
        id,
        same_id,
        row: Row { day, value },
    })
}

/// What `plain_row` read.
struct PlainRow<'a> {
    /// Offset of the next line.
    next: usize,
    id: &'a str,
    /// The id is the previous row's.
    same_id: bool,
    row: Row,
}

/// The day number of the first of the month last seen, so that consecutive
/// dates in one month cost two digits each.
#[derive(Default)]
struct MonthCache {
    /// `YYYY-MM-` of that month as a number (0 before the first, matching no
    /// date).
    prefix: u64,
    /// Its day number minus one.
    base: i32,
    /// Its number of days.
    length: u32,
}

impl MonthCache {
    /// The day number of a `YYYY-MM-DD` date, `None` if it is not one.
    fn day(&mut self, date: &[u8]) -> Option<i32> {
        let (prefix, day) = date.split_at_checked(8)?;
        let day = digits(day)?;
        let key = u64::from_le_bytes(prefix.try_into().ok()?);
        if key != self.prefix {
            let (year, month) = match prefix {
                [y0, y1, y2, y3, b'-', m0, m1, b'-'] => {
                    (digits(&[*y0, *y1, *y2, *y3])?, digits(&[*m0, *m1])?)
                }
                _ => return None,
            };
            self.length = month_length(year, month)?;
            self.base = days_from_ce(year, month, 1)? - 1;
            self.prefix = key;
        }
        (1..=self.length)
            .contains(&day)
            .then(|| self.base + day as i32)
    }
}

/// The number written by ASCII digits alone (at most 9 of them).
fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 9 {
        return None;
    }
    bytes.iter().try_fold(0u32, |total, &byte| {
        byte.is_ascii_digit()
            .then(|| total * 10 + u32::from(byte - b'0'))
    })
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
    let month_days = month_length(year, month)?;
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

/// Days in `month` (1-12) of `year` in the Gregorian calendar.
fn month_length(year: u32, month: u32) -> Option<u32> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => Some(31),
        4 | 6 | 9 | 11 => Some(30),
        2 if leap => Some(29),
        2 => Some(28),
        _ => None,
    }
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
/// frequency overrides. `gaps` are those of each series of `grouped`, in order.
fn infer_frequency(gaps: &[Gaps], grouped: &Grouped) -> Result<Frequency, (usize, CsvErrorKind)> {
    let all_whole_weeks = gaps.iter().all(|gaps| gaps.whole_weeks);
    // The smallest gap and the position of the first row showing it.
    let mut smallest: Option<(i64, usize)> = None;
    for (gaps, range) in gaps.iter().zip(&grouped.ranges) {
        if let Some((gap, offset)) = gaps.smallest
            && smallest.is_none_or(|(least, _)| gap < least)
        {
            smallest = Some((gap, range.start + offset));
        }
    }
    match smallest {
        None => Err((0, CsvErrorKind::CannotInferFrequency)),
        Some((7, _)) if all_whole_weeks => Ok(Frequency::Weekly),
        Some((1, _)) => Ok(Frequency::Daily),
        Some((days, position)) => Err((
            grouped.line(position),
            CsvErrorKind::UnsupportedSpacing { days },
        )),
    }
}

/// Writes `unique_id,ds,y_hat`, one row per series and future period, series
/// in the order given.
pub fn format_forecasts(forecasts: &[SeriesForecast]) -> String {
    let rows: usize = forecasts.iter().map(|forecast| forecast.point.len()).sum();
    let mut out = String::with_capacity(20 + rows * 40);
    let mut writer = ForecastWriter::new();
    writer.header(&mut out);
    for forecast in forecasts {
        writer.rows(&mut out, forecast);
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
    let mut out = String::new();
    let mut writer = ForecastWriter::with_levels(levels)?;
    writer.header(&mut out);
    for forecast in forecasts {
        writer.rows(&mut out, forecast);
    }
    Ok(out)
}

/// Writes what `format_forecasts` (or `format_forecasts_with_intervals`)
/// writes, one series at a time: `header`, then `rows` of each forecast, so that
/// a caller need not hold every forecast at once. Keeps the text of recent dates
/// and numbers for reuse.
#[derive(Debug, Default)]
pub struct ForecastWriter {
    /// Interval coverage levels in percent, each in (0, 100].
    levels: Vec<f64>,
    texts: Texts,
}

impl ForecastWriter {
    /// `unique_id,ds,y_hat` rows.
    pub fn new() -> Self {
        ForecastWriter::default()
    }

    /// Rows with interval columns for each level in percent (in (0, 100]).
    pub fn with_levels(levels: &[f64]) -> Result<Self, InvalidLevel> {
        for &level in levels {
            check_level(level / 100.0).map_err(|_| InvalidLevel { level })?;
        }
        Ok(ForecastWriter {
            levels: levels.to_vec(),
            texts: Texts::default(),
        })
    }

    /// The header line.
    pub fn header(&self, out: &mut String) {
        out.push_str("unique_id,ds,y_hat");
        for level in &self.levels {
            let _ = write!(out, ",y_hat-lo-{level},y_hat-hi-{level}");
        }
        out.push('\n');
    }

    /// One line per forecast period of `forecast`.
    pub fn rows(&mut self, out: &mut String, forecast: &SeriesForecast) {
        // Levels were checked when the writer was made.
        let bounds: Vec<Vec<Interval>> = self
            .levels
            .iter()
            .map(|&level| {
                prediction_intervals(&forecast.point, &forecast.fit.backtest, level / 100.0)
                    .unwrap_or_default()
            })
            .collect();
        let id = quoted_id(&forecast.id);
        for (index, (date, value)) in forecast.dates.iter().zip(&forecast.point).enumerate() {
            out.push_str(&id);
            out.push(',');
            out.push_str(self.texts.date(index, *date));
            out.push(',');
            out.push_str(self.texts.number(*value));
            for level in &bounds {
                if let Some(interval) = level.get(index) {
                    let _ = write!(out, ",{},{}", interval.lower, interval.upper);
                }
            }
            out.push('\n');
        }
    }
}

/// The id as a CSV field: quoted (quotes doubled) when it holds a comma, a
/// quote or a line break; and inert in a spreadsheet: an id that starts like
/// a formula (`=`, `+`, `-`, `@`, tab, carriage return) gets a leading `'`
/// (OWASP's advice for CSV injection), so opening the output never runs it.
fn quoted_id(id: &str) -> Cow<'_, str> {
    let formula = id.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let id: Cow<'_, str> = if formula {
        Cow::Owned(format!("'{id}"))
    } else {
        Cow::Borrowed(id)
    };
    if id.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", id.replace('"', "\"\"")))
    } else {
        id
    }
}

/// Texts of dates and numbers, kept for reuse: the forecasts of many series
/// share their dates, and a flat forecast repeats one number.
#[derive(Debug, Default)]
struct Texts {
    /// For each step ahead, the last date written there and its text.
    dates: Vec<(NaiveDate, String)>,
    /// The bits of the last number written and its text.
    number: Option<(u64, String)>,
}

impl Texts {
    /// `YYYY-MM-DD` of the date of step `index`.
    fn date(&mut self, index: usize, date: NaiveDate) -> &str {
        while self.dates.len() <= index {
            self.dates.push((date, String::new()));
        }
        let Some((known, text)) = self.dates.get_mut(index) else {
            return "";
        };
        if text.is_empty() || *known != date {
            *known = date;
            text.clear();
            write_date(text, date);
        }
        text
    }

    /// The shortest text that reads back as `value` (`Display` of f64).
    fn number(&mut self, value: f64) -> &str {
        let bits = value.to_bits();
        let (known, text) = self.number.get_or_insert_with(|| (!bits, String::new()));
        if *known != bits {
            *known = bits;
            text.clear();
            let _ = write!(text, "{value}");
        }
        text
    }
}

/// `YYYY-MM-DD` (the year zero-padded to four digits, as `{:04}` writes it).
fn write_date(out: &mut String, date: NaiveDate) {
    let (year, month, day) = (date.year(), date.month(), date.day());
    match u32::try_from(year) {
        Ok(year) if year <= 9999 => {
            let digit = |value: u32| char::from(b'0' + (value % 10) as u8);
            for character in [
                digit(year / 1000),
                digit(year / 100),
                digit(year / 10),
                digit(year),
                '-',
                digit(month / 10),
                digit(month),
                '-',
                digit(day / 10),
                digit(day),
            ] {
                out.push(character);
            }
        }
        _ => {
            let _ = write!(out, "{year:04}-{month:02}-{day:02}");
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn ids_that_a_spreadsheet_would_run_are_made_inert() {
        assert_eq!(quoted_id("tee-black"), "tee-black");
        assert_eq!(quoted_id("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(quoted_id("+1"), "'+1");
        assert_eq!(quoted_id("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(quoted_id("-2+3"), "'-2+3");
        assert_eq!(quoted_id("a,b"), "\"a,b\"");
    }

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

    /// Random rows, good and bad, in every shape the fast path takes or
    /// leaves: its results (and those of the text fed in pieces) are exactly the
    /// general path's, errors and line numbers included.
    #[test]
    fn fast_path_and_pieces_agree_with_the_general_path() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let ids = [
            "a",
            "b",
            "ab",
            "Bad Habit 1",
            "\"q,1\"",
            "\"a\"",
            " a",
            "a\"b",
        ];
        let values = [
            "0",
            "1",
            "2.5",
            "12.0",
            "3.25",
            "7.",
            ".5",
            "1e3",
            "-1",
            "",
            "NaN",
            " 3",
            "0.000",
            "1234567890123456",
            "00012.50",
        ];
        for round in 0..400 {
            let mut text = String::new();
            if round % 17 == 0 {
                text.push('\u{feff}');
            }
            if round % 13 == 0 {
                text.push('\n');
            }
            text.push_str(if round % 11 == 0 {
                "y,ds,unique_id\n"
            } else {
                "unique_id,ds,y\n"
            });
            let rows = 1 + next(40);
            let weekly = round % 2 == 0;
            let mut next_day = [0u64; 8];
            for _ in 0..rows {
                let which = next(100) as usize % if round % 3 == 0 { ids.len() } else { 3 };
                let id = ids[which];
                let day = if next(25) == 0 {
                    next(30)
                } else {
                    next_day[which]
                };
                next_day[which] = day + 1 + u64::from(next(8) == 0);
                let day = if weekly { day * 7 } else { day };
                let date = NaiveDate::from_ymd_opt(2024, 1, 7)
                    .and_then(|start| start.checked_add_days(chrono::Days::new(day)))
                    .map(|date| date.to_string())
                    .unwrap_or_default();
                let date = match next(60) {
                    0 => "2024-02-30".to_owned(),
                    1 => format!("{date} 00:00:00"),
                    2 => format!(" {date}"),
                    _ => date,
                };
                let value = if next(12) == 0 {
                    values[next(values.len() as u64) as usize]
                } else {
                    values[next(5) as usize]
                };
                let line = if round % 11 == 0 {
                    format!("{value},{date},{id}")
                } else {
                    match next(120) {
                        0 => format!("{id},{date}"),
                        1 => format!("{id},{date},{value},x"),
                        _ => format!("{id},{date},{value}"),
                    }
                };
                text.push_str(&line);
                text.push_str(match next(20) {
                    0 => "\r\n",
                    1 => "\n\n",
                    2 => "\n  \n",
                    _ => "\n",
                });
            }
            if round % 5 == 0 {
                text.pop();
            }
            let frequency = match round % 7 {
                0 => Some(Frequency::Daily),
                1 => Some(Frequency::Weekly),
                _ => None,
            };
            let fast = parse(&text, frequency);
            let mut general = Reader::new(frequency);
            general.plain_rows = false;
            general.feed(&text);
            assert_eq!(fast, general.finish(), "{text:?}");
            // The same text in pieces cut after line ends.
            let mut pieces = Reader::new(frequency);
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let cut = rest
                    .match_indices('\n')
                    .nth(next(6) as usize)
                    .map_or(rest.len(), |(index, _)| index + 1);
                let (piece, after) = rest.split_at(cut);
                pieces.feed(piece);
                rest = after;
            }
            assert_eq!(fast, pieces.finish(), "{text:?}");
        }
    }

    #[test]
    fn dates_are_written_as_the_standard_formatter_writes_them() {
        for date in [
            NaiveDate::MIN,
            NaiveDate::MAX,
            date(-1, 3, 4),
            date(0, 12, 31),
            date(1, 1, 1),
            date(2024, 2, 29),
            date(9999, 12, 31),
            date(10000, 1, 1),
        ] {
            let mut text = String::new();
            write_date(&mut text, date);
            assert_eq!(
                text,
                format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
            );
        }
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
