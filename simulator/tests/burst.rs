//! The burst sender against a real HTTP server on 127.0.0.1:0.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use fabflow_sim::{fire, generate_orders};
use serde_json::Value;

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn accept(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(order): Json<Value>,
) -> (StatusCode, String) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer ffb_test") {
        return (StatusCode::UNAUTHORIZED, "bad token".to_string());
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    seen.lock().expect("lock").push((key, order));
    (StatusCode::CREATED, "{}".to_string())
}

#[tokio::test]
async fn fire_posts_every_order_with_auth_and_unique_idempotency_keys() {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/v1/orders", post(accept))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let api = format!("http://{addr}");
    let orders = generate_orders(
        5,
        20,
        &["tee-black-m", "tote-natural"],
        (52.4, 13.2, 52.6, 13.6),
    );

    let report = fire(&api, "ffb_test", orders.clone(), 4).await;
    assert_eq!(report.accepted, 20, "{:?}", report.rejected);
    assert_eq!(report.latencies.len(), 20);
    let received = seen.lock().expect("lock").clone();
    let keys: BTreeSet<&str> = received.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 20, "idempotency keys must be unique");
    for order in &orders {
        assert!(
            received.iter().any(|(_, o)| o == order),
            "order not received as sent"
        );
    }

    let report = fire(&api, "wrong", orders, 4).await;
    assert_eq!(report.accepted, 0);
    assert_eq!(report.rejected.len(), 20);
    assert!(
        report
            .rejected
            .iter()
            .all(|(_, status, body)| *status == 401 && body == "bad token")
    );
    assert_eq!(report.rejected[0].0, 0, "rejections sorted by order index");
    server.abort();
}
