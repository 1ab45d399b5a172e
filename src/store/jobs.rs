//! Jobs: reads, scheduling, and transitions driven by machine reports. A job
//! transition also writes what the domain's follow-up rules decide (units
//! made again, the order moved), all in one transaction.

use super::write::{
    NewJob, OutboxRow, Subject, allocate, insert_jobs, insert_outbox, lock_order,
    set_order_state_by_id,
};
use super::{Backend, Store, StoreError, WriteTx, parse, text_id};
use crate::domain::follow_up::{may_move_order, order_moves, redo_plans, redo_units};
use crate::domain::intake::{JobPlan, LineRequest};
use crate::domain::{
    Event, FactoryId, HoldCause, JobInput, JobState, JobToken, Location, MachineId, Millis,
    OrderId, OrderState,
};
use sqlx::AssertSqlSafe;
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub token: JobToken,
    pub order_id: OrderId,
    pub line_index: i64,
    pub step_index: i64,
    pub process: String,
    pub recipe: u32,
    pub material: String,
    pub quantity: u32,
    pub seconds_per_unit: f64,
    pub due_ms: Millis,
    pub factory: FactoryId,
    pub machine: Option<MachineId>,
    pub state: JobState,
    pub good: u32,
    pub scrap: u32,
    pub replaces: Option<JobToken>,
    /// Cumulative counters: the (good, scrap) values read when the job was
    /// started; `None` on machines counting per job.
    pub baseline: Option<CounterBaseline>,
    /// Held: why its machine stopped it (kept once it leaves the hold for
    /// anything but running again).
    pub hold_cause: Option<HoldCause>,
    /// The fault code the machine showed when it stopped the job.
    pub fault_code: Option<u32>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

/// The values of a machine's lifetime counters when a job was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterBaseline {
    pub good: u32,
    pub scrap: u32,
}

impl JobRecord {
    /// The job's step as planned at intake (the shape the domain's rules take).
    pub fn plan(&self) -> JobPlan {
        JobPlan {
            line_index: self.line_index as usize,
            step_index: self.step_index as usize,
            process: self.process.clone(),
            recipe: self.recipe,
            material: self.material.clone(),
            quantity: self.quantity,
            seconds_per_unit: self.seconds_per_unit,
            due_ms: self.due_ms,
        }
    }
}

/// A pending job whose earlier steps are done: what the planner may place.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulableJob {
    pub token: JobToken,
    pub order_id: OrderId,
    pub factory: FactoryId,
    pub process: String,
    pub material: String,
    pub quantity: u32,
    pub seconds_per_unit: f64,
    pub due_ms: Millis,
    /// Where the order goes (its drop-off).
    pub customer: Location,
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub factory: Option<String>,
    pub machine: Option<String>,
    pub state: Option<JobState>,
    pub order_id: Option<String>,
    /// Jobs with a token greater than this.
    pub after: Option<i64>,
    pub limit: i64,
}

/// What a transition did.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTransition {
    pub job: JobRecord,
    pub from: JobState,
    /// The order's new state, if the job moved it.
    pub order_state: Option<OrderState>,
    /// The job that makes this step's failed or scrapped units again (jobs
    /// for the earlier steps of those units come before it).
    pub replacement: Option<JobToken>,
}

const JOB_COLUMNS: &str = "token, order_id, line_index, step_index, process, recipe, material, quantity, \
    seconds_per_unit, due_ms, factory, machine, state, good, scrap, replaces, good_base, scrap_base, \
    hold_cause, fault_code, created_ms, updated_ms";

fn to_u32(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

fn job_from_row(row: &AnyRow) -> Result<JobRecord, StoreError> {
    Ok(JobRecord {
        token: JobToken(to_u32(row.try_get("token")?, "job token")?),
        order_id: text_id(row, "order_id")?,
        line_index: row.try_get("line_index")?,
        step_index: row.try_get("step_index")?,
        process: row.try_get("process")?,
        recipe: to_u32(row.try_get("recipe")?, "recipe")?,
        material: row.try_get("material")?,
        quantity: to_u32(row.try_get("quantity")?, "quantity")?,
        seconds_per_unit: row.try_get("seconds_per_unit")?,
        due_ms: row.try_get("due_ms")?,
        factory: text_id(row, "factory")?,
        machine: row.try_get::<Option<String>, _>("machine")?.map(MachineId),
        state: parse(&row.try_get::<String, _>("state")?)?,
        good: to_u32(row.try_get("good")?, "good count")?,
        scrap: to_u32(row.try_get("scrap")?, "scrap count")?,
        replaces: row
            .try_get::<Option<i64>, _>("replaces")?
            .map(|t| to_u32(t, "job token").map(JobToken))
            .transpose()?,
        baseline: match (
            row.try_get::<Option<i64>, _>("good_base")?,
            row.try_get::<Option<i64>, _>("scrap_base")?,
        ) {
            (Some(good), Some(scrap)) => Some(CounterBaseline {
                good: to_u32(good, "good baseline")?,
                scrap: to_u32(scrap, "scrap baseline")?,
            }),
            _ => None,
        },
        hold_cause: row
            .try_get::<Option<String>, _>("hold_cause")?
            .map(|text| parse(&text))
            .transpose()?,
        fault_code: row
            .try_get::<Option<i64>, _>("fault_code")?
            .map(|code| to_u32(code, "fault code"))
            .transpose()?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

impl Store {
    pub async fn get_job(&self, token: JobToken) -> Result<Option<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE token = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(i64::from(token.0))
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 IS NULL OR factory = $1) AND ($2 IS NULL OR machine = $2) \
             AND ($3 IS NULL OR state = $3) AND ($4 IS NULL OR order_id = $4) AND ($5 IS NULL OR token > $5) \
             ORDER BY token LIMIT $6"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(filter.factory.as_deref())
            .bind(filter.machine.as_deref())
            .bind(filter.state.map(JobState::as_str))
            .bind(filter.order_id.as_deref())
            .bind(filter.after)
            .bind(filter.limit)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Pending jobs whose earlier steps (same order line) are all done: the
    /// `per_group` earliest due of every (factory, process, material), so a
    /// backlog that cannot be placed (a factory offline) never hides work
    /// that can.
    pub async fn schedulable_jobs(
        &self,
        per_group: i64,
    ) -> Result<Vec<SchedulableJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT token, order_id, factory, process, material, quantity, seconds_per_unit, due_ms, lat, lon FROM ( \
               SELECT j.token, j.order_id, j.factory, j.process, j.material, j.quantity, j.seconds_per_unit, \
                 j.due_ms, o.lat, o.lon, ROW_NUMBER() OVER ( \
                 PARTITION BY j.factory, j.process, j.material ORDER BY j.due_ms, j.token) AS rank \
               FROM jobs j JOIN orders o ON o.id = j.order_id \
               WHERE j.state = 'pending' AND NOT EXISTS (SELECT 1 FROM jobs p WHERE p.order_id = j.order_id \
                 AND p.line_index = j.line_index AND p.step_index < j.step_index \
                 AND p.state NOT IN ('done', 'failed', 'cancelled')) \
             ) ranked WHERE rank <= $1 ORDER BY due_ms, token",
        )
        .bind(per_group)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(schedulable_from_row).collect()
    }

    /// Jobs ready for a machine (as [`Store::schedulable_jobs`]) due before
    /// `before_ms`, earliest due first, at most `limit`.
    pub async fn ready_jobs_due_before(
        &self,
        before_ms: Millis,
        limit: i64,
    ) -> Result<Vec<SchedulableJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.token, j.order_id, j.factory, j.process, j.material, j.quantity, j.seconds_per_unit, \
               j.due_ms, o.lat, o.lon FROM jobs j JOIN orders o ON o.id = j.order_id \
             WHERE j.state = 'pending' AND j.due_ms < $1 AND NOT EXISTS (SELECT 1 FROM jobs p \
               WHERE p.order_id = j.order_id AND p.line_index = j.line_index AND p.step_index < j.step_index \
               AND p.state NOT IN ('done', 'failed', 'cancelled')) \
             ORDER BY j.due_ms, j.token LIMIT $2",
        )
        .bind(before_ms)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(schedulable_from_row).collect()
    }

    /// Jobs in a machine's queue and not started (`scheduled`): (token,
    /// machine, due time).
    pub async fn jobs_not_started(&self) -> Result<Vec<(JobToken, MachineId, Millis)>, StoreError> {
        let rows = sqlx::query(
            "SELECT token, machine, due_ms FROM jobs WHERE state = 'scheduled' AND machine IS NOT NULL",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    JobToken(to_u32(row.try_get("token")?, "job token")?),
                    text_id(row, "machine")?,
                    row.try_get("due_ms")?,
                ))
            })
            .collect()
    }

    /// Hands queued jobs back to the planner (`scheduled` to `pending`,
    /// `job.requeued` each), in one transaction; those no longer queued
    /// are left as they are. How many went back.
    pub async fn hand_back_jobs(
        &self,
        tokens: &[JobToken],
        now: Millis,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin().await?;
        let mut count = 0;
        for token in tokens {
            match transition_in(&mut tx, self.backend, *token, JobInput::Unschedule, now).await {
                Ok(_) => count += 1,
                Err(StoreError::Conflict(_) | StoreError::Transition(_)) => {}
                Err(err) => return Err(err),
            }
        }
        tx.commit().await?;
        Ok(count)
    }

    /// Jobs scheduled, dispatched, running or held on a machine, oldest first.
    pub async fn machine_queue(&self, machine: &str) -> Result<Vec<JobRecord>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE machine = $1 AND state IN ('scheduled', 'dispatched', 'running', 'held') \
             ORDER BY CASE state WHEN 'scheduled' THEN 1 ELSE 0 END, due_ms, token"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(machine)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Every job on a machine (scheduled, dispatched, running or held), by
    /// machine, each machine's in the order of [`Store::machine_queue`].
    pub async fn queued_jobs(&self, factory: Option<&str>) -> Result<Vec<JobRecord>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE machine IS NOT NULL AND ($1 IS NULL OR factory = $1) \
             AND state IN ('scheduled', 'dispatched', 'running', 'held') \
             ORDER BY machine, CASE state WHEN 'scheduled' THEN 1 ELSE 0 END, due_ms, token"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(factory)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Pending jobs, earliest due first, each with the first earlier step
    /// of its line that is not done yet (its step number and process).
    pub async fn pending_jobs(
        &self,
        factory: Option<&str>,
    ) -> Result<Vec<(JobRecord, Option<(i64, String)>)>, StoreError> {
        let open = "FROM jobs p WHERE p.order_id = j.order_id AND p.line_index = j.line_index \
                    AND p.step_index < j.step_index AND p.state NOT IN ('done', 'failed', 'cancelled') \
                    ORDER BY p.step_index LIMIT 1";
        let sql = format!(
            "SELECT {JOB_COLUMNS}, (SELECT p.step_index {open}) AS open_step, (SELECT p.process {open}) AS open_process \
             FROM jobs j WHERE state = 'pending' AND ($1 IS NULL OR factory = $1) ORDER BY due_ms, token"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(factory)
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| {
                let step: Option<i64> = row.try_get("open_step")?;
                let process: Option<String> = row.try_get("open_process")?;
                Ok((job_from_row(row)?, step.zip(process)))
            })
            .collect()
    }

    /// Puts jobs in machine queues in one transaction; a job that left
    /// `pending` meanwhile is skipped, and so is a job whose machine no
    /// longer takes it (paused, drained, faulted or loaded with another
    /// material since the plan was made: the operator's decision, committed
    /// first, wins; a machine with no row is not checked). On PostgreSQL the machine rows are locked first, in id
    /// order, so a mode change waits for this transaction or this one sees it.
    pub async fn schedule_jobs(
        &self,
        assignments: &[(JobToken, MachineId)],
        now: Millis,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin().await?;
        let machines: std::collections::BTreeSet<&str> = assignments
            .iter()
            .map(|(_, machine)| machine.as_str())
            .collect();
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let mut takes: std::collections::HashMap<&str, Option<String>> =
            std::collections::HashMap::new();
        for machine in machines {
            let sql =
                format!("SELECT state, mode, loaded_material FROM machines WHERE id = $1{lock}");
            let Some(row) = sqlx::query(AssertSqlSafe(sql))
                .bind(machine)
                .fetch_optional(&mut *tx)
                .await?
            else {
                // Not registered (store scenarios): no decision to honour.
                takes.insert(machine, None);
                continue;
            };
            let state: crate::domain::MachineState = parse(&row.try_get::<String, _>("state")?)?;
            let mode: crate::domain::MachineMode = parse(&row.try_get::<String, _>("mode")?)?;
            if state.accepts_jobs(mode) {
                takes.insert(machine, row.try_get("loaded_material")?);
            }
        }
        let materials = job_materials(&mut tx, assignments).await?;
        let mut scheduled = 0;
        for (token, machine) in assignments {
            let fits = takes.get(machine.as_str()).is_some_and(|loaded| {
                materials.get(token).is_some_and(|material| {
                    crate::domain::machine::material_fits(loaded.as_deref(), material)
                })
            });
            if !fits {
                continue;
            }
            match transition_in(
                &mut tx,
                self.backend,
                *token,
                JobInput::Schedule {
                    machine: machine.clone(),
                },
                now,
            )
            .await
            {
                Ok(_) => scheduled += 1,
                Err(StoreError::Conflict(_) | StoreError::Transition(_)) => {}
                Err(err) => return Err(err),
            }
        }
        tx.commit().await?;
        Ok(scheduled)
    }

    /// Applies one input to one job (compare-and-set), with its events, its
    /// order's progress and any replacement job, in one transaction.
    pub async fn transition_job(
        &self,
        token: JobToken,
        input: JobInput,
        now: Millis,
    ) -> Result<JobTransition, StoreError> {
        let mut tx = self.begin().await?;
        let result = transition_in(&mut tx, self.backend, token, input, now).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// Records the units a running job's machine reports so far (they only
    /// go up; no event: progress is not a change of state).
    pub async fn record_progress(
        &self,
        token: JobToken,
        good: u32,
        scrap: u32,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE jobs SET good = $1, scrap = $2 WHERE token = $3 AND state = 'running' \
             AND good <= $1 AND scrap <= $2",
        )
        .bind(i64::from(good))
        .bind(i64::from(scrap))
        .bind(i64::from(token.0))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// An operator moves a pending or queued job to `machine`'s queue: one
    /// transaction with its event (`job.moved`) and audit row; refused
    /// ([`StoreError::Conflict`], with the reason) when
    /// `domain::job::move_refusal` says it makes no sense.
    pub async fn move_job(
        &self,
        token: JobToken,
        machine: &str,
        actor: &str,
        now: Millis,
    ) -> Result<JobTransition, StoreError> {
        let mut tx = self.begin().await?;
        let job = sqlx::query(
            "SELECT j.state, j.factory, j.process, j.material, j.machine, \
               (SELECT MIN(p.step_index) FROM jobs p WHERE p.order_id = j.order_id AND p.line_index = j.line_index \
                 AND p.step_index < j.step_index AND p.state NOT IN ('done', 'failed', 'cancelled')) AS open_step \
             FROM jobs j WHERE j.token = $1",
        )
        .bind(i64::from(token.0))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {token}")))?;
        let target = sqlx::query(
            "SELECT factory, capabilities, materials, mode FROM machines WHERE id = $1",
        )
        .bind(machine)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("machine {machine}")))?;
        let list = |text: String| -> Vec<String> {
            text.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let state: JobState = parse(&job.try_get::<String, _>("state")?)?;
        let (factory, process, material): (String, String, String) = (
            job.try_get("factory")?,
            job.try_get("process")?,
            job.try_get("material")?,
        );
        let current: Option<String> = job.try_get("machine")?;
        let capabilities = list(target.try_get("capabilities")?);
        let materials = list(target.try_get("materials")?);
        let target_factory: String = target.try_get("factory")?;
        let check = crate::domain::job::MoveCheck {
            state,
            factory: &factory,
            process: &process,
            material: &material,
            machine: current.as_deref(),
            open_step: job.try_get("open_step")?,
            target: machine,
            target_factory: &target_factory,
            target_capabilities: &capabilities,
            target_materials: &materials,
            target_mode: parse(&target.try_get::<String, _>("mode")?)?,
        };
        if let Some(reason) = crate::domain::job::move_refusal(&check) {
            return Err(StoreError::Conflict(reason));
        }
        let moved = transition_in(
            &mut tx,
            self.backend,
            token,
            JobInput::Move {
                machine: MachineId::new(machine),
            },
            now,
        )
        .await?;
        let detail = format!(
            "{} -> {machine} ({})",
            current.as_deref().unwrap_or("not queued"),
            moved.from
        );
        super::write::record_audit(
            &mut tx,
            &super::write::AuditEntry::new(actor, "job.move", &token.to_string(), &detail),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// An operator's decision on a held job (`Resume`, `Abandon` or
    /// `Retry`), in one transaction with its event, its audit row naming
    /// `actor`, and (for an abandon or a retry) the jobs that make its units
    /// not reported good again. A resume is refused (conflict) unless the
    /// machine still shows the job and is out of its fault.
    pub async fn decide_held_job(
        &self,
        token: JobToken,
        decision: JobInput,
        actor: &str,
        now: Millis,
    ) -> Result<JobTransition, StoreError> {
        let action = match decision {
            JobInput::Resume => "job.resume",
            JobInput::Abandon => "job.abandon",
            JobInput::Retry => "job.retry",
            other => {
                return Err(StoreError::Conflict(format!(
                    "{other:?} is not an operator's decision on a held job"
                )));
            }
        };
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "SELECT j.state, j.machine, m.state AS machine_state, m.job_token AS machine_token \
             FROM jobs j LEFT JOIN machines m ON m.id = j.machine WHERE j.token = $1",
        )
        .bind(i64::from(token.0))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("job {token}")));
        };
        let state: JobState = parse(&row.try_get::<String, _>("state")?)?;
        if decision == JobInput::Retry && state != JobState::Held {
            return Err(StoreError::Conflict(match state {
                JobState::Failed => format!(
                    "job {token} failed and its units not reported good are already being made again (jobs whose `replaces` is {token}); only a held job is retried"
                ),
                other => format!("job {token} is {other}: only a held job is retried"),
            }));
        }
        // The state machine says whether the decision fits the job at all.
        state.handle(decision.clone())?;
        if decision == JobInput::Resume {
            let machine_state = match row.try_get::<Option<String>, _>("machine_state")? {
                Some(text) => parse(&text)?,
                None => crate::domain::MachineState::Offline,
            };
            let machine_token: Option<i64> = row.try_get("machine_token")?;
            if let Some(reason) =
                crate::domain::reconcile::resume_refusal(token, machine_token, machine_state)
            {
                return Err(StoreError::Conflict(reason));
            }
        }
        let moved = transition_in(&mut tx, self.backend, token, decision, now).await?;
        let token_text = token.to_string();
        let detail = match moved.replacement {
            Some(last) => format!(
                "{} -> {} (good {}, remade by jobs up to {last})",
                moved.from, moved.job.state, moved.job.good
            ),
            None => format!("{} -> {}", moved.from, moved.job.state),
        };
        super::write::record_audit(
            &mut tx,
            &super::write::AuditEntry::new(actor, action, &token_text, &detail),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// An operator cancels a job not yet on a machine (pending or queued),
    /// and with it its line: every job of the line not finished (earlier
    /// and later steps, replacements) is cancelled, one `job.cancelled`
    /// each, in one transaction with one audit row (`job.cancel`). The
    /// order follows its jobs (`domain::follow_up`): with every line
    /// cancelled it is cancelled; with the lines left all done it is
    /// ready. Refused (conflict, with the reason) for a job that is not
    /// pending or queued, or while any job of its line is on a machine.
    /// Returns the job's transition (with the order's new state, if it
    /// moved) and every job cancelled.
    pub async fn cancel_job(
        &self,
        token: JobToken,
        actor: &str,
        now: Millis,
    ) -> Result<(JobTransition, Vec<JobToken>), StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT order_id, line_index, state FROM jobs WHERE token = $1")
            .bind(i64::from(token.0))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job {token}")))?;
        let order_id: String = row.try_get("order_id")?;
        let line: i64 = row.try_get("line_index")?;
        let state: JobState = parse(&row.try_get::<String, _>("state")?)?;
        super::write::lock_order(&mut tx, self.backend, &order_id).await?;
        if !matches!(state, JobState::Pending | JobState::Scheduled) {
            return Err(StoreError::Conflict(format!(
                "job {token} is {state}: only a pending or queued job is cancelled (a held job is retried or abandoned)"
            )));
        }
        let rows = sqlx::query(
            "SELECT token, step_index, state, machine FROM jobs WHERE order_id = $1 AND line_index = $2 ORDER BY token",
        )
        .bind(&order_id)
        .bind(line)
        .fetch_all(&mut *tx)
        .await?;
        let mut open = Vec::new();
        for row in &rows {
            let other = JobToken(to_u32(row.try_get("token")?, "job token")?);
            let other_state: JobState = parse(&row.try_get::<String, _>("state")?)?;
            if other_state.is_on_machine() {
                let step: i64 = row.try_get("step_index")?;
                let machine: Option<String> = row.try_get("machine")?;
                return Err(StoreError::Conflict(format!(
                    "job {other} (step {step} of the same line) is {other_state} on {}: a line is cancelled only while none of its jobs is on a machine",
                    machine.as_deref().unwrap_or("its machine")
                )));
            }
            if matches!(other_state, JobState::Pending | JobState::Scheduled) {
                open.push(other);
            }
        }
        // The job itself last, so its transition carries the order's move.
        open.retain(|other| *other != token);
        open.push(token);
        let mut last = None;
        let mut order_state = None;
        for other in &open {
            let moved = transition_in(&mut tx, self.backend, *other, JobInput::Cancel, now).await?;
            order_state = moved.order_state.or(order_state);
            last = Some(moved);
        }
        let Some(mut moved) = last else {
            return Err(StoreError::Conflict(format!(
                "job {token} changed meanwhile"
            )));
        };
        moved.order_state = order_state;
        let list: Vec<String> = open.iter().map(ToString::to_string).collect();
        let detail = format!(
            "line {line} of order {order_id}: jobs {} cancelled{}",
            list.join(", "),
            order_state.map_or(String::new(), |s| format!("; order {s}"))
        );
        super::write::record_audit(
            &mut tx,
            &super::write::AuditEntry::new(actor, "job.cancel", &token.to_string(), &detail),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((moved, open))
    }

    /// Whether a token is retired (never to be started again).
    pub async fn is_retired(&self, token: JobToken) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM retired_tokens WHERE token = $1")
            .bind(i64::from(token.0))
            .fetch_one(self.reader())
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Dispatches a scheduled job (compare-and-set, as `transition_job`)
    /// and, in the same transaction, stores the machine's lifetime counter
    /// values read before the start, if it counts that way.
    pub async fn dispatch_job(
        &self,
        token: JobToken,
        baseline: Option<CounterBaseline>,
        now: Millis,
    ) -> Result<JobTransition, StoreError> {
        let mut tx = self.begin().await?;
        let mut result =
            transition_in(&mut tx, self.backend, token, JobInput::Dispatch, now).await?;
        sqlx::query("UPDATE jobs SET good_base = $1, scrap_base = $2 WHERE token = $3")
            .bind(baseline.map(|b| i64::from(b.good)))
            .bind(baseline.map(|b| i64::from(b.scrap)))
            .bind(i64::from(token.0))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        result.job.baseline = baseline;
        Ok(result)
    }
}

/// Each assigned job's material, read in the writing transaction (tokens
/// are integers: the list is formatted in, a few hundred at a time).
async fn job_materials(
    tx: &mut WriteTx,
    assignments: &[(JobToken, MachineId)],
) -> Result<std::collections::HashMap<JobToken, String>, StoreError> {
    let mut materials = std::collections::HashMap::new();
    for chunk in assignments.chunks(500) {
        let tokens: Vec<String> = chunk
            .iter()
            .map(|(token, _)| i64::from(token.0).to_string())
            .collect();
        let sql = format!(
            "SELECT token, material FROM jobs WHERE token IN ({})",
            tokens.join(",")
        );
        for row in sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut **tx).await? {
            let token: i64 = row.try_get("token")?;
            materials.insert(
                JobToken(to_u32(token, "token")?),
                row.try_get::<String, _>("material")?,
            );
        }
    }
    Ok(materials)
}

async fn transition_in(
    tx: &mut WriteTx,
    backend: Backend,
    token: JobToken,
    input: JobInput,
    now: Millis,
) -> Result<JobTransition, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE token = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(i64::from(token.0))
        .fetch_optional(&mut **tx)
        .await?;
    let Some(job) = row.as_ref().map(job_from_row).transpose()? else {
        return Err(StoreError::NotFound(format!("job {token}")));
    };
    let (next, events) = job.state.handle(input.clone())?;
    // Two jobs of one order finishing at once must not both miss that the
    // order is now complete: serialise on the order row (locks are always
    // taken order first, then jobs).
    lock_order(tx, backend, &job.order_id).await?;
    let machine = match &input {
        JobInput::Schedule { machine } | JobInput::Move { machine } => Some(machine.clone()),
        JobInput::Unschedule | JobInput::StartRefused => None,
        _ => job.machine.clone(),
    };
    let (good, scrap) = match &input {
        JobInput::MachineFinished { good, scrap } => (*good, *scrap),
        // Units reported so far never go down (a late report has fewer).
        JobInput::MachineHeld {
            counts: Some((good, scrap)),
            ..
        } => ((*good).max(job.good), (*scrap).max(job.scrap)),
        _ => (job.good, job.scrap),
    };
    let (hold_cause, fault_code) = match &input {
        JobInput::MachineHeld {
            cause, fault_code, ..
        } => (Some(*cause), *fault_code),
        JobInput::MachineResumed | JobInput::Resume => (None, None),
        _ => (job.hold_cause, job.fault_code),
    };
    // A retired token is never queued or started again, whatever its row says.
    let fenced = if matches!(next, JobState::Scheduled | JobState::Dispatched) {
        " AND NOT EXISTS (SELECT 1 FROM retired_tokens r WHERE r.token = jobs.token)"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE jobs SET state = $1, machine = $2, good = $3, scrap = $4, updated_ms = $5, hold_cause = $6, \
         fault_code = $7 WHERE token = $8 AND state = $9{fenced}"
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(next.as_str())
        .bind(machine.as_deref())
        .bind(i64::from(good))
        .bind(i64::from(scrap))
        .bind(now)
        .bind(hold_cause.map(HoldCause::as_str))
        .bind(fault_code.map(i64::from))
        .bind(i64::from(token.0))
        .bind(job.state.as_str())
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "job {token} is no longer {} (or its token is retired)",
            job.state
        )));
    }
    // A job that may have reached its machine and ends without it finishing
    // retires its token for good (the domain: a token is started at most once).
    if next == JobState::Failed && job.state.is_on_machine() {
        let reason = match &input {
            JobInput::Abandon => "abandoned by an operator",
            JobInput::Retry => "retried by an operator",
            _ => "ended on its machine without finishing",
        };
        sqlx::query(
            "INSERT INTO retired_tokens (token, reason, retired_ms) VALUES ($1, $2, $3) ON CONFLICT (token) DO NOTHING",
        )
        .bind(i64::from(token.0))
        .bind(reason)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    let order_row = sqlx::query("SELECT brand, state, lines FROM orders WHERE id = $1")
        .bind(job.order_id.as_str())
        .fetch_one(&mut **tx)
        .await?;
    let brand: String = order_row.try_get("brand")?;
    let order_state: OrderState = parse(&order_row.try_get::<String, _>("state")?)?;
    let lines: Vec<LineRequest> =
        serde_json::from_str(&order_row.try_get::<String, _>("lines")?)
            .map_err(|err| StoreError::Corrupt(format!("order lines: {err}")))?;
    let later_steps: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM jobs WHERE order_id = $1 AND line_index = $2 AND step_index > $3",
    )
    .bind(job.order_id.as_str())
    .bind(job.line_index)
    .bind(job.step_index)
    .fetch_one(&mut **tx)
    .await?
    .try_get("n")?;
    let token_text = token.to_string();
    let subject = Subject {
        kind: "job",
        id: &token_text,
        order_id: Some(&job.order_id),
        brand: Some(&brand),
    };
    // Every job event says which job it is: what it makes, where, and
    // whether it is its line's last step (its good units are finished goods).
    let context = serde_json::json!({
        "sku": usize::try_from(job.line_index).ok().and_then(|i| lines.get(i)).map(|l| l.sku.as_str()),
        "line": job.line_index,
        "step": job.step_index,
        "final_step": later_steps == 0,
        "process": job.process,
        "quantity": job.quantity,
        "factory": job.factory.as_str(),
        "machine": machine.as_deref(),
    });
    let rows: Vec<OutboxRow> = events
        .iter()
        .map(|event| {
            let mut row = OutboxRow::new(&subject, event, now);
            row.envelope.insert("job".into(), context.clone());
            if let (Event::JobDone { .. }, Some(serde_json::Value::Object(data))) =
                (event, row.envelope.get_mut("data"))
            {
                // From the job's last change (running, or dispatched) to done.
                data.insert(
                    "machine_seconds".into(),
                    (now.saturating_sub(job.updated_ms).max(0) as f64 / 1000.0).into(),
                );
            }
            row
        })
        .collect();
    insert_outbox(tx, rows).await?;
    // Units that did not come out good are made again (domain rule).
    let redo = redo_units(next, job.quantity, good, order_state);
    let replacement = if redo > 0 {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE order_id = $1 AND line_index = $2 AND step_index <= $3 \
             AND replaces IS NULL ORDER BY step_index"
        );
        let line: Vec<JobPlan> = sqlx::query(AssertSqlSafe(sql))
            .bind(job.order_id.as_str())
            .bind(job.line_index)
            .bind(job.step_index)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|row| job_from_row(row).map(|step| step.plan()))
            .collect::<Result<_, _>>()?;
        let plans = redo_plans(&line, &job.plan(), redo);
        let first = allocate(tx, "job_token", plans.len() as i64).await?;
        let rows: Vec<NewJob> = plans
            .iter()
            .enumerate()
            .map(|(i, plan)| NewJob {
                token: first + i as i64,
                order_id: &job.order_id,
                factory: &job.factory,
                plan,
                quantity: plan.quantity,
                replaces: Some(i64::from(token.0)),
                now,
            })
            .collect();
        insert_jobs(tx, &rows).await?;
        Some(JobToken(to_u32(
            first + rows.len() as i64 - 1,
            "job token",
        )?))
    } else {
        None
    };
    // Move the order if its jobs say so (domain rule).
    let mut new_order_state = None;
    if may_move_order(next) {
        let rows = sqlx::query("SELECT state FROM jobs WHERE order_id = $1")
            .bind(job.order_id.as_str())
            .fetch_all(&mut **tx)
            .await?;
        let states = rows
            .iter()
            .map(|row| parse::<JobState>(&row.try_get::<String, _>("state")?))
            .collect::<Result<Vec<_>, _>>()?;
        for step in order_moves(order_state, &states)? {
            set_order_state_by_id(
                tx,
                &job.order_id,
                &brand,
                step.from,
                step.to,
                &step.events,
                now,
            )
            .await?;
            new_order_state = Some(step.to);
        }
    }
    Ok(JobTransition {
        job: JobRecord {
            state: next,
            machine,
            good,
            scrap,
            hold_cause,
            fault_code,
            updated_ms: now,
            ..job
        },
        from: job.state,
        order_state: new_order_state,
        replacement,
    })
}

impl Store {
    /// Queue length per machine: jobs scheduled, dispatched or running on it.
    pub async fn machine_loads(
        &self,
    ) -> Result<std::collections::HashMap<String, usize>, StoreError> {
        let rows = sqlx::query(
            "SELECT machine, COUNT(*) AS n FROM jobs WHERE machine IS NOT NULL \
             AND state IN ('scheduled', 'dispatched', 'running', 'held') GROUP BY machine",
        )
        .fetch_all(self.reader())
        .await?;
        let mut loads = std::collections::HashMap::new();
        for row in rows {
            let n: i64 = row.try_get("n")?;
            loads.insert(row.try_get::<String, _>("machine")?, n.max(0) as usize);
        }
        Ok(loads)
    }

    /// Counts jobs per state (metrics, read at every scrape).
    pub async fn job_counts(&self) -> Result<std::collections::HashMap<JobState, i64>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(self.reader())
            .await?;
        let mut counts = std::collections::HashMap::new();
        for row in rows {
            counts.insert(
                parse(&row.try_get::<String, _>("state")?)?,
                row.try_get::<i64, _>("n")?,
            );
        }
        Ok(counts)
    }

    /// Work still ahead of each machine, in seconds at nominal speed: the
    /// units not yet reported good of every job scheduled, dispatched,
    /// running or held on it, times the job's seconds per unit.
    pub async fn machine_backlogs(
        &self,
    ) -> Result<std::collections::HashMap<String, f64>, StoreError> {
        let rows = sqlx::query(
            "SELECT machine, quantity, good, seconds_per_unit FROM jobs WHERE machine IS NOT NULL \
             AND state IN ('scheduled', 'dispatched', 'running', 'held')",
        )
        .fetch_all(self.reader())
        .await?;
        let mut backlogs = std::collections::HashMap::new();
        for row in rows {
            let quantity: i64 = row.try_get("quantity")?;
            let good: i64 = row.try_get("good")?;
            let seconds_per_unit: f64 = row.try_get("seconds_per_unit")?;
            let left = (quantity - good).max(0) as f64 * seconds_per_unit.max(0.0);
            *backlogs
                .entry(row.try_get::<String, _>("machine")?)
                .or_insert(0.0) += left;
        }
        Ok(backlogs)
    }

    /// Takes every queued (not yet dispatched) job off a machine, for re-planning.
    pub async fn unschedule_machine(
        &self,
        machine: &str,
        now: Millis,
    ) -> Result<usize, StoreError> {
        let queued = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE machine = $1 AND state = 'scheduled'",
        )
        .bind(machine)
        .fetch_one(self.reader())
        .await?;
        if queued.try_get::<i64, _>("n")? == 0 {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let count = unschedule_in(&mut tx, self.backend, machine, None, now).await?;
        tx.commit().await?;
        Ok(count)
    }
}

/// Takes the queued jobs off a machine inside `tx` (with `keep`: all but
/// those of that material); returns how many.
pub(super) async fn unschedule_in(
    tx: &mut WriteTx,
    backend: Backend,
    machine: &str,
    keep: Option<&str>,
    now: Millis,
) -> Result<usize, StoreError> {
    let rows = sqlx::query(
        "SELECT token, material FROM jobs WHERE machine = $1 AND state = 'scheduled' ORDER BY token",
    )
    .bind(machine)
    .fetch_all(&mut **tx)
    .await?;
    let mut tokens = Vec::new();
    for row in rows {
        let material: String = row.try_get("material")?;
        if keep != Some(material.as_str()) {
            tokens.push(row);
        }
    }
    let rows = tokens;
    let mut count = 0;
    for row in rows {
        let token = JobToken(to_u32(row.try_get("token")?, "job token")?);
        match transition_in(tx, backend, token, JobInput::Unschedule, now).await {
            Ok(_) => count += 1,
            Err(StoreError::Conflict(_) | StoreError::Transition(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(count)
}

fn schedulable_from_row(row: &sqlx::any::AnyRow) -> Result<SchedulableJob, StoreError> {
    Ok(SchedulableJob {
        token: JobToken(to_u32(row.try_get("token")?, "job token")?),
        order_id: text_id(row, "order_id")?,
        factory: text_id(row, "factory")?,
        process: row.try_get("process")?,
        material: row.try_get("material")?,
        quantity: to_u32(row.try_get("quantity")?, "quantity")?,
        seconds_per_unit: row.try_get("seconds_per_unit")?,
        due_ms: row.try_get("due_ms")?,
        customer: Location::new(row.try_get("lat")?, row.try_get("lon")?),
    })
}
