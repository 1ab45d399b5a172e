//! The operator's commands over the HTTP API (`FABFLOW_URL`, `FABFLOW_TOKEN`):
//! `machines`, `jobs`, `orders show`, `orders decide` (an escalated order),
//! `machine pause|resume|drain|maintenance|ready|material|plan-maintenance|windows|cancel-maintenance`,
//! `job resume|abandon|retry|cancel`. Aligned tables by default, `--json` for scripts; an
//! error is a non-zero exit with the API's problem detail.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::process::ExitCode;

/// Where the API is and who is asking.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// API base URL.
    #[arg(
        long,
        global = true,
        env = "FABFLOW_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Operator or admin token.
    #[arg(long, global = true, env = "FABFLOW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MachineCommand {
    /// Pause: the current job finishes, its queue goes back to the planner,
    /// nothing new starts.
    Pause { id: String },
    /// Drain: finish every job already queued, take nothing new, then pause.
    Drain { id: String },
    /// Resume taking jobs after a pause.
    Resume { id: String },
    /// Start maintenance (its queued jobs go back to the planner).
    Maintenance { id: String },
    /// End maintenance: the machine is ready for jobs again.
    Ready { id: String },
    /// Declare the material loaded: the machine then starts only jobs of
    /// it (`unknown`: not known, any of its materials starts).
    Material { id: String, material: String },
    /// Plan maintenance ahead: no job starts that would run into
    /// [start, end) (RFC 3339 times on the daemon's clock).
    PlanMaintenance {
        id: String,
        start: String,
        end: String,
        reason: String,
    },
    /// The machine's planned maintenance windows not over yet.
    Windows { id: String },
    /// Remove a planned maintenance window.
    CancelMaintenance { id: String, window: String },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// A held job goes on on its machine (the machine must still show it).
    Resume {
        /// The job's token.
        #[arg(value_name = "JOB_TOKEN")]
        job: String,
    },
    /// A held job is abandoned: it fails and its units not reported good are
    /// made again under new jobs.
    Abandon {
        /// The job's token.
        #[arg(value_name = "JOB_TOKEN")]
        job: String,
    },
    /// A held job is made again: as abandon, recorded as a retry.
    Retry {
        /// The job's token.
        #[arg(value_name = "JOB_TOKEN")]
        job: String,
    },
    /// A pending or queued job, and the rest of its order line not yet
    /// made, is cancelled (the order follows).
    Cancel {
        /// The job's token.
        #[arg(value_name = "JOB_TOKEN")]
        job: String,
    },
}

/// One API call; the JSON answer, or an error naming the problem.
async fn call(api: &ApiArgs, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
    call_with(api, method, path, None).await
}

/// One API call with an optional JSON body.
async fn call_with(
    api: &ApiArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let Some(token) = api.token.as_deref().filter(|t| !t.is_empty()) else {
        bail!("no token: set FABFLOW_TOKEN or pass --token (an operator or admin token)");
    };
    let url = format!("{}{path}", api.url.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .request(method.clone(), &url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {url}: cannot reach the daemon"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let detail = body
            .get("detail")
            .and_then(Value::as_str)
            .or_else(|| body.get("title").and_then(Value::as_str))
            .unwrap_or("no detail");
        let fields: Vec<String> = body
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}: {}",
                    self::text(&e["pointer"]),
                    self::text(&e["reason"])
                )
            })
            .collect();
        if fields.is_empty() || fields.iter().any(|f| detail.contains(f.as_str())) {
            bail!("{method} {path}: HTTP {status}: {detail}");
        }
        bail!(
            "{method} {path}: HTTP {status}: {detail} ({})",
            fields.join("; ")
        );
    }
    Ok(body)
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows as a table with aligned columns.
fn print_table(headings: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headings.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headings.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn print_json(value: &Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

pub async fn machines(api: &ApiArgs, factory: Option<&str>) -> anyhow::Result<ExitCode> {
    let path = match factory {
        Some(f) => format!("/v1/machines?factory={}", encode(f)),
        None => "/v1/machines".into(),
    };
    let body = call(api, reqwest::Method::GET, &path).await?;
    if api.json {
        return print_json(&body);
    }
    let rows: Vec<Vec<String>> = body
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            vec![
                text(&m["id"]),
                text(&m["factory"]),
                text(&m["model"]),
                text(&m["state"]),
                text(&m["mode"]),
                text(&m["job_token"]),
                text(&m["queue"]),
                text(&m["fault_code"]),
            ]
        })
        .collect();
    print_table(
        &[
            "machine", "factory", "model", "state", "mode", "job", "queue", "fault",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn jobs(
    api: &ApiArgs,
    factory: Option<&str>,
    state: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut query = vec!["limit=500".to_string()];
    if let Some(f) = factory {
        query.push(format!("factory={}", encode(f)));
    }
    if let Some(s) = state {
        query.push(format!("state={}", encode(s)));
    }
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut page_query = query.clone();
        if let Some(after) = &after {
            page_query.push(format!("after={}", encode(after)));
        }
        let page = call(
            api,
            reqwest::Method::GET,
            &format!("/v1/jobs?{}", page_query.join("&")),
        )
        .await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    if api.json {
        return print_json(&Value::Array(items));
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|j| {
            vec![
                text(&j["token"]),
                text(&j["order_id"]),
                text(&j["factory"]),
                text(&j["machine"]),
                text(&j["process"]),
                text(&j["material"]),
                format!("{}/{}", text(&j["good"]), text(&j["quantity"])),
                text(&j["state"]),
                text(&j["due"]),
            ]
        })
        .collect();
    print_table(
        &[
            "job", "order", "factory", "machine", "process", "material", "made", "state", "due",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn show_order(api: &ApiArgs, id: &str) -> anyhow::Result<ExitCode> {
    let order = call(
        api,
        reqwest::Method::GET,
        &format!("/v1/orders/{}", encode(id)),
    )
    .await?;
    if api.json {
        return print_json(&order);
    }
    println!("order     {}", text(&order["id"]));
    println!("reference {}", text(&order["external_ref"]));
    println!("brand     {}", text(&order["brand"]));
    println!("state     {}", text(&order["state"]));
    println!("factory   {}", text(&order["factory"]));
    println!("customer  {}", text(&order["customer"]["name"]));
    println!("deadline  {}", text(&order["deadline"]));
    if let Some(escalation) = order.get("escalation").filter(|e| !e.is_null()) {
        println!(
            "escalated {} after {} attempts, at {} (decide: fabflow orders decide {} retry|return-to-factory|cancel-delivery)",
            text(&escalation["reason"]),
            text(&escalation["attempts"]),
            text(&escalation["at"]),
            text(&order["id"])
        );
    }
    if let Some(risk) = order.get("at_risk").filter(|r| !r.is_null()) {
        println!(
            "at risk   {} ({})",
            text(&risk["reason"]),
            text(&risk["detail"])
        );
    }
    println!();
    let jobs: Vec<Vec<String>> = order["jobs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|j| {
            vec![
                text(&j["token"]),
                text(&j["process"]),
                text(&j["machine"]),
                format!("{}/{}", text(&j["good"]), text(&j["quantity"])),
                text(&j["state"]),
            ]
        })
        .collect();
    print_table(&["job", "process", "machine", "made", "state"], &jobs);
    let handoffs: Vec<Vec<String>> = order["handoffs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            vec![
                text(&h["id"]),
                text(&h["kind"]),
                text(&h["courier"]),
                text(&h["eta"]),
                text(&h["state"]),
            ]
        })
        .collect();
    if !handoffs.is_empty() {
        println!();
        print_table(&["handoff", "kind", "courier", "eta", "state"], &handoffs);
    }
    Ok(ExitCode::SUCCESS)
}

/// Maintenance windows as a table (or the API's JSON).
fn print_windows(api: &ApiArgs, windows: &Value) -> anyhow::Result<ExitCode> {
    if api.json {
        return print_json(windows);
    }
    let rows: Vec<Vec<String>> = windows
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            vec![
                text(&w["id"]),
                text(&w["machine"]),
                text(&w["start"]),
                text(&w["end"]),
                text(&w["reason"]),
            ]
        })
        .collect();
    print_table(&["window", "machine", "start", "end", "reason"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// `machine material <id> <material>`: declares the material loaded.
async fn machine_material(api: &ApiArgs, id: &str, material: &str) -> anyhow::Result<ExitCode> {
    {
        let material = match material {
            "unknown" | "" => Value::Null,
            name => Value::String(name.to_string()),
        };
        let path = format!("/v1/machines/{}/material", encode(id));
        let body = serde_json::json!({ "material": material });
        let machine = call_with(api, reqwest::Method::POST, &path, Some(&body)).await?;
        if api.json {
            return print_json(&machine);
        }
        println!(
            "machine {} has {} loaded",
            text(&machine["id"]),
            match &machine["loaded_material"] {
                Value::Null => "no known material".to_string(),
                other => text(other),
            }
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// What an operator decides for an escalated order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Decision {
    /// Plan the delivery again (optionally by a new --deliver-by).
    Retry,
    /// Cancel it and put its units on the factory's shelf.
    ReturnToFactory,
    /// Cancel it; nothing restocked.
    CancelDelivery,
}

impl Decision {
    fn as_api(self) -> &'static str {
        match self {
            Decision::Retry => "retry",
            Decision::ReturnToFactory => "return_to_factory",
            Decision::CancelDelivery => "cancel_delivery",
        }
    }
}

/// `orders decide`: an operator's decision on an escalated order.
pub async fn decide_order(
    api: &ApiArgs,
    id: &str,
    decision: Decision,
    deliver_by: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut body = serde_json::json!({ "decision": decision.as_api() });
    if let Some(deliver_by) = deliver_by {
        body["deliver_by"] = Value::String(deliver_by.to_string());
    }
    let path = format!("/v1/orders/{}/escalation", encode(id));
    let order = call_with(api, reqwest::Method::POST, &path, Some(&body)).await?;
    if api.json {
        return print_json(&order);
    }
    println!(
        "order {} is now {} (deadline {})",
        text(&order["id"]),
        text(&order["state"]),
        text(&order["deadline"])
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn machine(api: &ApiArgs, command: MachineCommand) -> anyhow::Result<ExitCode> {
    let (id, action) = match &command {
        MachineCommand::Pause { id } => (id, "pause"),
        MachineCommand::Drain { id } => (id, "drain"),
        MachineCommand::Resume { id } => (id, "resume"),
        MachineCommand::Maintenance { id } => (id, "maintenance"),
        MachineCommand::Ready { id } => (id, "end-maintenance"),
        MachineCommand::Material { id, material } => {
            return machine_material(api, id, material).await;
        }
        MachineCommand::PlanMaintenance {
            id,
            start,
            end,
            reason,
        } => {
            let body = serde_json::json!({ "start": start, "end": end, "reason": reason });
            let path = format!("/v1/machines/{}/maintenance-windows", encode(id));
            let window = call_with(api, reqwest::Method::POST, &path, Some(&body)).await?;
            return print_windows(api, &Value::Array(vec![window]));
        }
        MachineCommand::Windows { id } => {
            let path = format!("/v1/machines/{}/maintenance-windows", encode(id));
            let windows = call(api, reqwest::Method::GET, &path).await?;
            return print_windows(api, &windows);
        }
        MachineCommand::CancelMaintenance { id, window } => {
            let path = format!(
                "/v1/machines/{}/maintenance-windows/{}",
                encode(id),
                encode(window)
            );
            let removed = call(api, reqwest::Method::DELETE, &path).await?;
            if api.json {
                return print_json(&removed);
            }
            println!(
                "maintenance window {} of {} removed",
                text(&removed["id"]),
                text(&removed["machine"])
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    let path = format!("/v1/machines/{}/{action}", encode(id));
    let machine = call(api, reqwest::Method::POST, &path).await?;
    if api.json {
        return print_json(&machine);
    }
    println!(
        "machine {} is now {} (mode {})",
        text(&machine["id"]),
        text(&machine["state"]),
        text(&machine["mode"])
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn job(api: &ApiArgs, command: JobCommand) -> anyhow::Result<ExitCode> {
    let (job, decision) = match &command {
        JobCommand::Resume { job } => (job, "resume"),
        JobCommand::Abandon { job } => (job, "abandon"),
        JobCommand::Retry { job } => (job, "retry"),
        JobCommand::Cancel { job } => (job, "cancel"),
    };
    let path = format!("/v1/jobs/{}/{decision}", encode(job));
    let answer = call(api, reqwest::Method::POST, &path).await?;
    if api.json {
        return print_json(&answer);
    }
    if decision == "cancel" {
        let cancelled: Vec<String> = answer["cancelled"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        println!(
            "jobs {} cancelled; order {} is {}",
            cancelled.join(", "),
            text(&answer["job"]["order_id"]),
            text(&answer["order_state"])
        );
        return Ok(ExitCode::SUCCESS);
    }
    let job = answer;
    println!("job {} is now {}", text(&job["token"]), text(&job["state"]));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_plainly() {
        assert_eq!(text(&Value::Null), "-");
        assert_eq!(text(&Value::String("a".into())), "a");
        assert_eq!(text(&serde_json::json!(3)), "3");
        assert_eq!(encode("a b/c"), "a+b%2Fc");
    }
}
