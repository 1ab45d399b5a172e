//! Order use cases: accept one order, import a whole event's file, cancel.
//! Each validates against the network, places the order at a factory, stores
//! it with its jobs through intake (group commit) and wakes who must look.
//!
//! Invariant: a caller learns an order was accepted only after its
//! transaction committed; an import is stored whole or not at all; the reply
//! stored for an idempotency key is rendered by the caller before the
//! transaction, so a replay is byte-identical.

use super::Runtime;
use super::intake::IntakeError;
use super::wake::Wake;
use crate::domain::intake::{FieldError, OrderRequest, validate};
use crate::domain::{BrandId, OrderId};
use crate::plan::choose_factory;
use crate::store::{AcceptOutcome, Accepted, Idempotency, NewOrder, OrderRecord, StoreError};
use std::collections::BTreeSet;

/// Who submits orders, as far as ownership goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitter {
    /// A brand: its own orders only.
    Brand(String),
    /// An admin: names the brand in each order.
    Admin,
}

/// An idempotency key and the hash of the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: String,
}

/// How a submission ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted<T> {
    /// Stored now; `reply` is what the caller rendered for it.
    Created { value: T, reply: String },
    /// The key was used before with the same request: the first reply.
    Replayed { status: u16, reply: String },
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("the order is invalid")]
    Invalid(Vec<FieldError>),
    #[error("this idempotency key was used with a different request")]
    KeyReused,
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Some orders of an import are at fault; none was stored.
    #[error("orders of the file are invalid; nothing was imported")]
    ImportRefused(Vec<ImportLine>),
    #[error("rendering the reply failed: {0}")]
    Render(String),
}

/// One order of an import file, as read and as judged.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportLine {
    /// 1-based line in the file where the order starts.
    pub line: usize,
    pub external_ref: Option<String>,
    /// The new order's id (only when the whole file is stored).
    pub id: Option<String>,
    /// What is wrong with it (empty when it is fine).
    pub errors: Vec<FieldError>,
}

/// A stored import: every order of the file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub lines: Vec<ImportLine>,
}

/// A line of an import file: where it starts, and the order read there or
/// what is wrong with it.
pub type ParsedLine = (usize, Result<OrderRequest, Vec<FieldError>>);

impl Runtime {
    /// What the latest backlog says of a new order (nothing before the
    /// promise watch's first round). The watch stores it and raises the
    /// at-risk flag at its next round: within a second, or up to ten more
    /// while a burst of orders keeps intake busy.
    fn estimate(&self, order: &crate::store::NewOrder) -> crate::store::Promise {
        let Some(backlog) = self.promises.latest() else {
            return crate::store::Promise::default();
        };
        let steps: Vec<crate::plan::promise::StepWork> = order
            .jobs
            .iter()
            .map(|job| crate::plan::promise::StepWork {
                line: job.line_index as i64,
                step: job.step_index as i64,
                process: job.process.clone(),
                seconds: f64::from(job.quantity) * job.seconds_per_unit,
                token: None,
            })
            .collect();
        let now = self.clock.now_ms();
        let lead = self.lead.ms(order.factory.as_str(), order.location);
        let estimate = backlog.estimate(&order.factory, &steps, order.deadline_ms, now, lead);
        crate::store::Promise {
            eta_ready_ms: estimate.ready_ms,
            eta_delivery_ms: estimate.delivery_ms,
            at_risk: estimate.at_risk.map(|reason| reason.as_str().to_string()),
            at_risk_ms: estimate.at_risk.map(|_| now),
        }
    }

    /// Validates one order, places it at a factory, stores it with its jobs
    /// and wakes the scheduler. `render` makes the reply stored for the key.
    pub async fn accept_order<R>(
        &self,
        submitter: &Submitter,
        request: OrderRequest,
        key: Option<IdempotencyKey>,
        render: R,
    ) -> Result<Submitted<OrderRecord>, OrderError>
    where
        R: FnOnce(&OrderRecord) -> Result<String, String>,
    {
        let mut order = self
            .prepare(submitter, request)
            .map_err(OrderError::Invalid)?;
        let mut record = order.record();
        record.promise = self.estimate(&order);
        let reply = render(&record).map_err(OrderError::Render)?;
        order.idempotency = key.map(|key| Idempotency {
            key: key.key,
            request_hash: key.request_hash,
            status: 201,
            response: reply.clone(),
        });
        let accepted = self.intake.submit(vec![order]).await?;
        self.wake_for(&accepted);
        settle(accepted.outcomes.into_iter().next(), record, reply)
    }

    /// After a commit: the scheduler, for the new jobs; the couriers'
    /// waves only if stock made an order ready at once (each wave wake-up
    /// reads the zone's ready orders, which at thousands of orders a second
    /// would be thousands of reads finding nothing new).
    fn wake_for(&self, accepted: &Accepted) {
        if accepted.made_ready {
            self.wakers.wake(Wake::SCHEDULER | Wake::WAVES);
        } else {
            self.wakers.wake(Wake::SCHEDULER);
        }
    }

    /// Validates every order of a file; stores them all in one transaction
    /// if none is at fault, none otherwise. `render` makes the reply stored
    /// for the key (the report of a stored import).
    pub async fn import_orders<R>(
        &self,
        submitter: &Submitter,
        parsed: Vec<ParsedLine>,
        key: Option<IdempotencyKey>,
        render: R,
    ) -> Result<Submitted<Import>, OrderError>
    where
        R: FnOnce(&Import) -> Result<String, String>,
    {
        let mut lines = Vec::with_capacity(parsed.len());
        let mut orders = Vec::with_capacity(parsed.len());
        for (index, (line, request)) in parsed.into_iter().enumerate() {
            let external_ref = request.as_ref().ok().and_then(|r| r.external_ref.clone());
            match request.and_then(|request| self.prepare(submitter, request)) {
                Ok(mut order) => {
                    // The file's orders are stored together or not at all.
                    order.follows = index > 0;
                    lines.push(ImportLine {
                        line,
                        external_ref,
                        id: Some(order.id.to_string()),
                        errors: Vec::new(),
                    });
                    orders.push(order);
                }
                Err(errors) => lines.push(ImportLine {
                    line,
                    external_ref,
                    id: None,
                    errors,
                }),
            }
        }
        if lines.iter().any(|line| !line.errors.is_empty()) {
            for line in &mut lines {
                line.id = None;
            }
            return Err(OrderError::ImportRefused(lines));
        }
        let import = Import { lines };
        let reply = render(&import).map_err(OrderError::Render)?;
        if let (Some(key), Some(first)) = (key, orders.first_mut()) {
            // One key for the whole file; its stored reply is this report.
            first.idempotency = Some(Idempotency {
                key: key.key,
                request_hash: key.request_hash,
                status: 201,
                response: reply.clone(),
            });
        }
        let accepted = self.intake.submit(orders).await?;
        self.wake_for(&accepted);
        settle(accepted.outcomes.into_iter().next(), import, reply)
    }

    /// Cancels an order with no job on a machine yet (`brand`: the caller's
    /// own orders only).
    pub async fn cancel_order(
        &self,
        id: &str,
        brand: Option<&str>,
        actor: &str,
    ) -> Result<OrderRecord, StoreError> {
        let order = self
            .store
            .cancel_order(id, brand, actor, self.clock.now_ms())
            .await?;
        self.wakers.wake(Wake::OUTBOX);
        Ok(order)
    }

    /// Validates one request into a `NewOrder` placed at a factory.
    fn prepare(
        &self,
        submitter: &Submitter,
        request: OrderRequest,
    ) -> Result<NewOrder, Vec<FieldError>> {
        let now = self.clock.now_ms();
        let network = &self.network;
        let brand = owner(submitter, request.brand.as_deref())?;
        let valid = validate(
            &request,
            &network.catalog,
            &network.zones,
            &network.rules,
            now,
        )?;
        let needs: BTreeSet<(String, String)> = valid
            .jobs
            .iter()
            .map(|job| (job.process.clone(), job.material.clone()))
            .collect();
        let Some(factory) = choose_factory(valid.location, &valid.zone, &needs, &network.factories)
        else {
            let needs: Vec<String> = needs
                .iter()
                .map(|(process, material)| format!("{process} on {material}"))
                .collect();
            return Err(vec![FieldError::new(
                "/lines",
                format!(
                    "no factory can make this order (needs {})",
                    needs.join(", ")
                ),
            )]);
        };
        Ok(NewOrder {
            id: OrderId::new(uuid::Uuid::now_v7().hyphenated().to_string()),
            brand: BrandId::new(brand),
            external_ref: request.external_ref,
            customer_name: request.customer.name.trim().to_string(),
            location: valid.location,
            zone: valid.zone,
            factory: factory.id.clone(),
            lines: request.lines,
            deadline_ms: valid.deadline_ms,
            accepted_ms: now,
            jobs: valid.jobs,
            idempotency: None,
            follows: false,
        })
    }
}

/// Which brand an order belongs to: a brand's own; an admin names one.
fn owner(submitter: &Submitter, requested: Option<&str>) -> Result<String, Vec<FieldError>> {
    match submitter {
        Submitter::Brand(own) => match requested {
            Some(brand) if brand != own => Err(vec![FieldError::new(
                "/brand",
                "a brand token can only submit its own orders",
            )]),
            _ => Ok(own.clone()),
        },
        Submitter::Admin => requested
            .map(str::to_string)
            .ok_or_else(|| vec![FieldError::new("/brand", "required with an admin token")]),
    }
}

/// The result of a stored submission: created, the first reply replayed
/// (same key, same request), or refused (same key, another request).
fn settle<T>(
    outcome: Option<AcceptOutcome>,
    value: T,
    reply: String,
) -> Result<Submitted<T>, OrderError> {
    match outcome {
        Some(AcceptOutcome::Created) => Ok(Submitted::Created { value, reply }),
        Some(AcceptOutcome::Replayed { status, response }) => Ok(Submitted::Replayed {
            status,
            reply: response,
        }),
        Some(AcceptOutcome::KeyReused) => Err(OrderError::KeyReused),
        None => Err(OrderError::Store(StoreError::Corrupt(
            "intake returned no outcome".into(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brands_submit_their_own_orders_and_admins_name_one() {
        let acme = Submitter::Brand("acme".into());
        assert_eq!(owner(&acme, None), Ok("acme".into()));
        assert_eq!(owner(&acme, Some("acme")), Ok("acme".into()));
        assert_eq!(
            owner(&acme, Some("zest")).map_err(|e| e[0].pointer.clone()),
            Err("/brand".into())
        );
        assert_eq!(owner(&Submitter::Admin, Some("zest")), Ok("zest".into()));
        assert!(owner(&Submitter::Admin, None).is_err());
    }
}
