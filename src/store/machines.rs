//! Machines: registered from configuration at start-up, then updated from
//! what they report and what operators decide.

use super::jobs::unschedule_in;
use super::write::{AuditEntry, Subject, emit, record_audit};
use super::{Store, StoreError, parse, text_id};
use crate::domain::{Event, FactoryId, MachineId, MachineInput, MachineMode, MachineState, Millis};
use sqlx::AssertSqlSafe;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A machine as configured.
/// What an operator's mode decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeChange {
    pub mode: MachineMode,
    /// Queued jobs handed back to the planner.
    pub unscheduled: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MachineSpec {
    pub id: MachineId,
    pub factory: FactoryId,
    pub model: String,
    pub address: String,
    pub capabilities: Vec<String>,
    pub materials: Vec<String>,
}

/// How many times registering the machines runs again after PostgreSQL
/// aborted it in favour of another transaction.
const REGISTER_RETRIES: u32 = 5;

#[derive(Debug, Clone, PartialEq)]
pub struct MachineRecord {
    pub id: MachineId,
    pub factory: FactoryId,
    pub model: String,
    pub address: String,
    pub capabilities: Vec<String>,
    pub materials: Vec<String>,
    pub state: MachineState,
    pub mode: MachineMode,
    pub job_token: Option<i64>,
    pub fault_code: Option<i64>,
    /// The material an operator declared loaded (None: not known).
    pub loaded_material: Option<String>,
    pub updated_ms: Millis,
}

/// What an operator's material declaration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaterialChange {
    pub from: Option<String>,
    pub to: Option<String>,
    /// Queued jobs of another material handed back to the planner.
    pub unscheduled: usize,
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn machine_from_row(row: &AnyRow) -> Result<MachineRecord, StoreError> {
    Ok(MachineRecord {
        id: text_id(row, "id")?,
        factory: text_id(row, "factory")?,
        model: row.try_get("model")?,
        address: row.try_get("address")?,
        capabilities: list(&row.try_get::<String, _>("capabilities")?),
        materials: list(&row.try_get::<String, _>("materials")?),
        state: parse(&row.try_get::<String, _>("state")?)?,
        mode: parse(&row.try_get::<String, _>("mode")?)?,
        job_token: row.try_get("job_token")?,
        fault_code: row.try_get("fault_code")?,
        loaded_material: row.try_get("loaded_material")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

const MACHINE_COLUMNS: &str = "id, factory, model, address, capabilities, materials, state, mode, job_token, fault_code, loaded_material, updated_ms";

impl Store {
    /// Registers configured machines: new ones start offline and active;
    /// known ones keep their mode and take the configured attributes.
    pub async fn register_machines(
        &self,
        specs: &[MachineSpec],
        now: Millis,
    ) -> Result<(), StoreError> {
        self.register(specs, true, now).await
    }

    /// As [`Store::register_machines`], but known machines keep the state
    /// recorded for them: with several daemons on the database, another
    /// one may be driving them right now.
    pub async fn register_shared_machines(
        &self,
        specs: &[MachineSpec],
        now: Millis,
    ) -> Result<(), StoreError> {
        self.register(specs, false, now).await
    }

    /// Writes the machines' rows in id order, the order every transaction
    /// that locks several machine rows takes them in (`schedule_jobs`), so
    /// that a daemon starting beside others cannot deadlock with them; a
    /// transaction PostgreSQL aborts all the same (a deadlock or
    /// serialization conflict with some other writer) runs again, a few
    /// times, after a short random pause.
    async fn register(
        &self,
        specs: &[MachineSpec],
        reset_state: bool,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut sorted: Vec<&MachineSpec> = specs.iter().collect();
        sorted.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        let mut attempt = 0u32;
        loop {
            match self.register_once(&sorted, reset_state, now).await {
                Err(err) if err.is_contention() && attempt < REGISTER_RETRIES => {
                    attempt += 1;
                    let pause = rand::random_range(10..=50u64) * u64::from(attempt);
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                outcome => return outcome,
            }
        }
    }

    async fn register_once(
        &self,
        specs: &[&MachineSpec],
        reset_state: bool,
        now: Millis,
    ) -> Result<(), StoreError> {
        let state = if reset_state { "'offline'" } else { "state" };
        let mut tx = self.begin().await?;
        for spec in specs {
            let sql = format!(
                "UPDATE machines SET factory = $1, model = $2, address = $3, capabilities = $4, materials = $5, \
                 state = {state}, updated_ms = $6 WHERE id = $7"
            );
            let updated = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(spec.factory.as_str())
                .bind(&spec.model)
                .bind(&spec.address)
                .bind(spec.capabilities.join(","))
                .bind(spec.materials.join(","))
                .bind(now)
                .bind(spec.id.as_str())
                .execute(&mut *tx)
                .await?;
            if updated.rows_affected() == 0 {
                sqlx::query(
                    "INSERT INTO machines (id, factory, model, address, capabilities, materials, state, mode, updated_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'offline', 'active', $7)",
                )
                .bind(spec.id.as_str())
                .bind(spec.factory.as_str())
                .bind(&spec.model)
                .bind(&spec.address)
                .bind(spec.capabilities.join(","))
                .bind(spec.materials.join(","))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Machines known to the database but no longer configured: marked
    /// offline, their queued jobs handed back to the planner and the jobs
    /// they may have been running made again (nothing watches them any more).
    /// Returns their ids.
    pub async fn retire_unconfigured(
        &self,
        configured: &[MachineId],
        now: Millis,
    ) -> Result<Vec<MachineId>, StoreError> {
        let mut retired = Vec::new();
        for machine in self.list_machines(None).await? {
            if configured.contains(&machine.id) {
                continue;
            }
            let on_machine = self.machine_queue(&machine.id).await?;
            if machine.state == MachineState::Offline && on_machine.is_empty() {
                continue;
            }
            self.observe_machine(&machine.id, MachineInput::Disconnected, None, None, now)
                .await?;
            self.unschedule_machine(&machine.id, now).await?;
            for job in on_machine
                .into_iter()
                .filter(|job| job.state.is_on_machine())
            {
                self.transition_job(
                    job.token,
                    crate::domain::JobInput::MachineAborted { fault_code: None },
                    now,
                )
                .await?;
            }
            retired.push(machine.id);
        }
        Ok(retired)
    }

    pub async fn list_machines(
        &self,
        factory: Option<&str>,
    ) -> Result<Vec<MachineRecord>, StoreError> {
        let sql = format!(
            "SELECT {MACHINE_COLUMNS} FROM machines WHERE ($1 IS NULL OR factory = $1) ORDER BY id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(factory)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(machine_from_row).collect()
    }

    /// The machines with room in their queue (fewer than `max_queue` jobs
    /// scheduled, dispatched, running or held), each with its queue length,
    /// in id order: what the queue rule can still place jobs on. One query,
    /// so a scheduling round on a full floor decodes few rows.
    pub async fn machines_with_room(
        &self,
        max_queue: usize,
    ) -> Result<Vec<(MachineRecord, usize)>, StoreError> {
        let columns = MACHINE_COLUMNS
            .split(", ")
            .map(|column| format!("m.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, COALESCE(l.n, 0) AS queue_len FROM machines m \
             LEFT JOIN (SELECT machine, COUNT(*) AS n FROM jobs WHERE machine IS NOT NULL \
             AND state IN ('scheduled', 'dispatched', 'running', 'held') GROUP BY machine) l \
             ON l.machine = m.id WHERE COALESCE(l.n, 0) < $1 ORDER BY m.id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(i64::try_from(max_queue).unwrap_or(i64::MAX))
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| {
                let load: i64 = row.try_get("queue_len")?;
                Ok((machine_from_row(row)?, load.max(0) as usize))
            })
            .collect()
    }

    pub async fn get_machine(&self, id: &str) -> Result<Option<MachineRecord>, StoreError> {
        let sql = format!("SELECT {MACHINE_COLUMNS} FROM machines WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(machine_from_row).transpose()
    }

    /// Records what a machine reported; writes (with an event) only when its
    /// state, token or fault code changed. Returns the new state.
    pub async fn observe_machine(
        &self,
        id: &str,
        input: MachineInput,
        job_token: Option<u32>,
        fault_code: Option<u32>,
        now: Millis,
    ) -> Result<MachineState, StoreError> {
        // Most polls change nothing: decide on a plain read, and take the
        // writer only for a change (then compare-and-set on the state read).
        let row = sqlx::query("SELECT state, job_token, fault_code FROM machines WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("machine {id}")));
        };
        let from: MachineState = parse(&row.try_get::<String, _>("state")?)?;
        let old_token: Option<i64> = row.try_get("job_token")?;
        let old_fault: Option<i64> = row.try_get("fault_code")?;
        let token = job_token.map(i64::from).or(old_token);
        let fault = if input == MachineInput::Disconnected {
            old_fault
        } else {
            fault_code.map(i64::from)
        };
        let as_code = |code: Option<i64>| code.and_then(|c| u32::try_from(c).ok());
        let (next, events) = from.observe(input, as_code(fault), as_code(old_fault));
        if next == from && token == old_token && fault == old_fault {
            return Ok(next);
        }
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE machines SET state = $1, job_token = $2, fault_code = $3, updated_ms = $4 \
             WHERE id = $5 AND state = $6 AND job_token IS NOT DISTINCT FROM $7",
        )
        .bind(next.as_str())
        .bind(token)
        .bind(fault)
        .bind(now)
        .bind(id)
        .bind(from.as_str())
        .bind(old_token)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "machine {id} changed meanwhile"
            )));
        }
        let subject = Subject {
            kind: "machine",
            id,
            order_id: None,
            brand: None,
        };
        for event in &events {
            emit(&mut tx, &subject, event, now).await?;
        }
        tx.commit().await?;
        Ok(next)
    }

    /// An operator's decision on a machine's mode, in one transaction with
    /// its event: a mode that takes no jobs also hands the machine's queued
    /// jobs back to the planner.
    pub async fn change_machine_mode(
        &self,
        id: &str,
        input: crate::domain::ModeInput,
        actor: &str,
        now: Millis,
    ) -> Result<ModeChange, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT mode FROM machines WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("machine {id}")));
        };
        let from: MachineMode = parse(&row.try_get::<String, _>("mode")?)?;
        let next = from.handle(input)?;
        let done = sqlx::query(
            "UPDATE machines SET mode = $1, updated_ms = $2 WHERE id = $3 AND mode = $4",
        )
        .bind(next.as_str())
        .bind(now)
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!("machine {id} mode changed")));
        }
        let subject = Subject {
            kind: "machine",
            id,
            order_id: None,
            brand: None,
        };
        emit(
            &mut tx,
            &subject,
            &Event::MachineModeChanged { from, to: next },
            now,
        )
        .await?;
        let detail = format!("{from} -> {next}");
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "machine.mode", id, &detail),
            now,
        )
        .await?;
        let unscheduled = if next.works_its_queue() {
            0
        } else {
            unschedule_in(&mut tx, self.backend, id, None, now).await?
        };
        tx.commit().await?;
        Ok(ModeChange {
            mode: next,
            unscheduled,
        })
    }

    /// An operator declares the material loaded on a machine (`None`: not
    /// known), in one transaction with its event (`machine.material_loaded`)
    /// and audit row. Refused (conflict) when the machine's model cannot use
    /// the material. Its queued jobs of another material go back to the
    /// planner in the same transaction (the machine would not start them).
    pub async fn load_material(
        &self,
        id: &str,
        material: Option<&str>,
        actor: &str,
        now: Millis,
    ) -> Result<MaterialChange, StoreError> {
        let mut tx = self.begin().await?;
        let row =
            sqlx::query("SELECT model, materials, loaded_material FROM machines WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("machine {id}")));
        };
        let model: String = row.try_get("model")?;
        let materials = list(&row.try_get::<String, _>("materials")?);
        let from: Option<String> = row.try_get("loaded_material")?;
        if let Some(material) = material
            && let Some(reason) =
                crate::domain::machine::material_refusal(&model, &materials, material)
        {
            return Err(StoreError::Conflict(reason));
        }
        let done = sqlx::query(
            "UPDATE machines SET loaded_material = $1, updated_ms = $2 \
             WHERE id = $3 AND loaded_material IS NOT DISTINCT FROM $4",
        )
        .bind(material)
        .bind(now)
        .bind(id)
        .bind(from.as_deref())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "machine {id}: its material changed meanwhile"
            )));
        }
        let to = material.map(str::to_string);
        let subject = Subject {
            kind: "machine",
            id,
            order_id: None,
            brand: None,
        };
        emit(
            &mut tx,
            &subject,
            &Event::MachineMaterialLoaded {
                from: from.clone(),
                to: to.clone(),
            },
            now,
        )
        .await?;
        let detail = format!(
            "{} -> {}",
            from.as_deref().unwrap_or("unknown"),
            material.unwrap_or("unknown")
        );
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "machine.material", id, &detail),
            now,
        )
        .await?;
        let unscheduled = match material {
            Some(material) => unschedule_in(&mut tx, self.backend, id, Some(material), now).await?,
            None => 0,
        };
        tx.commit().await?;
        Ok(MaterialChange {
            from,
            to,
            unscheduled,
        })
    }
}
