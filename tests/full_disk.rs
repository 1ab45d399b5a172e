//! End to end, the database refusing writes: the daemon's SQLite file on a
//! real small filesystem (a tmpfs) that fills up while orders arrive.
//! While it is full, intake answers 503 with Retry-After and `/healthz`
//! says the database refuses writes; once space is freed everything
//! resumes by itself, without a restart, and every order that got a 201 is
//! made. Needs to mount a tmpfs (root, as in CI); says so in one line and
//! passes otherwise.

mod support;

use fabflow::api::auth::Role;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{Api, Running, wait_for};

const TIME_SCALE: f64 = 1000.0;

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| SmallDisk(dir.to_path_buf()))
    }

    /// Fills every free byte with a file; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![7u8; 16 * 1024];
        while file.write_all(&block).is_ok() {}
        let small = [7u8; 512];
        while file.write_all(&small).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn order(n: usize) -> Value {
    json!({
        "external_ref": format!("full-{n}"),
        "customer": {"name": "Ada", "lat": 52.52, "lon": 13.40},
        "lines": [{"sku": "tee-black-m", "quantity": 1}],
    })
}

async fn health(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_is_answered_503_and_survived_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(disk) = SmallDisk::mount(dir.path(), "8m") else {
        eprintln!("full_disk: skipped (needs to mount a tmpfs: run as root, as CI does)");
        return;
    };
    let fleet = support::fleet(5, TIME_SCALE).await;
    let config = support::config(&fleet, &dir.path().join("fabflow.db"), TIME_SCALE);
    let running = Running::start(config).await;
    let brand: Api = running.api(Role::Brand, "full-brand").await;
    let client = reqwest::Client::new();

    let mut accepted: Vec<String> = Vec::new();
    for n in 0..10 {
        let (status, body) = brand.post("/v1/orders", &order(n), None).await;
        assert_eq!(status, 201, "{body}");
        accepted.push(body["id"].as_str().expect("id").to_string());
    }

    // The disk fills up while orders keep coming.
    let filler = disk.fill();
    let mut refusal = None;
    for n in 10..5_000 {
        let response = client
            .post(format!("{}/v1/orders", running.base))
            .bearer_auth(&brand.token)
            .json(&order(n))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            201 => accepted.push(body["id"].as_str().expect("id").to_string()),
            503 => {
                refusal = Some((retry_after, content_type, body));
                break;
            }
            other => panic!("a full disk answered {other}: {body}"),
        }
    }
    let (retry_after, content_type, body) = refusal.expect("intake refused once the disk was full");
    assert!(
        retry_after
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "Retry-After: {retry_after:?}"
    );
    assert_eq!(content_type, "application/problem+json");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("refuses writes"),
        "{body}"
    );
    let (status, said) = wait_for(
        "healthz to say the database refuses writes",
        Duration::from_secs(60),
        || async {
            let (status, body) = health(&running.base).await;
            (body["database"] == "refusing_writes").then_some((status, body))
        },
    )
    .await;
    assert_eq!(status, 503, "{said}");
    assert!(said["database_detail"].as_str().is_some(), "{said}");

    // Room again: no restart, everything resumes.
    std::fs::remove_file(&filler).expect("free the disk");
    wait_for("healthz ok again", Duration::from_secs(60), || async {
        let (status, body) = health(&running.base).await;
        (status == 200 && body["database"] == "ok").then_some(())
    })
    .await;
    for n in 5_000..5_010 {
        let (status, body) = brand.post("/v1/orders", &order(n), None).await;
        assert_eq!(status, 201, "{body}");
        accepted.push(body["id"].as_str().expect("id").to_string());
    }

    // Every order that got a 201 is kept and made.
    let orders = support::wait_all_produced(&brand, accepted.len(), Duration::from_secs(600)).await;
    for id in &accepted {
        assert!(
            orders.iter().any(|o| o["id"] == id.as_str()),
            "accepted order {id} is kept"
        );
    }
    running.stop().await;
    fleet.shutdown().await;
}
