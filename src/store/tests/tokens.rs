//! Store scenarios: tokens (expiry, revocation, the epoch) and the audit trail.

use super::*;

#[tokio::test]
async fn tokens_expire_and_revoke_and_every_decision_is_audited() {
    on_every_backend(|store| async move {
        let record = TokenRecord {
            role: "operator".into(),
            scope: "north".into(),
            name: "counter".into(),
        };
        let hash = "a".repeat(64);
        let id = store
            .insert_token(&hash, &record, None, "cli", NOW)
            .await
            .expect("insert");
        assert_eq!(id, "a".repeat(TOKEN_ID_LEN));
        let found = store
            .find_token(&hash, NOW)
            .await
            .expect("find")
            .expect("live");
        assert_eq!((found.id.as_str(), &found.record), (id.as_str(), &record));

        let short = "b".repeat(64);
        store
            .insert_token(&short, &record, Some(NOW + 1_000), "cli", NOW)
            .await
            .expect("insert");
        assert!(
            store
                .find_token(&short, NOW + 999)
                .await
                .expect("find")
                .is_some()
        );
        assert!(
            store
                .find_token(&short, NOW + 1_000)
                .await
                .expect("find")
                .is_none(),
            "expired"
        );

        let epoch = store.token_epoch().await.expect("epoch");
        store
            .revoke_token(&id, "admin:* (token ffffffffffff)", NOW + 5)
            .await
            .expect("revoke");
        assert!(
            store
                .find_token(&hash, NOW + 6)
                .await
                .expect("find")
                .is_none()
        );
        assert_eq!(store.token_epoch().await.expect("epoch"), epoch + 1);
        assert!(matches!(
            store.revoke_token(&id, "cli", NOW + 7).await,
            Err(StoreError::NotFound(_))
        ));
        let listed = store.list_tokens().await.expect("list");
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].revoked_ms, Some(NOW + 5));
        assert_eq!(listed[1].expires_ms, Some(NOW + 1_000));

        let audit = store.list_audit(None, 100).await.expect("audit");
        let actions: Vec<(&str, &str)> = audit
            .iter()
            .map(|entry| (entry.action.as_str(), entry.actor.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("token.create", "cli"),
                ("token.create", "cli"),
                ("token.revoke", "admin:* (token ffffffffffff)"),
            ]
        );
        let later = store
            .list_audit(Some(audit[1].seq), 100)
            .await
            .expect("audit");
        assert_eq!(later.len(), 1, "paged by seq");
        store.close().await;
    })
    .await;
}
