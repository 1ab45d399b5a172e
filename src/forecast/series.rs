//! Demand series: one unique id, a first date, a frequency (daily or weekly) and
//! one value per period.
//!
//! Invariant: a `Series` holds only finite values >= 0 and its periods are
//! consecutive (the CSV layer fills missing periods with 0 before building one),
//! so period `i` is `start + i * step`. Dates are computed with checked
//! arithmetic; a date past chrono's range is an error, never a panic.

use std::fmt;

use chrono::{Days, NaiveDate};

/// How far apart consecutive periods are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Frequency {
    /// One period per calendar day.
    Daily,
    /// One period per 7 days (any weekday, the same for the whole series).
    Weekly,
}

impl Frequency {
    /// Days between consecutive periods: 1 or 7.
    pub fn step_days(self) -> u64 {
        match self {
            Frequency::Daily => 1,
            Frequency::Weekly => 7,
        }
    }

    /// Periods in one seasonal cycle: a week of days, a year of weeks.
    pub fn season_length(self) -> usize {
        match self {
            Frequency::Daily => 7,
            Frequency::Weekly => 52,
        }
    }

    /// `daily` or `weekly`.
    pub fn name(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
        }
    }

    /// Parses `daily`/`d` or `weekly`/`w` (as a command-line flag would give it).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "daily" | "d" | "D" => Some(Frequency::Daily),
            "weekly" | "w" | "W" => Some(Frequency::Weekly),
            _ => None,
        }
    }
}

/// A demand value that is NaN, infinite or negative, at a 0-based period index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InvalidValue {
    /// Position of the value (0-based) in what was given.
    pub index: usize,
    /// The value itself.
    pub value: f64,
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "demand {} at period {} is not a finite number >= 0",
            self.value, self.index
        )
    }
}

impl std::error::Error for InvalidValue {}

/// True for values a series may hold: finite and >= 0.
pub fn is_valid_demand(value: f64) -> bool {
    value.is_finite() && value >= 0.0
}

/// Checks every value; the first bad one is the error.
pub fn validate_values(values: &[f64]) -> Result<(), InvalidValue> {
    match values
        .iter()
        .enumerate()
        .find(|&(_, &value)| !is_valid_demand(value))
    {
        Some((index, &value)) => Err(InvalidValue { index, value }),
        None => Ok(()),
    }
}

/// A date that chrono cannot represent (past the year 262142).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateOutOfRange {
    /// The period index (0-based from the series start) whose date overflowed.
    pub period: u64,
}

impl fmt::Display for DateOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the date of period {} is out of the supported calendar range",
            self.period
        )
    }
}

impl std::error::Error for DateOutOfRange {}

/// One demand series with its calendar.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    id: String,
    start: NaiveDate,
    frequency: Frequency,
    values: Vec<f64>,
}

impl Series {
    /// A series whose period `i` is `start + i` days or weeks. Every value must be
    /// finite and >= 0; `-0.0` is stored as `0.0`. An empty series is allowed
    /// (it forecasts zero).
    pub fn new(
        id: impl Into<String>,
        start: NaiveDate,
        frequency: Frequency,
        mut values: Vec<f64>,
    ) -> Result<Self, InvalidValue> {
        validate_values(&values)?;
        for value in &mut values {
            // -0.0 == 0.0, so this only normalises the sign bit.
            if *value == 0.0 {
                *value = 0.0;
            }
        }
        Ok(Series {
            id: id.into(),
            start,
            frequency,
            values,
        })
    }

    /// The series' unique id (SKU, or SKU and factory, as the caller keys it).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Date of the first period.
    pub fn start(&self) -> NaiveDate {
        self.start
    }

    /// Daily or weekly.
    pub fn frequency(&self) -> Frequency {
        self.frequency
    }

    /// One value per period, oldest first.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Number of periods.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the series has no periods.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Date of period `period` (0-based; may lie past the end, for forecasts).
    pub fn date_of(&self, period: u64) -> Result<NaiveDate, DateOutOfRange> {
        period
            .checked_mul(self.frequency.step_days())
            .and_then(|days| self.start.checked_add_days(Days::new(days)))
            .ok_or(DateOutOfRange { period })
    }

    /// Dates of the `horizon` periods after the last one.
    pub fn future_dates(&self, horizon: usize) -> Result<Vec<NaiveDate>, DateOutOfRange> {
        let first = self.values.len() as u64;
        (0..horizon as u64)
            .map(|step| self.date_of(first + step))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("test date")
    }

    #[test]
    fn rejects_nan_infinite_and_negative_values() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, -1e-300] {
            let error = Series::new("a", date(2024, 1, 1), Frequency::Daily, vec![1.0, bad])
                .expect_err("invalid value accepted");
            assert_eq!(error.index, 1);
        }
    }

    #[test]
    fn negative_zero_is_zero() {
        let series =
            Series::new("a", date(2024, 1, 1), Frequency::Daily, vec![-0.0]).expect("valid");
        assert!(series.values()[0].is_sign_positive());
    }

    #[test]
    fn future_dates_follow_the_last_period() {
        let series =
            Series::new("a", date(2024, 12, 29), Frequency::Weekly, vec![1.0, 2.0]).expect("valid");
        assert_eq!(
            series.future_dates(2).expect("in range"),
            vec![date(2025, 1, 12), date(2025, 1, 19)]
        );
        let daily =
            Series::new("b", date(2024, 2, 28), Frequency::Daily, vec![0.0]).expect("valid");
        assert_eq!(
            daily.future_dates(1).expect("in range"),
            vec![date(2024, 2, 29)]
        );
    }

    #[test]
    fn dates_past_the_calendar_are_an_error() {
        let series = Series::new("a", NaiveDate::MAX, Frequency::Daily, vec![1.0]).expect("valid");
        assert_eq!(series.future_dates(1), Err(DateOutOfRange { period: 1 }));
        assert_eq!(
            series.date_of(u64::MAX),
            Err(DateOutOfRange { period: u64::MAX })
        );
    }
}
