//! The dashboard's session over plain HTTP: who may sign in, what the cookie
//! says, that a change made with the cookie needs the CSRF token and the
//! daemon's own origin, that an operator sees only its factories, that the
//! event stream speaks `text/event-stream`, and that the browser-only
//! routes stay out of the OpenAPI document while `/v1/overview` is in it.

mod support;

use fabflow::api::auth::Role;
use serde_json::{Value, json};
use std::time::Duration;
use support::Running;

const LIMIT: Duration = Duration::from_secs(120);

struct Signed {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

async fn sign_in(base: &str, token: &str) -> Result<Signed, (u16, Value)> {
    let host = base.trim_start_matches("http://");
    let response = reqwest::Client::new()
        .post(format!("{base}/dashboard/session"))
        .header("Origin", format!("http://{host}"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("sign-in request");
    let status = response.status().as_u16();
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err((status, body));
    }
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_string();
    Ok(Signed {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap_or_default().to_string(),
        set_cookie,
    })
}

async fn send(
    base: &str,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, String)],
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_are_cookies_that_need_csrf_and_the_same_origin_to_change_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(3, 60.0).await;
    let config = support::config(&fleet, &dir.path().join("session.db"), 60.0);
    let running = Running::start(config).await;
    let base = running.base.clone();
    let origin = base.clone();

    // Brands and couriers cannot open a dashboard session; unknown tokens are 401.
    let brand = running.token(Role::Brand, "session-brand").await;
    assert_eq!(sign_in(&base, &brand).await.err().map(|e| e.0), Some(403));
    assert_eq!(
        sign_in(&base, "ffo_unknown").await.err().map(|e| e.0),
        Some(401)
    );
    // Signing in from another site is refused (no login CSRF).
    let operator = running.token(Role::Operator, "north").await;
    let (status, body) = {
        let response = reqwest::Client::new()
            .post(format!("{base}/dashboard/session"))
            .header("Origin", "http://evil.example")
            .json(&json!({ "token": operator }))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    assert_eq!(status, 403, "{body}");

    let signed = sign_in(&base, &operator).await.expect("operator signs in");
    for part in ["HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"] {
        assert!(signed.set_cookie.contains(part), "{}", signed.set_cookie);
    }
    assert!(
        !signed.set_cookie.contains(&operator),
        "the token is not the cookie"
    );
    let cookie = ("Cookie", signed.cookie.clone());

    // Reads work with the cookie, scoped to the operator's factories.
    let (status, machines) = send(
        &base,
        reqwest::Method::GET,
        "/v1/machines",
        std::slice::from_ref(&cookie),
    )
    .await;
    assert_eq!(status, 200, "{machines}");
    let machines = machines.as_array().cloned().unwrap_or_default();
    assert!(!machines.is_empty());
    assert!(
        machines.iter().all(|m| m["factory"] == "north"),
        "{machines:?}"
    );
    let (status, overview) = send(
        &base,
        reqwest::Method::GET,
        "/v1/overview",
        std::slice::from_ref(&cookie),
    )
    .await;
    assert_eq!(status, 200, "{overview}");
    let factories: Vec<&str> = overview["factories"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(factories, ["north"], "{overview}");
    let (status, session) = send(
        &base,
        reqwest::Method::GET,
        "/dashboard/session",
        std::slice::from_ref(&cookie),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["csrf_token"], signed.csrf.as_str());
    assert_eq!(session["role"], "operator");

    // A change with the cookie: refused without the CSRF token, with a
    // wrong one, or from another origin; accepted with both.
    let machine = machines[0]["id"].as_str().expect("machine id").to_string();
    let pause = format!("/v1/machines/{machine}/pause");
    let post = reqwest::Method::POST;
    let same_origin = ("Origin", origin.clone());
    let (status, body) = send(
        &base,
        post.clone(),
        &pause,
        &[cookie.clone(), same_origin.clone()],
    )
    .await;
    assert_eq!(status, 403, "no CSRF token: {body}");
    let wrong = ("X-CSRF-Token", "0".repeat(64));
    let (status, body) = send(
        &base,
        post.clone(),
        &pause,
        &[cookie.clone(), same_origin.clone(), wrong],
    )
    .await;
    assert_eq!(status, 403, "wrong CSRF token: {body}");
    let csrf = ("X-CSRF-Token", signed.csrf.clone());
    let evil = ("Origin", "http://evil.example".to_string());
    let (status, body) = send(
        &base,
        post.clone(),
        &pause,
        &[cookie.clone(), csrf.clone(), evil],
    )
    .await;
    assert_eq!(status, 403, "another origin: {body}");
    let (status, body) = send(&base, post.clone(), &pause, &[cookie.clone(), csrf.clone()]).await;
    assert_eq!(status, 403, "no origin: {body}");
    let cross = ("Sec-Fetch-Site", "cross-site".to_string());
    let (status, body) = send(
        &base,
        post.clone(),
        &pause,
        &[cookie.clone(), csrf.clone(), same_origin.clone(), cross],
    )
    .await;
    assert_eq!(status, 403, "cross-site fetch: {body}");
    let (status, body) = send(
        &base,
        post.clone(),
        &pause,
        &[cookie.clone(), csrf.clone(), same_origin.clone()],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "paused", "{body}");
    // Another factory's machine is not there for this operator.
    let (status, body) = send(
        &base,
        post.clone(),
        "/v1/machines/south-dtg-1/pause",
        &[cookie.clone(), csrf.clone(), same_origin.clone()],
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // The event stream: text/event-stream, a `changed` event at once.
    let response = reqwest::Client::new()
        .get(format!("{base}/dashboard/events"))
        .header("Cookie", signed.cookie.clone())
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let mut response = response;
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + LIMIT;
    while !seen.contains("event: changed") {
        assert!(
            std::time::Instant::now() < deadline,
            "no changed event: {seen:?}"
        );
        match tokio::time::timeout(Duration::from_secs(1), response.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => panic!("the stream ended: {seen:?}"),
            Ok(Err(err)) => panic!("the stream failed: {err}"),
            Err(_) => {}
        }
    }
    drop(response);
    let (status, _) = send(&base, reqwest::Method::GET, "/dashboard/events", &[]).await;
    assert_eq!(status, 401, "the stream needs a session or a token");

    // Sign out: the cookie stops working.
    let (status, body) = send(
        &base,
        reqwest::Method::DELETE,
        "/dashboard/session",
        &[cookie.clone(), csrf.clone(), same_origin.clone()],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = send(
        &base,
        reqwest::Method::GET,
        "/v1/machines",
        std::slice::from_ref(&cookie),
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // The browser-only routes stay out of the OpenAPI document.
    let (status, openapi) = send(&base, reqwest::Method::GET, "/openapi.json", &[]).await;
    assert_eq!(status, 200);
    let paths = openapi["paths"].as_object().cloned().unwrap_or_default();
    assert!(paths.contains_key("/v1/overview"));
    assert!(
        paths.keys().all(|p| !p.starts_with("/dashboard")),
        "{:?}",
        paths.keys()
    );

    running.stop().await;
    drop(fleet);
}
