//! Demand forecasting (pure). The forecaster arrives in its own issue; this
//! module holds the place in the layering so the boundary test covers it.
