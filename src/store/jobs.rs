//! Jobs: creation, scheduling, and transitions driven by machine reports. A
//! job transition also moves its order when the jobs say so, and replaces a
//! failed job or the scrapped part of a finished one, all in one transaction.

use super::orders::set_order_state_by_id;
use super::{
    Backend, ROWS_PER_STATEMENT, Store, StoreError, Subject, allocate, emit, lock_order, parse,
    placeholders,
};
use crate::domain::intake::JobPlan;
use crate::domain::{
    FactoryId, JobInput, JobState, JobToken, MachineId, Millis, OrderState, production_input,
};
use crate::plan::JobCandidate;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub token: JobToken,
    pub order_id: String,
    pub line_index: i64,
    pub step_index: i64,
    pub process: String,
    pub recipe: u32,
    pub material: String,
    pub quantity: u32,
    pub seconds_per_unit: f64,
    pub due_ms: Millis,
    pub factory: String,
    pub machine: Option<String>,
    pub state: JobState,
    pub good: u32,
    pub scrap: u32,
    pub replaces: Option<JobToken>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
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
    seconds_per_unit, due_ms, factory, machine, state, good, scrap, replaces, created_ms, updated_ms";

fn to_u32(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

fn job_from_row(row: &AnyRow) -> Result<JobRecord, StoreError> {
    Ok(JobRecord {
        token: JobToken(to_u32(row.try_get("token")?, "job token")?),
        order_id: row.try_get("order_id")?,
        line_index: row.try_get("line_index")?,
        step_index: row.try_get("step_index")?,
        process: row.try_get("process")?,
        recipe: to_u32(row.try_get("recipe")?, "recipe")?,
        material: row.try_get("material")?,
        quantity: to_u32(row.try_get("quantity")?, "quantity")?,
        seconds_per_unit: row.try_get("seconds_per_unit")?,
        due_ms: row.try_get("due_ms")?,
        factory: row.try_get("factory")?,
        machine: row.try_get("machine")?,
        state: parse(&row.try_get::<String, _>("state")?)?,
        good: to_u32(row.try_get("good")?, "good count")?,
        scrap: to_u32(row.try_get("scrap")?, "scrap count")?,
        replaces: row
            .try_get::<Option<i64>, _>("replaces")?
            .map(|t| to_u32(t, "job token").map(JobToken))
            .transpose()?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

/// A job row to insert.
pub(crate) struct NewJob<'a> {
    pub token: i64,
    pub order_id: &'a str,
    pub factory: &'a str,
    pub plan: &'a JobPlan,
    pub quantity: u32,
    pub replaces: Option<i64>,
    pub now: Millis,
}

/// Inserts pending jobs with multi-row statements.
pub(crate) async fn insert_jobs(
    tx: &mut Transaction<'static, Any>,
    rows: &[NewJob<'_>],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO jobs (token, order_id, line_index, step_index, process, recipe, material, quantity, \
             seconds_per_unit, due_ms, factory, state, replaces, created_ms, updated_ms) VALUES {}",
            placeholders(chunk.len(), 15)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            let job = row.plan;
            query = query
                .bind(row.token)
                .bind(row.order_id.to_string())
                .bind(job.line_index as i64)
                .bind(job.step_index as i64)
                .bind(job.process.clone())
                .bind(i64::from(job.recipe))
                .bind(job.material.clone())
                .bind(i64::from(row.quantity))
                .bind(job.seconds_per_unit)
                .bind(job.due_ms)
                .bind(row.factory.to_string())
                .bind(JobState::Pending.as_str())
                .bind(row.replaces)
                .bind(row.now)
                .bind(row.now);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
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
    pub async fn schedulable_jobs(&self, per_group: i64) -> Result<Vec<JobCandidate>, StoreError> {
        let rows = sqlx::query(
            "SELECT token, factory, process, material, due_ms FROM ( \
               SELECT j.token, j.factory, j.process, j.material, j.due_ms, ROW_NUMBER() OVER ( \
                 PARTITION BY j.factory, j.process, j.material ORDER BY j.due_ms, j.token) AS rank \
               FROM jobs j \
               WHERE j.state = 'pending' AND NOT EXISTS (SELECT 1 FROM jobs p WHERE p.order_id = j.order_id \
                 AND p.line_index = j.line_index AND p.step_index < j.step_index \
                 AND p.state NOT IN ('done', 'failed', 'cancelled')) \
             ) ranked WHERE rank <= $1 ORDER BY due_ms, token",
        )
        .bind(per_group)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(JobCandidate {
                    token: JobToken(to_u32(row.try_get("token")?, "job token")?),
                    factory: FactoryId::new(row.try_get::<String, _>("factory")?),
                    process: row.try_get("process")?,
                    material: row.try_get("material")?,
                    due_ms: row.try_get("due_ms")?,
                })
            })
            .collect()
    }

    /// Jobs scheduled, dispatched or running on a machine, oldest first.
    pub async fn machine_queue(&self, machine: &str) -> Result<Vec<JobRecord>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE machine = $1 AND state IN ('scheduled', 'dispatched', 'running') \
             ORDER BY CASE state WHEN 'scheduled' THEN 1 ELSE 0 END, due_ms, token"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(machine)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Puts jobs in machine queues in one transaction; a job that left
    /// `pending` meanwhile is skipped.
    pub async fn schedule_jobs(
        &self,
        assignments: &[(JobToken, MachineId)],
        now: Millis,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin().await?;
        let mut scheduled = 0;
        for (token, machine) in assignments {
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
}

async fn transition_in(
    tx: &mut Transaction<'static, Any>,
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
        JobInput::Schedule { machine } => Some(machine.0.clone()),
        JobInput::Unschedule | JobInput::MachineLost => None,
        _ => job.machine.clone(),
    };
    let (good, scrap) = match input {
        JobInput::MachineFinished { good, scrap } => (good, scrap),
        _ => (job.good, job.scrap),
    };
    let done = sqlx::query(
        "UPDATE jobs SET state = $1, machine = $2, good = $3, scrap = $4, updated_ms = $5 WHERE token = $6 AND state = $7",
    )
    .bind(next.as_str())
    .bind(machine.as_deref())
    .bind(i64::from(good))
    .bind(i64::from(scrap))
    .bind(now)
    .bind(i64::from(token.0))
    .bind(job.state.as_str())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "job {token} is no longer {}",
            job.state
        )));
    }
    let order_row = sqlx::query("SELECT brand, state FROM orders WHERE id = $1")
        .bind(&job.order_id)
        .fetch_one(&mut **tx)
        .await?;
    let brand: String = order_row.try_get("brand")?;
    let order_state: OrderState = parse(&order_row.try_get::<String, _>("state")?)?;
    let token_text = token.to_string();
    let subject = Subject {
        kind: "job",
        id: &token_text,
        order_id: Some(&job.order_id),
        brand: Some(&brand),
    };
    for event in &events {
        emit(tx, &subject, event, now).await?;
    }
    // Failed units and scrapped units are made again, by a new job for the same step.
    // Units that did not come out good are made again: a new job for every
    // step of the line up to this one (a unit ruined at the press needs a new
    // print too), each replacing this job.
    let redo = match next {
        JobState::Failed => job.quantity,
        JobState::Done => job.quantity.saturating_sub(good),
        _ => 0,
    };
    let open = matches!(order_state, OrderState::Accepted | OrderState::InProduction);
    let replacement = if redo > 0 && open {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE order_id = $1 AND line_index = $2 AND step_index <= $3 \
             AND replaces IS NULL ORDER BY step_index"
        );
        let route = sqlx::query(AssertSqlSafe(sql))
            .bind(&job.order_id)
            .bind(job.line_index)
            .bind(job.step_index)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let route = if route.is_empty() {
            vec![job.clone()]
        } else {
            route
        };
        let first = allocate(tx, "job_token", route.len() as i64).await?;
        let plans: Vec<JobPlan> = route
            .iter()
            .map(|step| JobPlan {
                line_index: step.line_index as usize,
                step_index: step.step_index as usize,
                process: step.process.clone(),
                recipe: step.recipe,
                material: step.material.clone(),
                quantity: redo,
                seconds_per_unit: step.seconds_per_unit,
                due_ms: step.due_ms,
            })
            .collect();
        let rows: Vec<NewJob> = plans
            .iter()
            .enumerate()
            .map(|(i, plan)| NewJob {
                token: first + i as i64,
                order_id: &job.order_id,
                factory: &job.factory,
                plan,
                quantity: redo,
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
    // Move the order if its jobs say so.
    let mut new_order_state = None;
    if matches!(
        next,
        JobState::Dispatched | JobState::Running | JobState::Done
    ) {
        let rows = sqlx::query("SELECT state FROM jobs WHERE order_id = $1")
            .bind(&job.order_id)
            .fetch_all(&mut **tx)
            .await?;
        let states = rows
            .iter()
            .map(|row| parse::<JobState>(&row.try_get::<String, _>("state")?))
            .collect::<Result<Vec<_>, _>>()?;
        let mut current = order_state;
        while let Some(order_input) = production_input(current, &states) {
            let (order_next, order_events) = current.handle(order_input)?;
            set_order_state_by_id(
                tx,
                &job.order_id,
                &brand,
                current,
                order_next,
                &order_events,
                now,
            )
            .await?;
            current = order_next;
            new_order_state = Some(order_next);
        }
    }
    Ok(JobTransition {
        job: JobRecord {
            state: next,
            machine,
            good,
            scrap,
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
             AND state IN ('scheduled', 'dispatched', 'running') GROUP BY machine",
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

    /// Takes every queued (not yet dispatched) job off a machine, for re-planning.
    pub async fn unschedule_machine(
        &self,
        machine: &str,
        now: Millis,
    ) -> Result<usize, StoreError> {
        let rows = sqlx::query("SELECT token FROM jobs WHERE machine = $1 AND state = 'scheduled'")
            .bind(machine)
            .fetch_all(self.reader())
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let mut count = 0;
        for row in rows {
            let token = JobToken(to_u32(row.try_get("token")?, "job token")?);
            match transition_in(&mut tx, self.backend, token, JobInput::Unschedule, now).await {
                Ok(_) => count += 1,
                Err(StoreError::Conflict(_) | StoreError::Transition(_)) => {}
                Err(err) => return Err(err),
            }
        }
        tx.commit().await?;
        Ok(count)
    }
}
