//! The dashboard in a real browser: Debian's chromium, driven over WebDriver
//! by chromedriver (headless). An operator signs in with a token, watches a
//! DTG printer of the simulated fleet go from idle to running without a
//! reload (the page follows the server-sent event stream), pauses it from
//! the page and sees the state change, then declares a material loaded,
//! resumes and drains it, cancels a queued job and retries a job held by a
//! jam, each confirmed on the page and checked in the API; a screenshot is
//! saved under the target directory. Skipped, with one line saying so, when chromedriver is
//! not installed (`apt-get install chromium chromium-driver`; `.ci/run`
//! installs both).

mod support;

use fabflow::api::auth::Role;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{Running, wait_for};

/// Simulated seconds per real second: a DTG printer's 90 s unit takes 9 s,
/// so a three-unit job runs long enough to be seen and paused.
const TIME_SCALE: f64 = 10.0;
const LIMIT: Duration = Duration::from_secs(240);

/// The first of `names` found on PATH (or as an absolute path).
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        let candidate = PathBuf::from(name);
        if candidate.is_absolute() && candidate.is_file() {
            return Some(candidate);
        }
        for dir in std::env::split_paths(&path) {
            let full = dir.join(name);
            if full.is_file() {
                return Some(full);
            }
        }
    }
    None
}

/// chromedriver, stopped (by its own pid) when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(program: &PathBuf) -> Driver {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("address").port()
    };
    let child = Command::new(program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    wait_for("chromedriver to accept connections", LIMIT, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    driver
}

async fn browser(driver: &Driver) -> Client {
    let mut chrome = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"],
    });
    if let Some(binary) = find_program(&["chromium", "/usr/bin/chromium"]) {
        chrome["binary"] = json!(binary.display().to_string());
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), chrome);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a chromium session")
}

/// Each machine card on the page: (machine id, state shown).
/// Clicks the element `css` selects, again if the page redrew it between
/// finding and clicking (live updates replace the machine cards).
async fn click(page: &Client, css: &str) {
    let mut last = String::new();
    for _ in 0..20 {
        match page.find(Locator::Css(css)).await {
            Ok(element) => match element.click().await {
                Ok(()) => return,
                Err(err) => last = err.to_string(),
            },
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not click {css}: {last}");
}

/// Waits until the page's result toast says `text`.
async fn toast_saying(page: &Client, text: &str) {
    wait_for(&format!("the result \"{text}\" shown"), LIMIT, || async {
        let toast = page
            .find(Locator::Css("#toast"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        toast.contains(text).then_some(())
    })
    .await;
}

/// Answers yes to the page's confirmation.
async fn confirm(page: &Client) {
    page.wait()
        .at_most(LIMIT)
        .for_element(Locator::Css("#confirm:not([hidden]) #confirm-yes"))
        .await
        .expect("confirmation asked")
        .click()
        .await
        .expect("confirmed");
}

async fn machine_states(page: &Client) -> Vec<(String, String)> {
    let shown = page
        .execute(
            "return Array.from(document.querySelectorAll('.machine[data-machine]')).map(card => {
                 const badge = card.querySelector('.state .badge');
                 return [card.dataset.machine, badge ? badge.dataset.state : ''];
             });",
            vec![],
        )
        .await
        .expect("script runs");
    shown
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|pair| {
            Some((
                pair.get(0)?.as_str()?.to_string(),
                pair.get(1)?.as_str()?.to_string(),
            ))
        })
        .collect()
}

fn state_of(states: &[(String, String)], machine: &str) -> Option<String> {
    states
        .iter()
        .find(|(id, _)| id == machine)
        .map(|(_, state)| state.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_watches_a_machine_start_and_works_its_controls_from_the_page() {
    let Some(chromedriver) = find_program(&["chromedriver", "/usr/bin/chromedriver"]) else {
        println!(
            "skipped: chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(7, TIME_SCALE).await;
    let config = support::config(&fleet, &dir.path().join("browser.db"), TIME_SCALE);
    let running = Running::start(config).await;
    let operator = running.token(Role::Operator, "north").await;
    let brand = running.api(Role::Brand, "browser-brand").await;
    let admin = running.api(Role::Admin, "*").await;

    let driver = start_driver(&chromedriver).await;
    let page = browser(&driver).await;
    page.goto(&running.base).await.expect("dashboard loads");

    // Sign in: the token becomes a session cookie the script cannot read.
    page.wait()
        .at_most(LIMIT)
        .for_element(Locator::Css("#token"))
        .await
        .expect("sign-in form")
        .send_keys(&operator)
        .await
        .expect("token typed");
    page.find(Locator::Css("#signin-button"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("sign in");
    page.wait()
        .at_most(LIMIT)
        .for_element(Locator::Css("#tabs:not([hidden]) a[data-view=factory]"))
        .await
        .expect("signed in")
        .click()
        .await
        .expect("factory view");
    let cookie_visible = page
        .execute(
            "return document.cookie.includes('fabflow_session');",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(
        cookie_visible,
        Value::Bool(false),
        "the session cookie is HttpOnly"
    );
    // A marker a reload would wipe.
    page.execute("window.__noReload = true; return true;", vec![])
        .await
        .expect("script runs");

    // The operator of `north` sees only north's machines, and both DTG printers idle.
    let printers = ["north-dtg-1", "north-dtg-2"];
    wait_for("north's DTG printers shown idle", LIMIT, || async {
        let states = machine_states(&page).await;
        let idle = printers
            .iter()
            .all(|m| state_of(&states, m).as_deref() == Some("idle"));
        (idle && !states.is_empty()).then_some(states)
    })
    .await
    .iter()
    .for_each(|(id, _)| assert!(id.starts_with("north-"), "{id} is not north's"));

    // An order next to north: three tees, so a DTG job of three units.
    let order = json!({
        "external_ref": "browser-1",
        "customer": {"name": "Ada Browser", "lat": 52.5405, "lon": 13.4197},
        "lines": [{"sku": "tee-black-m", "quantity": 3}],
    });
    let (status, body) = brand.post("/v1/orders", &order, Some("browser-1")).await;
    assert!(
        status == 201 || status == 200,
        "order refused: {status} {body}"
    );

    // One printer goes running on the page, with no reload.
    let machine = wait_for("a DTG printer shown running", LIMIT, || async {
        let states = machine_states(&page).await;
        printers
            .iter()
            .find(|m| state_of(&states, m).as_deref() == Some("running"))
            .map(|m| m.to_string())
    })
    .await;
    let kept = page
        .execute("return window.__noReload === true;", vec![])
        .await
        .expect("script runs");
    assert_eq!(kept, Value::Bool(true), "the page was reloaded");

    // Pause it from the page: confirm, then see the result and the state.
    click(
        &page,
        &format!("button[data-machine='{machine}'][data-action=pause]"),
    )
    .await;
    confirm(&page).await;
    wait_for("the machine shown paused", LIMIT, || async {
        let states = machine_states(&page).await;
        (state_of(&states, &machine).as_deref() == Some("paused")).then_some(())
    })
    .await;
    let toast = page
        .find(Locator::Css("#toast"))
        .await
        .expect("result shown")
        .text()
        .await
        .expect("toast text");
    assert!(toast.contains("paused"), "result shown: {toast:?}");

    // The API agrees with the page.
    let (status, machines) = admin.get("/v1/machines?factory=north").await;
    assert_eq!(status, 200, "{machines}");
    let paused = machines
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .any(|m| m["id"] == machine.as_str() && m["mode"] == "paused");
    assert!(paused, "{machine} is paused in the API: {machines}");

    // The other controls, each confirmed on the page and seen in the API:
    // declare a material loaded, resume, drain, start maintenance and end it.
    let material = page
        .execute(
            &format!(
                "const s = document.querySelector(\"select[data-machine='{machine}'][data-action=material]\");
                 const o = s && Array.from(s.options).find(o => o.value);
                 return o ? o.value : null;"
            ),
            vec![],
        )
        .await
        .expect("script runs");
    let material = material.as_str().expect("a material to choose").to_string();
    let select = format!("select[data-machine='{machine}'][data-action=material]");
    let mut chosen = false;
    for _ in 0..20 {
        if let Ok(control) = page.find(Locator::Css(&select)).await
            && control.select_by_value(&material).await.is_ok()
        {
            chosen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(chosen, "could not choose {material} in {select}");
    confirm(&page).await;
    let machine_in_api = |field: &'static str| {
        let admin = &admin;
        let machine = machine.clone();
        move || {
            let machine = machine.clone();
            async move {
                let (_, machines) = admin.get("/v1/machines?factory=north").await;
                machines
                    .as_array()
                    .and_then(|all| all.iter().find(|m| m["id"] == machine.as_str()))
                    .map(|m| m[field].clone())
            }
        }
    };
    wait_for("the material declared in the API", LIMIT, || {
        let read = machine_in_api("loaded_material");
        let material = material.clone();
        async move { (read().await? == material.as_str()).then_some(()) }
    })
    .await;
    // Then maintenance from the page, and the machine confirmed ready.
    for (action, modes) in [
        ("resume", &["active"][..]),
        ("drain", &["draining", "paused"][..]),
        ("maintenance", &["maintenance"][..]),
        ("end-maintenance", &["active"][..]),
    ] {
        click(
            &page,
            &format!("button[data-machine='{machine}'][data-action={action}]"),
        )
        .await;
        confirm(&page).await;
        wait_for(&format!("the machine's mode after {action}"), LIMIT, || {
            let read = machine_in_api("mode");
            async move {
                let mode = read().await?;
                modes.contains(&mode.as_str()?).then_some(())
            }
        })
        .await;
    }

    // Jobs from the page: with the other printer paused, two more orders
    // go to this one, one running and one queued behind it. Cancel the
    // queued one; jam the machine, and retry its held job.
    let other = printers
        .iter()
        .find(|m| **m != machine.as_str())
        .expect("the other printer");
    let (status, body) = admin
        .post(&format!("/v1/machines/{other}/pause"), &json!({}), None)
        .await;
    assert_eq!(status, 200, "{body}");
    for reference in ["browser-2", "browser-3"] {
        let order = json!({
            "external_ref": reference,
            "customer": {"name": "Ada Browser", "lat": 52.5405, "lon": 13.4197},
            "lines": [{"sku": "tee-black-m", "quantity": 3}],
        });
        let (status, body) = brand.post("/v1/orders", &order, Some(reference)).await;
        assert!(
            status == 201 || status == 200,
            "order refused: {status} {body}"
        );
    }
    let job_state = |token: u64| {
        let admin = &admin;
        async move {
            let (_, jobs) = admin.get("/v1/jobs?factory=north&limit=500").await;
            jobs["items"]
                .as_array()
                .and_then(|all| all.iter().find(|j| j["token"].as_u64() == Some(token)))
                .and_then(|j| j["state"].as_str().map(str::to_string))
        }
    };
    let queued = wait_for("a queued job shown with its cancel button", LIMIT, || async {
        let token = page
            .execute(
                &format!(
                    "const b = document.querySelector(\"[data-machine='{machine}'] button[data-action=cancel][data-job]\");
                     return b ? b.dataset.job : null;"
                ),
                vec![],
            )
            .await
            .ok()?;
        token.as_str().and_then(|t| t.parse::<u64>().ok())
    })
    .await;
    click(
        &page,
        &format!("button[data-job='{queued}'][data-action=cancel]"),
    )
    .await;
    confirm(&page).await;
    wait_for("the queued job cancelled in the API", LIMIT, || async {
        (job_state(queued).await.as_deref() == Some("cancelled")).then_some(())
    })
    .await;
    toast_saying(&page, "cancelled").await;
    // The running job: the machine jams, the job is held with its fault,
    // and the operator has it made again.
    let running_job = wait_for("a job running on the machine", LIMIT, || async {
        let (_, jobs) = admin
            .get(&format!("/v1/jobs?machine={machine}&state=running"))
            .await;
        jobs["items"]
            .as_array()
            .and_then(|all| all.first())
            .and_then(|j| j["token"].as_u64())
    })
    .await;
    fleet.jam(&machine, 42).expect("machine jams");
    let retry = format!("button[data-job='{running_job}'][data-action=retry]");
    wait_for(
        "the held job shown with its retry button",
        LIMIT,
        || async { page.find(Locator::Css(&retry)).await.ok().map(|_| ()) },
    )
    .await;
    click(&page, &retry).await;
    confirm(&page).await;
    wait_for("the held job given up and made again", LIMIT, || async {
        (job_state(running_job).await.as_deref() == Some("failed")).then_some(())
    })
    .await;
    // Its units are made again by a job that replaces it.
    wait_for("a job replacing the retried one", LIMIT, || async {
        let (_, jobs) = admin.get("/v1/jobs?factory=north&limit=500").await;
        jobs["items"]
            .as_array()?
            .iter()
            .any(|j| j["replaces"].as_u64() == Some(running_job))
            .then_some(())
    })
    .await;
    toast_saying(&page, "failed").await;
    fleet.clear(&machine).expect("jam cleared");

    let png = page.screenshot().await.expect("screenshot");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-browser.png");
    std::fs::write(&shot, png).expect("screenshot saved");
    println!("screenshot: {}", shot.display());

    page.close().await.expect("browser closes");
    drop(driver);
    running.stop().await;
    drop(fleet);
}
