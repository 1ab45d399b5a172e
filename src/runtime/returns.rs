//! Return use cases: a brand requests one (within its brand's window, on
//! the domain clock), the operator records the inspection, the brand
//! cancels one not yet picked up. The waves plan the pickups (`waves`);
//! couriers move them through the handoff use cases (`operations`).

use super::Runtime;
use super::wake::Wake;
use crate::domain::DAY_MS;
use crate::domain::intake::FieldError;
use crate::domain::returns::{InspectionLine, RequestedLine};
use crate::store::{NewReturn, ReturnRecord, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReturnError {
    /// The request or inspection is refused; every problem with its pointer.
    #[error("the return is refused")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Runtime {
    /// A brand (`brand`: its own orders only; None for admins) asks for
    /// units of a delivered order back.
    pub async fn request_return(
        &self,
        order_id: &str,
        brand: Option<&str>,
        lines: Vec<RequestedLine>,
        reason: String,
    ) -> Result<ReturnRecord, ReturnError> {
        let order = self
            .store
            .get_order(order_id, brand)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("order {order_id}")))?;
        let window_days = self.network.returns.window_days_for(order.brand.as_str());
        let request = NewReturn {
            id: uuid::Uuid::now_v7().hyphenated().to_string(),
            order_id: order_id.to_string(),
            brand: brand.map(str::to_string),
            lines,
            reason,
            window_ms: i64::from(window_days) * DAY_MS,
        };
        let record = self
            .store
            .request_return(&request, self.clock.now_ms())
            .await?
            .map_err(ReturnError::Invalid)?;
        metrics::counter!("fabflow_returns_requested_total").increment(1);
        self.wakers.wake(Wake::OUTBOX);
        Ok(record)
    }

    /// The operator restocks or scraps every unit of a received return
    /// (audited as `actor`'s).
    pub async fn inspect_return(
        &self,
        id: &str,
        lines: &[InspectionLine],
        actor: &str,
    ) -> Result<ReturnRecord, ReturnError> {
        let record = self
            .store
            .inspect_return(id, lines, actor, self.clock.now_ms())
            .await?
            .map_err(ReturnError::Invalid)?;
        if let Some(inspection) = &record.inspection {
            let restocked: u32 = inspection.iter().map(|l| l.restocked).sum();
            let scrapped: u32 = inspection.iter().map(|l| l.scrapped).sum();
            metrics::counter!("fabflow_returned_units_total", "outcome" => "restocked")
                .increment(u64::from(restocked));
            metrics::counter!("fabflow_returned_units_total", "outcome" => "scrapped")
                .increment(u64::from(scrapped));
        }
        self.wakers.wake(Wake::OUTBOX);
        Ok(record)
    }

    /// Cancels a return whose parcel has not left the customer (`brand`:
    /// its own only); its planned stops are dropped from the schedules.
    pub async fn cancel_return(
        &self,
        id: &str,
        brand: Option<&str>,
        actor: &str,
    ) -> Result<ReturnRecord, StoreError> {
        let record = self
            .store
            .cancel_return(id, brand, actor, self.clock.now_ms())
            .await?;
        self.wakers.wake(Wake::OUTBOX);
        self.schedules
            .mark_all(self.network.couriers.iter().map(|c| c.id.as_str()));
        Ok(record)
    }
}
